"""OpenAPI and field validation with real kubectl: `kubectl explain` prints upstream's
documentation from /openapi/v3, and the server honours `fieldValidation` (kubectl sends Strict by
default, Warn with `--validate=warn`, Ignore with `--validate=false`) for built-in kinds and
custom resources, with upstream's messages.
"""

from __future__ import annotations

import json

import pytest

from e2e_util import configmap, deployment, manifest, unique_name, wait_until

VERSIONS = [
    pytest.param(None, id="kubectl"),
    pytest.param("1.27", id="1.27"),
    pytest.param("1.33", id="1.33"),
]


def flat(text: str) -> str:
    """Text with kubectl's line wrapping and indentation undone."""
    return " ".join(text.split())


def fields_of(text: str) -> dict[str, str]:
    """The `FIELDS:` of explain output as {name: <type>}."""
    fields = {}
    for line in text.split("FIELDS:", 1)[-1].splitlines():
        if "\t" in line and line.startswith("  ") and not line.startswith("   "):
            name, kind = line.strip().split("\t", 1)
            fields[name] = kind.split()[0]
    return fields


# --------------------------------------------------------------------------------------------------
# kubectl explain


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_pod_containers_prints_upstream_docs(kubectl, version):
    out = kubectl("explain", "pods.spec.containers", version=version).stdout
    assert "KIND:       Pod" in out, out
    assert "VERSION:    v1" in out, out
    assert "FIELD: containers <[]Container>" in out, out
    text = flat(out)
    assert ("List of containers belonging to the pod. Containers cannot currently be added or "
            "removed.") in text, out
    assert "A single application container that you want to run within a pod." in text, out
    fields = fields_of(out)
    assert fields.get("image") == "<string>", fields
    assert fields.get("env") == "<[]EnvVar>", fields
    assert fields.get("resources") == "<ResourceRequirements>", fields
    assert fields.get("name") == "<string>", fields
    assert "-required-" in out.split("\n  name\t", 1)[-1].splitlines()[0], out


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_deployment_strategy(kubectl, version):
    out = kubectl("explain", "deployment.spec.strategy", version=version).stdout
    assert "GROUP:      apps" in out, out
    assert "KIND:       Deployment" in out, out
    assert "FIELD: strategy <DeploymentStrategy>" in out, out
    assert "The deployment strategy to use to replace existing pods with new ones." in flat(out)
    assert fields_of(out) == {"rollingUpdate": "<RollingUpdateDeployment>", "type": "<string>"}


def test_explain_quantities_and_int_or_string_like_upstream(kubectl):
    out = kubectl("explain", "deployment.spec.strategy.rollingUpdate").stdout
    assert fields_of(out) == {"maxSurge": "<IntOrString>", "maxUnavailable": "<IntOrString>"}
    out = kubectl("explain", "pods.spec.containers.resources").stdout
    assert fields_of(out)["limits"] == "<map[string]Quantity>", out


GADGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.openapi.example.com"},
    "spec": {
        "group": "openapi.example.com",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "A Gadget is a small mechanical device.",
                "properties": {
                    "spec": {
                        "type": "object",
                        "description": "GadgetSpec says what the gadget does.",
                        "properties": {
                            "size": {"type": "integer",
                                     "description": "Size of the gadget in millimetres."},
                            "color": {"type": "string", "description": "Colour of the casing."},
                            "extras": {"type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True},
                        },
                    },
                },
            }},
        }],
    },
}


@pytest.fixture
def gadget_crd(kubectl):
    kubectl("apply", "-f", "-", input=manifest(GADGET_CRD))
    wait_until(
        lambda: kubectl("get", "crd", "gadgets.openapi.example.com", "-o",
                        'jsonpath={.status.conditions[?(@.type=="Established")].status}'
                        ).stdout == "True",
        "the gadgets CRD to be Established",
    )
    yield "gadgets"
    kubectl("delete", "crd", "gadgets.openapi.example.com", "--ignore-not-found", "--wait=false")


def gadget(name: str, **spec) -> dict:
    return {"apiVersion": "openapi.example.com/v1", "kind": "Gadget", "metadata": {"name": name},
            "spec": spec}


@pytest.mark.parametrize("version", VERSIONS)
def test_explain_custom_resource_spec(kubectl, gadget_crd, version):
    out = kubectl("explain", "gadgets.spec", version=version).stdout
    assert "GROUP:      openapi.example.com" in out, out
    assert "KIND:       Gadget" in out, out
    assert "FIELD: spec <Object>" in out, out
    assert "GadgetSpec says what the gadget does." in out, out
    fields = fields_of(out)
    assert fields == {"color": "<string>", "extras": "<Object>", "size": "<integer>"}, out
    assert "Size of the gadget in millimetres." in out, out

    out = kubectl("explain", "gadget", version=version).stdout
    assert "A Gadget is a small mechanical device." in out, out
    assert fields_of(out)["metadata"] == "<ObjectMeta>", out


# --------------------------------------------------------------------------------------------------
# fieldValidation


def bad_configmap(name: str) -> str:
    doc = configmap(name, {"a": "1"})
    doc["dta"] = {"b": "2"}
    return manifest(doc)


