"""Real kubectl (PATH's, and 1.27 / 1.31 / 1.32 / 1.33 from the SDK folder) against `ledge server`.

Each test asserts what a kubectl user sees: exit status, the exact lines kubectl prints, table
columns, and the object state read back. Expected behaviour is upstream Kubernetes'.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from e2e_util import (
    configmap,
    deployment,
    manifest,
    parse_table,
    unique_name,
    wait_until,
    write_manifest,
    JsonEventStream,
)

# The kubectl versions that version-sensitive scenarios run with. None = PATH's kubectl (1.32, a
# dispatcher that may pick a kubectl.1.x close to the server's version).
VERSIONS = [
    pytest.param(None, id="kubectl"),
    pytest.param("1.27", id="1.27"),
    pytest.param("1.31", id="1.31"),
    pytest.param("1.33", id="1.33"),
]

CORE_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"]


def data_of(kubectl, kind: str, name: str, ns: str, version=None) -> dict:
    out = kubectl("get", kind, name, "-n", ns, "-o", "jsonpath={.data}", version=version).stdout
    return json.loads(out) if out.strip() else {}


def names_of(kubectl, *args) -> set[str]:
    return set(kubectl("get", *args, "-o", "name").stdout.split())


# --------------------------------------------------------------------------------------------------
# discovery and the basics


@pytest.mark.parametrize("version", VERSIONS)
def test_version_shows_server_version(kubectl, version):
    info = json.loads(kubectl("version", "-o", "json", version=version).stdout)
    server = info.get("serverVersion")
    assert server, f"no serverVersion in `kubectl version -o json`: {info}"
    # Conformance: major and minor are integers, gitVersion a semantic version.
    assert re.fullmatch(r"\d+", server["major"]), server
    assert re.fullmatch(r"\d+", server["minor"]), server
    assert re.match(r"v\d+\.\d+\.\d+", server["gitVersion"]), server
    assert server["gitVersion"].startswith(f"v{server['major']}.{server['minor']}."), server

    plain = kubectl("version", version=version).stdout
    assert re.search(r"^Server Version: \S+", plain, re.M), plain


@pytest.mark.parametrize("version", VERSIONS)
def test_api_resources_lists_configmaps_and_deployments(kubectl, version):
    headers, rows = parse_table(kubectl("api-resources", version=version).stdout)
    assert headers == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    by_name = {(row["NAME"], row["APIVERSION"]): row for row in rows}
    assert by_name.get(("configmaps", "v1")) == {
        "NAME": "configmaps", "SHORTNAMES": "cm", "APIVERSION": "v1", "NAMESPACED": "true",
        "KIND": "ConfigMap",
    }
    assert by_name.get(("deployments", "apps/v1")) == {
        "NAME": "deployments", "SHORTNAMES": "deploy", "APIVERSION": "apps/v1",
        "NAMESPACED": "true", "KIND": "Deployment",
    }
    assert by_name.get(("namespaces", "v1")) == {
        "NAME": "namespaces", "SHORTNAMES": "ns", "APIVERSION": "v1", "NAMESPACED": "false",
        "KIND": "Namespace",
    }

    apps = kubectl("api-resources", "--api-group=apps", "-o", "name", version=version).stdout
    assert "deployments.apps" in apps.split()
    assert "configmaps" not in apps.split()


@pytest.mark.parametrize("version", VERSIONS)
def test_get_namespaces_shows_the_builtin_ones(kubectl, version):
    headers, rows = parse_table(kubectl("get", "ns", version=version).stdout)
    assert headers == ["NAME", "STATUS", "AGE"]
    status = {row["NAME"]: row["STATUS"] for row in rows}
    for name in CORE_NAMESPACES:
        assert status.get(name) == "Active", f"{name} missing or not Active in {status}"


# --------------------------------------------------------------------------------------------------
# apply


@pytest.mark.parametrize("version", VERSIONS)
def test_configmap_client_side_apply_twice(kubectl, ns, tmp_path, version):
    path = tmp_path / "settings.yaml"
    write_manifest(path, configmap("settings", {"a": "1", "b": "2"}))
    out = kubectl("apply", "-n", ns, "-f", path, version=version).stdout
    assert out.strip() == "configmap/settings created"
    assert data_of(kubectl, "cm", "settings", ns) == {"a": "1", "b": "2"}

    # Key b removed and key c added: kubectl sends a strategic merge patch with "b": null.
    write_manifest(path, configmap("settings", {"a": "1", "c": "3"}))
    out = kubectl("apply", "-n", ns, "-f", path, version=version).stdout
    assert out.strip() == "configmap/settings configured"
    assert data_of(kubectl, "cm", "settings", ns) == {"a": "1", "c": "3"}

    out = kubectl("apply", "-n", ns, "-f", path, version=version).stdout
    assert out.strip() == "configmap/settings unchanged"

    obj = kubectl.json("get", "cm", "settings", "-n", ns)
    last = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(last)["data"] == {"a": "1", "c": "3"}


def test_configmap_server_side_apply_owns_and_prunes_fields(kubectl, ns, tmp_path):
    path = tmp_path / "settings.yaml"
    write_manifest(path, configmap("settings", {"a": "1", "b": "2"}))
    out = kubectl("apply", "--server-side", "-n", ns, "-f", path).stdout
    assert out.strip() == "configmap/settings serverside-applied"
    assert data_of(kubectl, "cm", "settings", ns) == {"a": "1", "b": "2"}

    # b is owned by this manager alone, so leaving it out of the next apply removes it.
    write_manifest(path, configmap("settings", {"a": "10", "c": "3"}))
    out = kubectl("apply", "--server-side", "-n", ns, "-f", path).stdout
    assert out.strip() == "configmap/settings serverside-applied"
    assert data_of(kubectl, "cm", "settings", ns) == {"a": "10", "c": "3"}

    obj = kubectl.json("get", "cm", "settings", "-n", ns, "--show-managed-fields")
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])}
    assert ("kubectl", "Apply") in managers, managers


def test_client_side_then_server_side_apply_of_changed_manifest(kubectl, ns, tmp_path):
    path = tmp_path / "settings.yaml"
    write_manifest(path, configmap("settings", {"a": "1", "b": "2"}))
    assert kubectl("apply", "-n", ns, "-f", path).stdout.strip() == "configmap/settings created"

    write_manifest(path, configmap("settings", {"a": "1", "b": "20", "c": "3"}))
    out = kubectl("apply", "--server-side", "-n", ns, "-f", path).stdout
    assert out.strip() == "configmap/settings serverside-applied"
    assert data_of(kubectl, "cm", "settings", ns) == {"a": "1", "b": "20", "c": "3"}


# --------------------------------------------------------------------------------------------------
# get: output formats, selectors, all namespaces


def test_get_yaml_and_json_round_trip(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-",
            input=manifest(configmap("rt", {"k": "v"}, labels={"app": "rt"})))
    yaml_text = kubectl("get", "cm", "rt", "-n", ns, "-o", "yaml").stdout
    as_yaml = yaml.safe_load(yaml_text)
    as_json = json.loads(kubectl("get", "cm", "rt", "-n", ns, "-o", "json").stdout)
    assert as_yaml == as_json
    assert as_json["apiVersion"] == "v1" and as_json["kind"] == "ConfigMap"
    meta = as_json["metadata"]
    assert (meta["name"], meta["namespace"], meta["labels"]) == ("rt", ns, {"app": "rt"})
    for field in ("uid", "resourceVersion", "creationTimestamp"):
        assert meta.get(field), f"metadata.{field} missing: {meta}"
    assert as_json["data"] == {"k": "v"}

    # What `get -o yaml` printed can be edited and replaced as is (it carries its resourceVersion).
    assert re.search(r"^  k: v$", yaml_text, re.M), yaml_text
    edited = re.sub(r"^  k: v$", "  k: v2", yaml_text, flags=re.M)
    out = kubectl("replace", "-f", "-", input=edited).stdout
    assert out.strip() == "configmap/rt replaced"
    assert data_of(kubectl, "cm", "rt", ns) == {"k": "v2"}

    # Replacing again with the now stale resourceVersion is an optimistic-concurrency conflict.
    edited = re.sub(r"^  k: v$", "  k: v3", yaml_text, flags=re.M)
    result = kubectl("replace", "-f", "-", input=edited, check=False)
    assert result.returncode != 0
    assert "Conflict" in result.stderr, result.stderr
    assert "the object has been modified" in result.stderr, result.stderr
    assert data_of(kubectl, "cm", "rt", ns) == {"k": "v2"}


def test_get_with_label_and_field_selectors(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(
        configmap("alpha", {"n": "1"}, labels={"app": "x", "tier": "web"}),
        configmap("beta", {"n": "2"}, labels={"app": "x", "tier": "db"}),
        configmap("gamma", {"n": "3"}, labels={"app": "y"}),
    ))
    assert names_of(kubectl, "cm", "-n", ns, "-l", "app=x") == {"configmap/alpha", "configmap/beta"}
    assert names_of(kubectl, "cm", "-n", ns, "-l", "app=x,tier!=db") == {"configmap/alpha"}
    assert names_of(kubectl, "cm", "-n", ns, "-l", "app in (x,y),!tier") == {"configmap/gamma"}
    assert names_of(kubectl, "cm", "-n", ns, "-l", "app=nothing") == set()
    assert names_of(kubectl, "cm", "-n", ns, "--field-selector", "metadata.name=gamma") == {
        "configmap/gamma"}
    assert names_of(kubectl, "cm", "-n", ns, "-l", "app",
                    "--field-selector", "metadata.name!=gamma") == {"configmap/alpha",
                                                                   "configmap/beta"}

    # Field selectors are limited to the fields a resource supports: anything else is a 400.
    result = kubectl("get", "cm", "-n", ns, "--field-selector", "data.n=1", check=False)
    assert result.returncode != 0
    assert "BadRequest" in result.stderr and "field label not supported" in result.stderr, \
        result.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_get_all_namespaces_shows_namespace_column(kubectl, ns, version):
    run = unique_name("run")
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(
        configmap("everywhere", {"a": "1", "b": "2"}, labels={"e2e-run": run})))
    out = kubectl("get", "cm", "-A", "-l", f"e2e-run={run}", version=version).stdout
    headers, rows = parse_table(out)
    assert headers == ["NAMESPACE", "NAME", "DATA", "AGE"], out
    assert [(r["NAMESPACE"], r["NAME"], r["DATA"]) for r in rows] == [(ns, "everywhere", "2")], out


# --------------------------------------------------------------------------------------------------
# patch


def test_patch_configmap_merge_and_json(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(configmap("p", {"a": "1", "b": "2"})))

    out = kubectl("patch", "cm", "p", "-n", ns, "--type=merge",
                  "-p", '{"data":{"a":null,"c":"3"}}').stdout
    assert out.strip() == "configmap/p patched"
    assert data_of(kubectl, "cm", "p", ns) == {"b": "2", "c": "3"}

    kubectl("patch", "cm", "p", "-n", ns, "--type=json", "-p", json.dumps([
        {"op": "replace", "path": "/data/b", "value": "20"},
        {"op": "add", "path": "/data/d", "value": "4"},
        {"op": "remove", "path": "/data/c"},
    ]))
    assert data_of(kubectl, "cm", "p", ns) == {"b": "20", "d": "4"}

    # A failing "test" operation rejects the whole patch.
    result = kubectl("patch", "cm", "p", "-n", ns, "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/data/d"},
        {"op": "test", "path": "/data/b", "value": "wrong"},
    ]), check=False)
    assert result.returncode != 0, result.stdout
    assert data_of(kubectl, "cm", "p", ns) == {"b": "20", "d": "4"}


def test_patch_deployment_strategic_merges_containers_and_env_by_name(kubectl, ns):
    dep = deployment(
        "web",
        env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        extra_containers=[{"name": "side", "image": "registry.example/side:1",
                           "env": [{"name": "S", "value": "s"}]}],
    )
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(dep))

    patch = {"spec": {"template": {"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"},
                {"name": "A", "$patch": "delete"}],
    }]}}}}
    out = kubectl("patch", "deploy", "web", "-n", ns, "--type=strategic",
                  "-p", json.dumps(patch)).stdout
    assert out.strip() == "deployment.apps/web patched"

    spec = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert sorted(containers) == ["app", "side"], spec["containers"]
    assert containers["app"]["image"] == "registry.example/app:1"
    assert {e["name"]: e.get("value") for e in containers["app"]["env"]} == {"B": "20", "C": "3"}
    assert len(containers["app"]["env"]) == 2, containers["app"]["env"]
    assert containers["side"]["env"] == [{"name": "S", "value": "s"}]
    assert containers["side"]["image"] == "registry.example/side:1"

    # The same list in a JSON merge patch replaces it wholesale.
    merge = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.example/app:2"}]}}}}
    kubectl("patch", "deploy", "web", "-n", ns, "--type=merge", "-p", json.dumps(merge))
    spec = kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert spec["containers"][0]["image"] == "registry.example/app:2"
    assert "env" not in spec["containers"][0]


# --------------------------------------------------------------------------------------------------
# watch and delete


@pytest.mark.parametrize("version", VERSIONS)
def test_get_watch_sees_added_modified_deleted(kubectl, ns, version):
    proc = kubectl.popen("get", "cm", "-n", ns, "-w", "--output-watch-events", "-o", "json",
                         version=version)
    with JsonEventStream(proc) as events:
        def ours(event):
            return event.get("object", {}).get("metadata", {}).get("name") == "watched"

        kubectl("create", "-n", ns, "-f", "-", input=manifest(configmap("watched", {"a": "1"})))
        added = events.wait_for(ours, "event for configmap watched")
        assert added["type"] == "ADDED", events.summary()
        assert added["object"]["data"] == {"a": "1"}

        kubectl("patch", "cm", "watched", "-n", ns, "--type=merge", "-p", '{"data":{"a":"2"}}')
        modified = events.wait_for(ours, "second event for configmap watched")
        assert modified["type"] == "MODIFIED", events.summary()
        assert modified["object"]["data"] == {"a": "2"}

        kubectl("delete", "cm", "watched", "-n", ns)
        deleted = events.wait_for(ours, "third event for configmap watched")
        assert deleted["type"] == "DELETED", events.summary()
        assert deleted["object"]["metadata"]["name"] == "watched"
        assert proc.poll() is None, "kubectl get -w exited early"


def test_delete_waits_until_gone(kubectl, ns):
    kubectl("create", "-n", ns, "-f", "-", input=manifest(configmap("gone", {"a": "1"})))
    out = kubectl("delete", "cm", "gone", "-n", ns, "--wait=true", "--timeout=30s").stdout
    assert re.fullmatch(r'configmap "gone" deleted( from \S+ namespace)?', out.strip()), out

    result = kubectl("get", "cm", "gone", "-n", ns, check=False)
    assert result.returncode == 1
    assert 'Error from server (NotFound): configmaps "gone" not found' in result.stderr

    result = kubectl("delete", "cm", "gone", "-n", ns, check=False)
    assert result.returncode != 0
    assert 'Error from server (NotFound): configmaps "gone" not found' in result.stderr


# --------------------------------------------------------------------------------------------------
# deployments


@pytest.mark.parametrize("version", VERSIONS)
def test_deployment_shows_in_get_deploy(kubectl, ns, version):
    out = kubectl("apply", "-n", ns, "-f", "-", input=manifest(deployment("web", replicas=2)),
                  version=version).stdout
    assert out.strip() == "deployment.apps/web created"

    headers, rows = parse_table(kubectl("get", "deploy", "-n", ns, version=version).stdout)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [row["NAME"] for row in rows] == ["web"]
    assert re.fullmatch(r"\d+/2", rows[0]["READY"]), rows[0]
    assert re.fullmatch(r"\d+", rows[0]["UP-TO-DATE"]), rows[0]
    assert re.fullmatch(r"\d+", rows[0]["AVAILABLE"]), rows[0]

    headers, rows = parse_table(
        kubectl("get", "deploy", "web", "-n", ns, "-o", "wide", version=version).stdout)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES",
                       "SELECTOR"]
    assert (rows[0]["CONTAINERS"], rows[0]["IMAGES"], rows[0]["SELECTOR"]) == (
        "app", "registry.example/app:1", "app=web")


def test_scale_deployment_sets_replicas(kubectl, ns):
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(deployment("web", replicas=1)))
    jsonpath = lambda path: kubectl(  # noqa: E731
        "get", "deploy", "web", "-n", ns, "-o", f"jsonpath={path}").stdout
    assert jsonpath("{.metadata.generation}") == "1"

    out = kubectl("scale", "deploy/web", "--replicas=3", "-n", ns).stdout
    assert out.strip() == "deployment.apps/web scaled"
    assert jsonpath("{.spec.replicas}") == "3"
    # A spec change bumps the generation (what `kubectl rollout status` waits on).
    assert jsonpath("{.metadata.generation}") == "2"

    scale = json.loads(kubectl(
        "get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale").stdout)
    assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale")
    assert scale["metadata"]["name"] == "web"
    assert scale["spec"]["replicas"] == 3


# --------------------------------------------------------------------------------------------------
# describe


def test_describe_configmap(kubectl, ns):
    kubectl("create", "-n", ns, "-f", "-",
            input=manifest(configmap("described", {"greeting": "hello"}, labels={"app": "demo"})))
    out = kubectl("describe", "cm", "described", "-n", ns).stdout
    assert re.search(r"^Name:\s+described$", out, re.M), out
    assert re.search(rf"^Namespace:\s+{re.escape(ns)}$", out, re.M), out
    assert re.search(r"^Labels:\s+app=demo$", out, re.M), out
    assert re.search(r"^Data\n====\ngreeting:\n----\nhello$", out, re.M), out


# --------------------------------------------------------------------------------------------------
# custom resources

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList", "shortNames": ["wdg"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {"size": {"type": "integer", "minimum": 1},
                                   "color": {"type": "string"}},
                }},
            }},
            "additionalPrinterColumns": [
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
        }],
    },
}


def widget(name: str, size) -> dict:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"size": size, "color": "blue"}}


@pytest.fixture
def widget_crd(kubectl):
    out = kubectl("apply", "-f", "-", input=manifest(WIDGET_CRD)).stdout
    assert out.strip() == (
        "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created")
    yield "widgets.example.com"
    kubectl("delete", "crd", "widgets.example.com", "--ignore-not-found", "--wait=false")


def test_crd_becomes_usable_with_printer_columns(kubectl, ns, widget_crd):
    wait_until(
        lambda: kubectl("get", "crd", widget_crd, "-o",
                        'jsonpath={.status.conditions[?(@.type=="Established")].status}'
                        ).stdout == "True",
        "the widgets CRD to be Established",
    )
    out = kubectl("apply", "-n", ns, "-f", "-", input=manifest(widget("w1", 3))).stdout
    assert out.strip() == "widget.example.com/w1 created"

    headers, rows = parse_table(kubectl("get", "widgets", "-n", ns).stdout)
    assert headers == ["NAME", "SIZE", "AGE"]
    assert [(row["NAME"], row["SIZE"]) for row in rows] == [("w1", "3")]

    assert kubectl("get", "wdg", "w1", "-n", ns, "-o", "jsonpath={.spec.size}").stdout == "3"
    resources = kubectl("api-resources", "--api-group=example.com").stdout
    _, rows = parse_table(resources)
    assert [(r["NAME"], r["SHORTNAMES"], r["NAMESPACED"], r["KIND"]) for r in rows] == [
        ("widgets", "wdg", "true", "Widget")], resources

    # The openAPIV3Schema is enforced.
    result = kubectl("apply", "-n", ns, "-f", "-", input=manifest(widget("w2", "big")),
                     check=False)
    assert result.returncode != 0, result.stdout
    assert "spec.size" in result.stderr, result.stderr
    assert kubectl("get", "widgets", "-n", ns, "-o", "name").stdout.split() == [
        "widget.example.com/w1"]


# --------------------------------------------------------------------------------------------------
# namespaces


def test_deleting_namespace_removes_its_configmaps(kubectl, ns):
    run = unique_name("run")
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(
        configmap("one", {"a": "1"}, labels={"e2e-run": run}),
        configmap("two", {"a": "2"}, labels={"e2e-run": run}),
    ))
    assert names_of(kubectl, "cm", "-A", "-l", f"e2e-run={run}") == {"configmap/one",
                                                                     "configmap/two"}

    out = kubectl("delete", "namespace", ns, "--timeout=60s", timeout=90).stdout
    assert re.fullmatch(rf'namespace "{re.escape(ns)}" deleted', out.strip()), out

    def gone():
        result = kubectl("get", "namespace", ns, check=False)
        return result.returncode != 0 and "NotFound" in result.stderr

    wait_until(gone, f"namespace {ns} to be gone")
    assert names_of(kubectl, "cm", "-A", "-l", f"e2e-run={run}") == set()


# --------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("version", VERSIONS)
def test_get_missing_configmap_is_not_found(kubectl, ns, version):
    result = kubectl("get", "cm", "does-not-exist", "-n", ns, check=False, version=version)
    assert result.returncode == 1
    assert 'Error from server (NotFound): configmaps "does-not-exist" not found' in result.stderr, \
        result.stderr


def test_apply_invalid_name_names_the_field(kubectl, ns):
    result = kubectl("apply", "-n", ns, "-f", "-",
                     input=manifest(configmap("Bad_Name", {"a": "1"})), check=False)
    assert result.returncode != 0, result.stdout
    assert 'The ConfigMap "Bad_Name" is invalid' in result.stderr, result.stderr
    assert 'metadata.name: Invalid value: "Bad_Name"' in result.stderr, result.stderr
    assert names_of(kubectl, "cm", "-n", ns, "--field-selector", "metadata.name=Bad_Name") == set()


# --------------------------------------------------------------------------------------------------
# kubectl create <generator>: kubectl 1.32+ POSTs a protobuf body


@pytest.mark.parametrize("version", [
    pytest.param(None, id="kubectl"),
    pytest.param("1.31", id="1.31-json"),
    pytest.param("1.32", id="1.32-protobuf"),
    pytest.param("1.33", id="1.33-protobuf"),
])
def test_create_configmap_from_literal(kubectl, ns, version):
    out = kubectl("create", "configmap", "lit", "-n", ns, "--from-literal=a=b",
                  "--from-literal=greeting=hello world", version=version).stdout
    assert out.strip() == "configmap/lit created"
    assert data_of(kubectl, "cm", "lit", ns) == {"a": "b", "greeting": "hello world"}
