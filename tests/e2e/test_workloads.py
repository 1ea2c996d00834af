"""Deployments and ReplicaSets, driven by real kubectl: rollouts, scaling, rolling updates within
maxSurge/maxUnavailable, Recreate, undo/history/pause/resume/restart, adoption, and garbage
collection of what a Deployment owns.

No node agent runs here, so pods stay Pending; `FakeKubelet` plays the node's part through the
API, patching pods' `/status` to Running and Ready as a kubelet would. Every wait is bounded.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

import e2e_util
from e2e_util import manifest, parse_table, wait_until

HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
# Longest a test lets its fake kubelet run, so a stuck rollout cannot keep a thread alive.
KUBELET_MAX_SECONDS = 120
ROLLOUT_TIMEOUT = "90s"


# --------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def v1(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def mark_ready(v1: client.CoreV1Api, pod: client.V1Pod) -> None:
    """What a kubelet reports once a pod's containers run and pass readiness."""
    t = now()
    containers = [{"name": c.name, "image": c.image, "imageID": "", "ready": True, "started": True,
                   "restartCount": 0, "state": {"running": {"startedAt": t}}}
                  for c in pod.spec.containers]
    body = {"status": {
        "phase": "Running",
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
            {"type": "Ready", "status": "True", "lastTransitionTime": t},
        ],
        "containerStatuses": containers,
    }}
    for attempt in range(10):
        try:
            v1.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)
            return
        except ApiException as err:
            if err.status == 404:  # deleted meanwhile
                return
            # A spurious conflict with the scheduler's status write (see CONFLICT below).
            if err.status != 409 or attempt == 9:
                raise
            time.sleep(0.05)


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def live_pods(v1, ns, selector=None) -> list[client.V1Pod]:
    pods = v1.list_namespaced_pod(ns, label_selector=selector).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


class FakeKubelet(e2e_util.BackgroundPoller):
    """Marks every live pod of a namespace ready, in a background thread, until stopped (or
    KUBELET_MAX_SECONDS pass). `only` limits it to pods with those labels."""

    def __init__(self, v1, ns, only: dict | None = None, interval: float = 0.2):
        super().__init__(interval, KUBELET_MAX_SECONDS)
        self.v1, self.ns = v1, ns
        self.selector = ",".join(f"{k}={v}" for k, v in (only or {}).items()) or None

    def once(self) -> None:
        for pod in live_pods(self.v1, self.ns, self.selector):
            if not is_ready(pod):
                mark_ready(self.v1, pod)



# ledge's PATCH does not yet retry its own compare-and-swap when another writer (here: the
# controllers writing status) got in between, and answers 409 Conflict where Kubernetes retries
# (crates/apiserver/src/handlers/write.rs `patch_part` takes the resourceVersion precondition from
# the patched object, which always has one). Until that is fixed, user writes retry on it.
CONFLICT = "the object has been modified"


def change(kubectl, *args):
    """A user's write (kubectl scale/set/patch/rollout ...), retried on a spurious 409."""
    for _ in range(10):
        result = kubectl(*args, check=False)
        if result.returncode == 0:
            return result
        if CONFLICT not in result.stderr:
            break
        time.sleep(0.1)
    return kubectl(*args)


def web(name="web", replicas=3, image="registry.example/web:1", strategy=None, **spec) -> dict:
    """A Deployment of `replicas` pods labelled app=<name>."""
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}},
            **spec,
        },
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def create(kubectl, ns, *docs):
    kubectl("apply", "-n", ns, "-f", "-", input=manifest(*docs))


def replica_sets(kubectl, ns, app="web") -> list[dict]:
    items = kubectl.json("get", "rs", "-n", ns, "-l", f"app={app}")["items"]
    return sorted(items, key=lambda r: int(r["metadata"].get("annotations", {}).get(REVISION, "0")))


