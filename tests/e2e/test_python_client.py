"""The PyPI `kubernetes` client against `ledge server`: typed CRUD, watch, utils, dynamic client.

Expected behaviour is upstream Kubernetes' (defaults, Status reasons, watch semantics).
"""

from __future__ import annotations

import base64
import ipaddress
import os

import pytest
from kubernetes import client, dynamic, utils, watch
from kubernetes.client.rest import ApiException

from e2e_util import configmap, deployment, status_of, unique_name, write_manifest

# Server-side watch duration for streams expected to end early (we stop them on the last event).
WATCH_SECONDS = 20
# Client-side socket timeouts (connect, read) so that no stream can hang the suite.
REQUEST_TIMEOUT = (5, WATCH_SECONDS + 15)


@pytest.fixture
def v1(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


def assert_api_error(excinfo, status: int, reason: str) -> dict:
    err = excinfo.value
    body = status_of(err)
    assert err.status == status, f"expected HTTP {status}, got {err.status}: {err.body}"
    assert body.get("kind") == "Status", err.body
    assert body.get("reason") == reason, err.body
    assert body.get("code") == status, err.body
    return body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------------------------------
# CRUD


def test_configmap_crud(v1, ns):
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="crud", labels={"app": "crud"}), data={"a": "1"})
    created = v1.create_namespaced_config_map(ns, body)
    assert (created.metadata.name, created.metadata.namespace) == ("crud", ns)
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.data == {"a": "1"}

    with pytest.raises(ApiException) as excinfo:
        v1.create_namespaced_config_map(ns, body)
    assert_api_error(excinfo, 409, "AlreadyExists")

    read = v1.read_namespaced_config_map("crud", ns)
    assert read.metadata.uid == created.metadata.uid
    assert read.data == {"a": "1"}

    read.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("crud", ns, read)
    assert replaced.data == {"a": "1", "b": "2"}
    assert replaced.metadata.resource_version != read.metadata.resource_version

    patched = v1.patch_namespaced_config_map("crud", ns, {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}

    listed = v1.list_namespaced_config_map(ns)
    assert listed.metadata.resource_version
    assert "crud" in [item.metadata.name for item in listed.items]

    v1.delete_namespaced_config_map("crud", ns)
    with pytest.raises(ApiException) as excinfo:
        v1.read_namespaced_config_map("crud", ns)
    body = assert_api_error(excinfo, 404, "NotFound")
    assert body.get("message") == 'configmaps "crud" not found', body
    assert body.get("details", {}).get("name") == "crud", body


def test_secret_data_round_trips_as_base64(v1, ns):
    raw = b"hello\x00\xff\xfeworld\n"
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name="creds"),
        data={"bin": b64(raw)},
        string_data={"plain": "text value"},
    )
    created = v1.create_namespaced_secret(ns, body)
    assert created.type == "Opaque"  # defaulted

    read = v1.read_namespaced_secret("creds", ns)
    assert base64.b64decode(read.data["bin"]) == raw
    # stringData is write-only: merged into data, base64-encoded, never returned.
    assert base64.b64decode(read.data["plain"]) == b"text value"
    assert read.string_data is None
    assert sorted(read.data) == ["bin", "plain"]

    v1.patch_namespaced_secret("creds", ns, {"data": {"bin": b64(b"\x01\x02\x03")}})
    read = v1.read_namespaced_secret("creds", ns)
    assert base64.b64decode(read.data["bin"]) == b"\x01\x02\x03"
    assert base64.b64decode(read.data["plain"]) == b"text value"

    v1.delete_namespaced_secret("creds", ns)
    with pytest.raises(ApiException) as excinfo:
        v1.read_namespaced_secret("creds", ns)
    assert_api_error(excinfo, 404, "NotFound")


def test_service_crud(v1, ns):
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name="web", labels={"app": "web"}),
        spec=client.V1ServiceSpec(
            selector={"app": "web"},
            ports=[client.V1ServicePort(name="http", port=80, target_port=8080)],
        ),
    )
    created = v1.create_namespaced_service(ns, body)
    # Upstream defaults.
    assert created.spec.type == "ClusterIP"
    assert created.spec.session_affinity == "None"
    assert created.spec.ports[0].protocol == "TCP"
    assert created.spec.ports[0].target_port == 8080
    assert created.spec.cluster_ip, "no clusterIP allocated"
    ipaddress.ip_address(created.spec.cluster_ip)

    # Strategic merge: the selector map merges, ports merge by port number.
    patched = v1.patch_namespaced_service("web", ns, {"spec": {
        "selector": {"tier": "front"},
        "ports": [{"name": "https", "port": 443, "targetPort": 8443}],
    }})
    assert patched.spec.selector == {"app": "web", "tier": "front"}
    assert sorted((p.name, p.port) for p in patched.spec.ports) == [("http", 80), ("https", 443)]
    assert patched.spec.cluster_ip == created.spec.cluster_ip

    listed = v1.list_namespaced_service(ns, label_selector="app=web")
    assert [s.metadata.name for s in listed.items] == ["web"]

    v1.delete_namespaced_service("web", ns)
    with pytest.raises(ApiException) as excinfo:
        v1.read_namespaced_service("web", ns)
    assert_api_error(excinfo, 404, "NotFound")