@pytest.mark.parametrize("version", VERSIONS)
def test_strict_apply_rejects_unknown_field(kubectl, ns, version):
    result = kubectl("apply", "-n", ns, "-f", "-", input=bad_configmap("typo"), check=False,
                     version=version)
    assert result.returncode != 0, result.stdout
    assert 'unknown field "dta"' in result.stderr, result.stderr
    assert "strict decoding error" in result.stderr, result.stderr
    missing = kubectl("get", "cm", "typo", "-n", ns, check=False)
    assert "NotFound" in missing.stderr, missing.stderr


def test_strict_apply_rejects_unknown_field_added_later(kubectl, ns, tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(manifest(configmap("later", {"a": "1"})))
    kubectl("apply", "-n", ns, "-f", path)
    path.write_text(bad_configmap("later"))
    result = kubectl("apply", "-n", ns, "-f", path, check=False)
    assert result.returncode != 0, result.stdout
    assert 'strict decoding error: unknown field "dta"' in result.stderr, result.stderr


def test_validate_warn_prints_warning_and_creates(kubectl, ns):
    result = kubectl("apply", "-n", ns, "--validate=warn", "-f", "-",
                     input=bad_configmap("warned"))
    assert result.stdout.strip() == "configmap/warned created", result.stdout
    assert 'Warning: unknown field "dta"' in result.stderr, result.stderr
    obj = kubectl.json("get", "cm", "warned", "-n", ns)
    assert obj["data"] == {"a": "1"}
    assert "dta" not in obj, obj


def test_validate_false_ignores_silently(kubectl, ns):
    result = kubectl("apply", "-n", ns, "--validate=false", "-f", "-",
                     input=bad_configmap("ignored"))
    assert result.stdout.strip() == "configmap/ignored created", result.stdout
    assert "Warning" not in result.stderr, result.stderr
    assert "dta" not in kubectl.json("get", "cm", "ignored", "-n", ns)


def test_strict_reports_unknown_and_duplicate_fields_like_conformance(kubectl, ns, tmp_path):
    # The body of conformance "should detect unknown and duplicate fields of a typed object".
    name = unique_name("dup")
    body = ('{"apiVersion": "apps/v1", "kind": "Deployment", '
            f'"metadata": {{"name": "{name}", "labels": {{"app": "nginx"}}}}, '
            '"spec": {"unknownField": "foo", "replicas": 2, "replicas": 3, '
            '"selector": {"matchLabels": {"app": "nginx"}}, '
            '"template": {"metadata": {"labels": {"app": "nginx"}}, '
            '"spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}}}')
    path = tmp_path / "deploy.json"
    path.write_text(body)
    url = f"/apis/apps/v1/namespaces/{ns}/deployments?fieldValidation=Strict"
    result = kubectl("create", "--raw", url, "-f", path, check=False)
    assert result.returncode != 0, result.stdout
    assert ('strict decoding error: unknown field "spec.unknownField", '
            'duplicate field "spec.replicas"') in result.stderr, result.stderr

    # Unknown metadata fields too; without the parameter the server warns (Warn is the default).
    meta = json.loads(body)
    meta["metadata"]["unknownMeta"] = "foo"
    meta["spec"].pop("unknownField")
    path.write_text(json.dumps(meta))
    result = kubectl("create", "--raw", url, "-f", path, check=False)
    assert 'strict decoding error: unknown field "metadata.unknownMeta"' in result.stderr
    url = f"/apis/apps/v1/namespaces/{ns}/deployments"
    result = kubectl("create", "--raw", url, "-f", path)
    assert 'Warning: unknown field "metadata.unknownMeta"' in result.stderr, result.stderr
    assert json.loads(result.stdout)["spec"]["replicas"] == 3


def test_strict_rejects_unknown_field_of_custom_resource(kubectl, ns, gadget_crd):
    bad = manifest(gadget("g1", size=3, colr="red", extras={"anything": {"goes": True}}))
    result = kubectl("apply", "-n", ns, "-f", "-", input=bad, check=False)
    assert result.returncode != 0, result.stdout
    assert 'strict decoding error: unknown field "spec.colr"' in result.stderr, result.stderr
    assert kubectl("get", "gadgets", "-n", ns, "-o", "name").stdout.split() == []

    result = kubectl("apply", "-n", ns, "--validate=warn", "-f", "-", input=bad)
    assert 'Warning: unknown field "spec.colr"' in result.stderr, result.stderr
    assert "extras" not in result.stderr, result.stderr
    spec = kubectl.json("get", "gadget", "g1", "-n", ns)["spec"]
    assert spec == {"size": 3, "extras": {"anything": {"goes": True}}}, spec


def test_apply_computes_strategic_merge_patch_from_openapi(kubectl, ns, tmp_path):
    path = tmp_path / "deploy.yaml"
    side = {"name": "side", "image": "registry.example/side:1"}
    doc = deployment("web", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     extra_containers=[side])
    path.write_text(manifest(doc))
    kubectl("apply", "-n", ns, "-f", path)
    doc["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
    path.write_text(manifest(doc))
    result = kubectl("apply", "-n", ns, "-f", path)
    assert result.stdout.strip() == "deployment.apps/web configured", result.stdout
    assert result.stderr == "", result.stderr
    containers = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"][
        "containers"]
    assert [c["name"] for c in containers] == ["app", "side"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]