def deployment(kubectl, ns, name="web") -> dict:
    return kubectl.json("get", "deploy", name, "-n", ns)


def condition(obj, type_) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def controller_of(obj) -> dict:
    return next((r for r in obj["metadata"].get("ownerReferences", []) if r.get("controller")), {})


def rollout_status(kubectl, ns, name="web"):
    out = kubectl("rollout", "status", f"deploy/{name}", "-n", ns, f"--timeout={ROLLOUT_TIMEOUT}",
                  timeout=120).stdout
    assert f'deployment "{name}" successfully rolled out' in out, out
    return out


def wait_for(fetch, predicate, what):
    """Fetches until `predicate` holds for the value (returned); bounded like `wait_until`."""
    def check():
        value = fetch()
        return (value,) if predicate(value) else None
    return wait_until(check, what)[0]


def wait_pods(v1, ns, count, selector="app=web", ready=None):
    def check():
        pods = live_pods(v1, ns, selector)
        if ready is not None and sum(map(is_ready, pods)) != ready:
            return None
        return pods if len(pods) == count else None
    return wait_until(check, f"{count} pods matching {selector}")


# --------------------------------------------------------------------------------------------------
# Deployments


def test_deployment_rolls_out_a_replica_set_of_owned_pods(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=3))
    d = deployment(kubectl, ns)
    rs = wait_until(lambda: [r for r in replica_sets(kubectl, ns) if r["spec"]["replicas"] == 3],
                    "a ReplicaSet of 3")[0]
    h = rs["metadata"]["labels"][HASH]
    assert h and rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH: h}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: h}
    ref = controller_of(rs)
    assert (ref["kind"], ref["name"], ref["uid"], ref["blockOwnerDeletion"]) == \
        ("Deployment", "web", d["metadata"]["uid"], True)
    annotations = rs["metadata"]["annotations"]
    # 25% of 3: surge rounds up to 1.
    assert (annotations[REVISION], annotations["deployment.kubernetes.io/desired-replicas"],
            annotations["deployment.kubernetes.io/max-replicas"]) == ("1", "3", "4")

    pods = wait_pods(v1, ns, 3)
    for p in pods:
        assert p.metadata.labels == {"app": "web", HASH: h}
        assert p.metadata.name.startswith(f"web-{h}-")
        owner = [r for r in p.metadata.owner_references if r.controller]
        assert [(r.kind, r.name, r.uid, r.block_owner_deletion) for r in owner] == \
            [("ReplicaSet", rs["metadata"]["name"], rs["metadata"]["uid"], True)]
        assert p.status.phase == "Pending"

    pending = deployment(kubectl, ns)
    assert condition(pending, "Available")["reason"] == "MinimumReplicasUnavailable"

    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
    _, rows = parse_table(kubectl("get", "deploy", "web", "-n", ns).stdout)
    assert (rows[0]["READY"], rows[0]["UP-TO-DATE"], rows[0]["AVAILABLE"]) == ("3/3", "3", "3")
    done = deployment(kubectl, ns)
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert done["metadata"]["annotations"][REVISION] == "1"
    assert (condition(done, "Available")["status"], condition(done, "Available")["reason"]) == \
        ("True", "MinimumReplicasAvailable")
    assert condition(done, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert condition(done, "Progressing")["message"] == \
        f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.'
    events = kubectl("get", "events", "-n", ns, "--field-selector",
                     "involvedObject.kind=Deployment,involvedObject.name=web",
                     "-o", "jsonpath={.items[*].message}").stdout
    assert f"Scaled up replica set {rs['metadata']['name']} from 0 to 3" in events


def test_scaling_a_deployment_resizes_its_replica_set(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=3))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        change(kubectl, "scale", "deploy/web", "-n", ns, "--replicas=5")
        wait_pods(v1, ns, 5)
        rollout_status(kubectl, ns)
        _, rows = parse_table(kubectl("get", "deploy", "web", "-n", ns).stdout)
        assert rows[0]["READY"] == "5/5"
        change(kubectl, "scale", "deploy/web", "-n", ns, "--replicas=2")
        wait_pods(v1, ns, 2)
        rollout_status(kubectl, ns)
    rss = replica_sets(kubectl, ns)
    assert len(rss) == 1, "scaling is not a rollout"
    assert rss[0]["spec"]["replicas"] == 2
    assert rss[0]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "2"