def retry_conflicts(write):
    """Runs `write()`, again on 409 Conflict. The deployment controller writes status while the
    test writes the spec, so a read-modify-replace carrying a resourceVersion can lose the race,
    exactly as against Kubernetes."""
    for _ in range(10):
        try:
            return write()
        except ApiException as err:
            if err.status != 409:
                raise
    return write()


def test_deployment_crud(apps, ns):
    created = apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2
    # Upstream defaults for apps/v1 Deployments.
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.strategy.rolling_update.max_surge == "25%"
    assert created.spec.strategy.rolling_update.max_unavailable == "25%"
    assert created.spec.revision_history_limit == 10
    assert created.spec.progress_deadline_seconds == 600
    pod_spec = created.spec.template.spec
    assert pod_spec.restart_policy == "Always"
    assert pod_spec.containers[0].image_pull_policy == "IfNotPresent"

    read = apps.read_namespaced_deployment("web", ns)
    assert read.metadata.uid == created.metadata.uid

    patched = retry_conflicts(
        lambda: apps.patch_namespaced_deployment("web", ns, {"spec": {"replicas": 4}}))
    assert patched.spec.replicas == 4
    assert patched.metadata.generation == 2

    def replace_image():
        current = apps.read_namespaced_deployment("web", ns)
        current.spec.template.spec.containers[0].image = "registry.example/app:2"
        return apps.replace_namespaced_deployment("web", ns, current)

    replaced = retry_conflicts(replace_image)
    assert replaced.spec.template.spec.containers[0].image == "registry.example/app:2"
    assert replaced.metadata.generation == 3

    # Metadata-only changes do not bump the generation.
    relabelled = retry_conflicts(
        lambda: apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}}))
    assert relabelled.metadata.generation == 3

    listed = apps.list_namespaced_deployment(ns, label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]

    apps.delete_namespaced_deployment("web", ns)
    with pytest.raises(ApiException) as excinfo:
        apps.read_namespaced_deployment("web", ns)
    assert_api_error(excinfo, 404, "NotFound")


# --------------------------------------------------------------------------------------------------
# list


def test_list_with_label_selector(v1, ns):
    run = unique_name("run")
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "x", "tier": "db"}),
                         ("c", {"app": "y"}), ("d", {})]:
        v1.create_namespaced_config_map(ns, configmap(name, {"n": name}, {**labels, "run": run}))

    def names(selector: str) -> list[str]:
        items = v1.list_namespaced_config_map(ns, label_selector=selector).items
        return sorted(item.metadata.name for item in items)

    assert names("app=x") == ["a", "b"]
    assert names("app=x,tier=db") == ["b"]
    assert names("app,app!=x") == ["c"]
    assert names("app in (x,y),tier notin (db)") == ["a", "c"]
    assert names("app,!tier") == ["c"]
    assert names("app=z") == []

    everywhere = v1.list_config_map_for_all_namespaces(label_selector=f"run={run},app=x")
    assert sorted((i.metadata.namespace, i.metadata.name) for i in everywhere.items) == [
        (ns, "a"), (ns, "b")]


def test_list_pagination_with_limit_and_continue(v1, ns):
    run = unique_name("run")
    expected = [f"page-{i}" for i in range(5)]
    for name in expected:
        v1.create_namespaced_config_map(ns, configmap(name, {"n": name}, {"run": run}))

    seen, pages, token = [], [], None
    while True:
        page = v1.list_namespaced_config_map(ns, label_selector=f"run={run}", limit=2,
                                             _continue=token)
        pages.append(len(page.items))
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert len(pages) < 10, "pagination does not terminate"
    # The API allows short pages, never long ones; everything is seen exactly once.
    assert pages[0] == 2 and all(size <= 2 for size in pages), pages
    assert len(pages) >= 3, pages
    assert sorted(seen) == expected, seen


# --------------------------------------------------------------------------------------------------
# watch