class Observer:
    """Samples a namespace's ReplicaSets and pods during a rollout, in a background thread."""

    def __init__(self, api_client, ns):
        self.apps = client.AppsV1Api(api_client)
        self.v1 = client.CoreV1Api(api_client)
        self.ns = ns
        self.max_wanted = 0     # most pods the ReplicaSets asked for at once
        self.min_ready = None   # fewest ready, live pods seen once the first rollout settled
        self.samples = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        deadline = time.monotonic() + KUBELET_MAX_SECONDS
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            rss = self.apps.list_namespaced_replica_set(self.ns, label_selector="app=web").items
            self.max_wanted = max(self.max_wanted, sum(r.spec.replicas for r in rss))
            ready = sum(map(is_ready, live_pods(self.v1, self.ns, "app=web")))
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
            self.samples += 1
            self.stop_event.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=10)


def test_rolling_update_respects_max_surge_and_max_unavailable(kubectl, ns, v1, api_client):
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    create(kubectl, ns, web(replicas=4, strategy=strategy))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        first = replica_sets(kubectl, ns)[0]
        with Observer(api_client, ns) as seen:
            change(kubectl, "set", "image", "deploy/web", "-n", ns, "app=registry.example/web:2")
            rollout_status(kubectl, ns)
    assert seen.samples > 0
    assert seen.max_wanted <= 4 + 1, f"maxSurge 1 exceeded: {seen.max_wanted} pods wanted"
    assert seen.min_ready >= 4, f"maxUnavailable 0 violated: only {seen.min_ready} ready pods"

    old, new = replica_sets(kubectl, ns)
    assert old["metadata"]["name"] == first["metadata"]["name"]
    assert (old["spec"]["replicas"], old["status"]["replicas"]) == (0, 0)
    assert new["metadata"]["annotations"][REVISION] == "2"
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:2"
    assert deployment(kubectl, ns)["metadata"]["annotations"][REVISION] == "2"
    pods = wait_pods(v1, ns, 4)
    assert {p.metadata.labels[HASH] for p in pods} == {new["metadata"]["labels"][HASH]}


def test_rolling_update_with_default_percentages(kubectl, ns, v1, api_client):
    # 10 replicas, 25%/25%: at most 13 pods wanted, at least 8 ready.
    create(kubectl, ns, web(replicas=10))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        with Observer(api_client, ns) as seen:
            change(kubectl, "set", "image", "deploy/web", "-n", ns, "app=registry.example/web:2")
            rollout_status(kubectl, ns)
    assert seen.max_wanted <= 13, seen.max_wanted
    assert seen.min_ready >= 8, seen.min_ready
    assert [r["spec"]["replicas"] for r in replica_sets(kubectl, ns)] == [0, 10]


def test_rollout_undo_returns_to_the_first_replica_set(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=2))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        # The change and its cause in one write, as `kubectl ... --record` used to do.
        change(kubectl, "patch", "deploy/web", "-n", ns, "-p", json.dumps({
            "metadata": {"annotations": {"kubernetes.io/change-cause": "image 2"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "registry.example/web:2"}]}}}}))
        rollout_status(kubectl, ns)
        first, second = replica_sets(kubectl, ns)
        out = change(kubectl, "rollout", "undo", "deploy/web", "-n", ns).stdout
        assert "rolled back" in out, out
        rollout_status(kubectl, ns)

    rss = replica_sets(kubectl, ns)
    assert len(rss) == 2, "the first ReplicaSet is reused, not duplicated"
    by_name = {r["metadata"]["name"]: r for r in rss}
    reused = by_name[first["metadata"]["name"]]
    assert reused["metadata"]["annotations"][REVISION] == "3"
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert reused["spec"]["replicas"] == 2
    assert by_name[second["metadata"]["name"]]["spec"]["replicas"] == 0
    d = deployment(kubectl, ns)
    assert d["metadata"]["annotations"][REVISION] == "3"
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/web:1"

    _, rows = parse_table(kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
                          .split("\n", 1)[1])
    # Undo copies the first ReplicaSet's annotations back: it had no change cause.
    assert [(r["REVISION"], r["CHANGE-CAUSE"]) for r in rows] == [("2", "image 2"), ("3", "<none>")]
    detail = kubectl("rollout", "history", "deploy/web", "-n", ns, "--revision=2").stdout
    assert "registry.example/web:2" in detail, detail


def test_pause_resume_and_restart(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=2))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        change(kubectl, "rollout", "pause", "deploy/web", "-n", ns)
        change(kubectl, "set", "image", "deploy/web", "-n", ns, "app=registry.example/web:2")
        paused = wait_for(lambda: deployment(kubectl, ns),
                          lambda d: d["status"].get("observedGeneration") == d["metadata"]["generation"],
                          "the paused deployment to be observed")
        assert condition(paused, "Progressing")["reason"] == "DeploymentPaused"
        assert len(replica_sets(kubectl, ns)) == 1, "no rollout while paused"

        change(kubectl, "rollout", "resume", "deploy/web", "-n", ns)
        rollout_status(kubectl, ns)
        assert [r["spec"]["replicas"] for r in replica_sets(kubectl, ns)] == [0, 2]

        change(kubectl, "rollout", "restart", "deploy/web", "-n", ns)
        rollout_status(kubectl, ns)
    rss = replica_sets(kubectl, ns)
    assert len(rss) == 3
    restarted = rss[-1]
    assert "kubectl.kubernetes.io/restartedAt" in restarted["spec"]["template"]["metadata"]["annotations"]
    assert restarted["metadata"]["annotations"][REVISION] == "3"
    assert [r["spec"]["replicas"] for r in rss] == [0, 0, 2]


def test_recreate_removes_old_pods_before_creating_new_ones(kubectl, ns, v1, api_client):
    create(kubectl, ns, web(replicas=3, strategy={"type": "Recreate"}))
    with FakeKubelet(v1, ns):
        rollout_status(kubectl, ns)
        old_hash = replica_sets(kubectl, ns)[0]["metadata"]["labels"][HASH]
        mixed = []
        stop = threading.Event()

        def watch_for_overlap():
            core = client.CoreV1Api(api_client)
            deadline = time.monotonic() + KUBELET_MAX_SECONDS
            while not stop.is_set() and time.monotonic() < deadline:
                hashes = {p.metadata.labels.get(HASH) for p in core.list_namespaced_pod(ns).items}
                if len(hashes) > 1:
                    mixed.append(hashes)
                stop.wait(0.05)

        watcher = threading.Thread(target=watch_for_overlap, daemon=True)
        watcher.start()
        try:
            change(kubectl, "set", "image", "deploy/web", "-n", ns, "app=registry.example/web:2")
            rollout_status(kubectl, ns)
        finally:
            stop.set()
            watcher.join(timeout=10)
    assert not mixed, f"old and new pods ran together: {mixed[:3]}"
    pods = wait_pods(v1, ns, 3)
    assert old_hash not in {p.metadata.labels[HASH] for p in pods}
    assert [r["spec"]["replicas"] for r in replica_sets(kubectl, ns)] == [0, 3]