def collect_until(stream, w: watch.Watch, stop_name: str, label: tuple[str, str] | None = None,
                  stop: bool = True):
    """(type, name, object) for events of objects carrying `label`, up to the ADDED of `stop_name`.

    Objects without the label (e.g. a `kube-root-ca.crt` a controller publishes into every
    namespace) are ignored; everything of ours must be accounted for exactly. With `stop`, the
    watch is closed once `stop_name` arrived.
    """
    events = []
    for event in stream:
        obj = event["object"]
        labels = obj.metadata.labels or {}
        if label and labels.get(label[0]) != label[1]:
            continue
        events.append((event["type"], obj.metadata.name, obj))
        if event["type"] == "ADDED" and obj.metadata.name == stop_name:
            if stop:
                w.stop()
            return events
    raise AssertionError(
        f"watch ended before the ADDED event of {stop_name}: {[(t, n) for t, n, _ in events]}")


def test_watch_from_resource_version_sees_later_changes_in_order(v1, ns):
    mark = {"watch": "rv"}
    v1.create_namespaced_config_map(ns, configmap("before", {"n": "1"}, mark))
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version

    v1.create_namespaced_config_map(ns, configmap("second", {"n": "1"}, mark))
    v1.patch_namespaced_config_map("before", ns, {"data": {"n": "2"}})
    v1.delete_namespaced_config_map("second", ns)
    v1.create_namespaced_config_map(ns, configmap("sentinel", {}, mark))

    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_config_map, ns, resource_version=rv,
                      timeout_seconds=WATCH_SECONDS, _request_timeout=REQUEST_TIMEOUT)
    events = collect_until(stream, w, "sentinel", ("watch", "rv"))
    assert [(t, n) for t, n, _ in events] == [
        ("ADDED", "second"), ("MODIFIED", "before"), ("DELETED", "second"), ("ADDED", "sentinel"),
    ]
    assert events[1][2].data == {"n": "2"}


def test_watch_without_resource_version_starts_with_current_state(v1, ns):
    mark = ("watch", "initial")
    v1.create_namespaced_config_map(ns, configmap("existing", {"n": "1"}, dict([mark])))

    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_config_map, ns, timeout_seconds=WATCH_SECONDS,
                      _request_timeout=REQUEST_TIMEOUT)
    # No resourceVersion: a synthetic ADDED for each existing object, then live changes.
    events = collect_until(stream, w, "existing", mark, stop=False)
    v1.create_namespaced_config_map(ns, configmap("live", {}, dict([mark])))
    events += collect_until(stream, w, "live", mark)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "existing"), ("ADDED", "live")]
    assert events[0][2].data == {"n": "1"}


def test_watch_with_label_selector_sees_objects_enter_and_leave(v1, ns):
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    v1.create_namespaced_config_map(ns, configmap("x1", {}, {"app": "x"}))
    v1.create_namespaced_config_map(ns, configmap("y1", {}, {"app": "y"}))
    v1.patch_namespaced_config_map("y1", ns, {"metadata": {"labels": {"app": "x"}}})  # enters
    v1.patch_namespaced_config_map("x1", ns, {"metadata": {"labels": {"app": "z"}}})  # leaves
    v1.patch_namespaced_config_map("x1", ns, {"data": {"ignored": "yes"}})  # not selected
    v1.delete_namespaced_config_map("y1", ns)
    v1.create_namespaced_config_map(ns, configmap("sentinel", {}, {"app": "x"}))

    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_config_map, ns, resource_version=rv,
                      label_selector="app=x", timeout_seconds=WATCH_SECONDS,
                      _request_timeout=REQUEST_TIMEOUT)
    events = collect_until(stream, w, "sentinel")
    assert [(t, n) for t, n, _ in events] == [
        ("ADDED", "x1"),
        ("ADDED", "y1"),     # y1 starts matching: ADDED
        ("DELETED", "x1"),   # x1 stops matching: DELETED, carrying its new labels
        ("DELETED", "y1"),
        ("ADDED", "sentinel"),
    ]
    assert events[2][2].metadata.labels == {"app": "z"}


def _watch_outcome(v1, ns, rv):
    """A 410 ApiException, or the first event of a watch from `rv` (None if none came)."""
    w = watch.Watch()
    stream = w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=1,
                      _request_timeout=(5, 15))
    try:
        for event in stream:
            return event
        return None
    except ApiException as err:
        return err
    finally:
        stream.close()