def test_revision_history_limit_removes_old_replica_sets(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=1, revisionHistoryLimit=1))
    with FakeKubelet(v1, ns):
        for tag in (2, 3, 4):
            change(kubectl, "set", "image", "deploy/web", "-n", ns, f"app=registry.example/web:{tag}")
            rollout_status(kubectl, ns)
    rss = wait_for(lambda: replica_sets(kubectl, ns), lambda r: len(r) == 2,
                   "old ReplicaSets beyond the history limit to be removed")
    assert [r["metadata"]["annotations"][REVISION] for r in rss] == ["3", "4"]
    _, rows = parse_table(kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
                          .split("\n", 1)[1])
    assert [r["REVISION"] for r in rows] == ["3", "4"]


def test_a_stuck_rollout_exceeds_its_progress_deadline(kubectl, ns):
    create(kubectl, ns, web(replicas=1, progressDeadlineSeconds=2))
    # No kubelet: the pod never becomes ready.
    stuck = wait_for(lambda: deployment(kubectl, ns),
                     lambda d: condition(d, "Progressing").get("reason") == "ProgressDeadlineExceeded",
                     "the progress deadline to be reported")
    cond = condition(stuck, "Progressing")
    assert cond["status"] == "False"
    assert cond["message"].endswith("has timed out progressing.")
    result = kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=30s", check=False,
                     timeout=60)
    assert result.returncode != 0
    assert "exceeded its progress deadline" in result.stderr, result.stderr


def test_deleting_a_deployment_removes_its_replica_sets_and_pods(kubectl, ns, v1):
    create(kubectl, ns, web(replicas=2))
    wait_pods(v1, ns, 2)
    change(kubectl, "set", "image", "deploy/web", "-n", ns, "app=registry.example/web:2")
    wait_until(lambda: len(replica_sets(kubectl, ns)) == 2, "a second ReplicaSet")
    kubectl("delete", "deploy/web", "-n", ns, "--cascade=background")
    wait_until(lambda: not replica_sets(kubectl, ns), "the ReplicaSets to be collected")
    wait_until(lambda: not v1.list_namespaced_pod(ns).items, "the pods to be collected")


# --------------------------------------------------------------------------------------------------
# ReplicaSets on their own


def replica_set(name="front", replicas=2, **spec) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, "tier": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}},
                 **spec},
    }


def owner_name(pod) -> str | None:
    refs = [r for r in (pod.metadata.owner_references or []) if r.controller]
    return refs[0].name if refs else None


def test_replica_set_adopts_scales_replaces_and_releases(kubectl, ns, v1):
    # An orphan with matching labels exists first: it is adopted, not duplicated.
    kubectl("run", "orphan", "-n", ns, "--image=registry.example/c:1", "--restart=Never",
            "--labels=app=front")
    create(kubectl, ns, replica_set(replicas=2))
    pods = wait_for(lambda: live_pods(v1, ns, "app=front"),
                    lambda p: len(p) == 2 and all(owner_name(x) == "front" for x in p),
                    "2 pods owned by the ReplicaSet")
    assert "orphan" in {p.metadata.name for p in pods}
    rs = kubectl.json("get", "rs", "front", "-n", ns)
    # Only the created pod has all template labels.
    wait_until(lambda: kubectl.json("get", "rs", "front", "-n", ns)["status"]
               .get("fullyLabeledReplicas") == 1, "fullyLabeledReplicas 1")
    ref = next(r for r in v1.read_namespaced_pod("orphan", ns).metadata.owner_references)
    assert (ref.uid, ref.controller, ref.block_owner_deletion) == (rs["metadata"]["uid"], True, True)

    change(kubectl, "scale", "rs/front", "-n", ns, "--replicas=4")
    wait_pods(v1, ns, 4, "app=front")
    change(kubectl, "scale", "rs/front", "-n", ns, "--replicas=1")
    wait_pods(v1, ns, 1, "app=front")

    # A deleted pod is replaced.
    victim = live_pods(v1, ns, "app=front")[0].metadata.name
    kubectl("delete", "pod", victim, "-n", ns)
    replaced = wait_for(lambda: live_pods(v1, ns, "app=front"),
                        lambda p: len(p) == 1 and p[0].metadata.name != victim, "a replacement pod")
    assert owner_name(replaced[0]) == "front"

    # A pod relabelled out of the selector is released and replaced.
    kept = replaced[0].metadata.name
    change(kubectl, "label", "pod", kept, "-n", ns, "app=elsewhere", "--overwrite")
    wait_until(lambda: owner_name(v1.read_namespaced_pod(kept, ns)) is None, "the pod to be released")
    wait_until(lambda: len(live_pods(v1, ns, "app=front")) == 1, "a pod replacing the released one")
    assert not v1.read_namespaced_pod(kept, ns).metadata.owner_references


def test_replica_set_scales_down_the_least_valuable_pods_first(kubectl, ns, v1):
    create(kubectl, ns, replica_set(replicas=3))
    pods = wait_pods(v1, ns, 3, "app=front")
    ready = sorted(p.metadata.name for p in pods)[:2]
    for p in pods:
        if p.metadata.name in ready:
            mark_ready(v1, p)
    wait_until(lambda: kubectl.json("get", "rs", "front", "-n", ns)["status"].get("readyReplicas") == 2,
               "2 ready replicas")
    change(kubectl, "scale", "rs/front", "-n", ns, "--replicas=2")
    left = wait_pods(v1, ns, 2, "app=front")
    assert sorted(p.metadata.name for p in left) == ready, "the pod that was not ready goes first"


def test_replica_set_counts_available_pods_after_min_ready_seconds(kubectl, ns, v1, api_client):
    create(kubectl, ns, replica_set(replicas=1, minReadySeconds=3))
    pod = wait_pods(v1, ns, 1, "app=front")[0]
    apps = client.AppsV1Api(api_client)
    since = apps.read_namespaced_replica_set("front", ns).metadata.resource_version
    mark_ready(v1, pod)
    # Every status the ReplicaSet goes through: ready first, available once 3 seconds have
    # passed, which nothing but the controller's own timed recheck can notice. (A watch that
    # ends early is resumed from the last version seen.)
    statuses = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (statuses and statuses[-1][1] == 1):
        left = max(1, int(deadline - time.monotonic()))
        for event in watch.Watch().stream(apps.list_namespaced_replica_set, ns,
                                          resource_version=since, timeout_seconds=left):
            rs = event["object"]
            since = rs.metadata.resource_version
            statuses.append((rs.status.ready_replicas or 0, rs.status.available_replicas or 0))
            if rs.status.available_replicas == 1:
                break
    final = apps.read_namespaced_replica_set("front", ns).status
    assert statuses and statuses[-1] == (1, 1), (statuses, final)
    assert (1, 0) in statuses, f"available before minReadySeconds passed: {statuses}"


def test_template_hash_is_the_same_for_the_same_template(kubectl, ns):
    create(kubectl, ns, web(replicas=0))
    h1 = wait_until(lambda: replica_sets(kubectl, ns), "a ReplicaSet")[0]["metadata"]["labels"][HASH]
    kubectl("delete", "deploy/web", "-n", ns, "--wait=true", "--timeout=30s")
    wait_until(lambda: not replica_sets(kubectl, ns), "the ReplicaSet to be collected")
    create(kubectl, ns, web(replicas=0))
    h2 = wait_until(lambda: replica_sets(kubectl, ns), "a ReplicaSet")[0]["metadata"]["labels"][HASH]
    assert h1 == h2 and h1.isalnum()
    create(kubectl, ns, web(replicas=0, image="registry.example/web:2"))
    hashes = wait_for(lambda: replica_sets(kubectl, ns), lambda r: len(r) == 2, "a second ReplicaSet")
    assert hashes[1]["metadata"]["labels"][HASH] != h1