def test_watch_from_too_old_resource_version_is_gone(v1, ns):
    """A resourceVersion older than the server's watch history gets 410 Expired.

    Upstream answers either HTTP 410 or HTTP 200 followed by an ERROR event with a 410 Status; the
    Python client turns both into ApiException(status=410), and both are accepted. The history is
    pushed past the starting revision by writing to one ConfigMap, up to
    $LEDGE_E2E_EXPIRY_MAX_WRITES (default 3000) writes.
    """
    max_writes = int(os.environ.get("LEDGE_E2E_EXPIRY_MAX_WRITES", "3000"))
    batch = 100
    v1.create_namespaced_config_map(ns, configmap("churn", {"n": "0"}))
    rv = v1.read_namespaced_config_map("churn", ns).metadata.resource_version

    outcome = _watch_outcome(v1, ns, rv)
    assert not isinstance(outcome, ApiException), \
        f"a watch from a current resourceVersion failed: {outcome}"

    writes = 0
    while True:
        for _ in range(batch):
            writes += 1
            v1.patch_namespaced_config_map("churn", ns, {"data": {"n": str(writes)}})
        outcome = _watch_outcome(v1, ns, rv)
        if isinstance(outcome, ApiException):
            break
        assert outcome is not None, \
            f"a watch from resourceVersion {rv} returned neither the later changes nor 410"
        assert writes < max_writes, (
            f"a watch from resourceVersion {rv} is still served after {writes} later writes; "
            "expected 410 Expired once it falls out of the watch history")

    assert outcome.status == 410, \
        f"expected 410, got {outcome.status}: {outcome.reason} {outcome.body}"
    reason = status_of(outcome).get("reason") or (outcome.reason or "").split(":")[0]
    assert reason in ("Expired", "Gone"), (outcome.reason, outcome.body)


# --------------------------------------------------------------------------------------------------
# utils and the dynamic client


def test_create_from_yaml_multi_document(api_client, v1, apps, ns, tmp_path):
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "app"},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    path = write_manifest(tmp_path / "app.yaml", configmap("app-config", {"k": "v"}), service,
                          deployment("app", replicas=2))

    utils.create_from_yaml(api_client, str(path), namespace=ns)
    assert v1.read_namespaced_config_map("app-config", ns).data == {"k": "v"}
    assert [p.port for p in v1.read_namespaced_service("app", ns).spec.ports] == [80]
    assert apps.read_namespaced_deployment("app", ns).spec.replicas == 2

    with pytest.raises(utils.FailToCreateError) as excinfo:
        utils.create_from_yaml(api_client, str(path), namespace=ns)
    statuses = [err.status for err in excinfo.value.api_exceptions]
    assert statuses == [409, 409, 409]


def test_dynamic_client_server_side_apply(api_client, ns, tmp_path):
    dyn = dynamic.DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")

    created = configmaps.server_side_apply(
        body=configmap("applied", {"a": "1", "b": "2"}, namespace=ns), namespace=ns,
        field_manager="pytest")
    assert created.metadata.name == "applied"
    assert created.data.to_dict() == {"a": "1", "b": "2"}

    updated = configmaps.server_side_apply(
        body=configmap("applied", {"a": "10", "c": "3"}, namespace=ns), namespace=ns,
        field_manager="pytest")
    assert updated.data.to_dict() == {"a": "10", "c": "3"}
    assert updated.metadata.uid == created.metadata.uid
    managers = {(m.manager, m.operation) for m in updated.metadata.managedFields}
    assert ("pytest", "Apply") in managers, managers

    # Another manager applying a different value for a field pytest owns conflicts...
    with pytest.raises(ApiException) as excinfo:
        configmaps.server_side_apply(
            body=configmap("applied", {"a": "other"}, namespace=ns), namespace=ns,
            field_manager="intruder")
    assert_api_error(excinfo, 409, "Conflict")
    assert configmaps.get(name="applied", namespace=ns).data.to_dict() == {"a": "10", "c": "3"}

    # ...unless it forces, which takes the field over.
    forced = configmaps.server_side_apply(
        body=configmap("applied", {"a": "other"}, namespace=ns), namespace=ns,
        field_manager="intruder", force_conflicts=True)
    assert forced.data.to_dict() == {"a": "other", "c": "3"}


def test_replace_with_stale_resource_version_conflicts(v1, ns):
    v1.create_namespaced_config_map(ns, configmap("occ", {"x": "0"}))
    stale = v1.read_namespaced_config_map("occ", ns)
    fresh = v1.read_namespaced_config_map("occ", ns)

    fresh.data["x"] = "1"
    v1.replace_namespaced_config_map("occ", ns, fresh)

    stale.data["x"] = "2"
    with pytest.raises(ApiException) as excinfo:
        v1.replace_namespaced_config_map("occ", ns, stale)
    body = assert_api_error(excinfo, 409, "Conflict")
    assert "the object has been modified" in body.get("message", ""), body

    # A resourceVersion inside a patch is a precondition too.
    with pytest.raises(ApiException) as excinfo:
        v1.patch_namespaced_config_map("occ", ns, {
            "metadata": {"resourceVersion": stale.metadata.resource_version},
            "data": {"x": "3"}})
    assert_api_error(excinfo, 409, "Conflict")

    assert v1.read_namespaced_config_map("occ", ns).data == {"x": "1"}
