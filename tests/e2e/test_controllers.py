"""The cluster controllers beyond Deployments: EndpointSlices and Endpoints, node lifecycle
(Lease heartbeats, the unreachable taints and ledge's edge eviction rule), DaemonSets, Jobs and
CronJobs — driven by real kubectl and the Python client.

No node agent runs: nodes are API objects (as in test_scheduler.py) and a fake kubelet reports
pod status through the status subresource (as in test_workloads.py). The node lifecycle test
runs its own server with a short `--node-monitor-grace-period`. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import conftest
import e2e_util
from e2e_util import manifest, unique_name, wait_until

UNREACHABLE = "node.kubernetes.io/unreachable"
ROLLOUT_TIMEOUT = "90s"
# The runtimes a ledge agent's Node advertises (the scheduler's RuntimeClass filter reads them).
RUNTIMES = {"node.ledge.dev/runtime.wasm": "true", "node.ledge.dev/runtime.process": "true"}
# Longest a fake kubelet thread runs, so a stuck test cannot keep it alive.
KUBELET_MAX_SECONDS = 150


# --------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def v1(api_client) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def retry_conflicts(write, attempts: int = 20):
    """A status write racing the controllers' own writes (409) or a deleted object (404)."""
    for attempt in range(attempts):
        try:
            return write()
        except ApiException as err:
            if err.status == 404:
                return None
            if err.status != 409 or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def report_pod(v1, pod, phase="Running", ready=True, ip="10.99.0.1"):
    """What a kubelet reports for a pod: phase, IP and readiness."""
    t = now()
    status = "True" if ready else "False"
    body = {"status": {
        "phase": phase, "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": ip,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": t},
            {"type": "Ready", "status": status, "lastTransitionTime": t},
        ],
    }}
    name, ns = pod.metadata.name, pod.metadata.namespace
    retry_conflicts(lambda: v1.patch_namespaced_pod_status(name, ns, body))


def is_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class FakeKubelet(e2e_util.BackgroundPoller):
    """Reports every live pod of a namespace (matching `selector`) as `phase` (Running and
    Ready by default, or e.g. Succeeded/Failed), in a background thread, until stopped. Like a
    kubelet, it also confirms the deletion of terminating pods bound to a node."""

    def __init__(self, v1, ns, selector=None, phase="Running", interval=0.2):
        super().__init__(interval, KUBELET_MAX_SECONDS)
        self.v1, self.ns, self.selector, self.phase = v1, ns, selector, phase

    def once(self):
        for pod in self.v1.list_namespaced_pod(self.ns, label_selector=self.selector).items:
            if pod.metadata.deletion_timestamp is not None:
                if pod.spec.node_name and not pod.metadata.finalizers:
                    retry_conflicts(lambda: self.v1.delete_namespaced_pod(
                        pod.metadata.name, self.ns, grace_period_seconds=0))
                continue
            if self.phase == "Running" and pod.status.phase == "Running" and is_ready(pod):
                continue
            if self.phase != "Running" and pod.status.phase == self.phase:
                continue
            report_pod(self.v1, pod, phase=self.phase, ready=self.phase == "Running")



def create(kubectl, ns, *docs):
    kubectl("create", "-n", ns, "-f", "-", input=manifest(*docs))


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) or [] if c["type"] == type_), {})


def fake_node(kubectl, name, labels=None, taints=None, ready=True):
    """A Node API object with capacity, the runtimes an agent offers and (optionally) a Ready
    condition, as an agent registers."""
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **RUNTIMES,
                                               **(labels or {})}},
        "spec": {"taints": taints or []},
    }))
    status = {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
              "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
    if ready:
        t = now()
        status["conditions"] = [
            {"type": t_, "status": s, "reason": r, "message": "", "lastHeartbeatTime": t,
             "lastTransitionTime": t}
            for t_, s, r in [("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                             ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                             ("PIDPressure", "False", "KubeletHasSufficientPID"),
                             ("Ready", "True", "KubeletReady")]]
    kubectl("patch", "node", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}))


# --------------------------------------------------------------------------------------------------
# EndpointSlices and Endpoints


def web_pod(name, ready_label="web"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": ready_label}},
            "spec": {"containers": [{"name": "c", "image": "registry.example/web:1",
                                     "ports": [{"name": "http", "containerPort": 8080}]}]}}


def slices_of(kubectl, ns, service):
    return kubectl.json("get", "endpointslices", "-n", ns,
                        "-l", f"kubernetes.io/service-name={service}")["items"]


def endpoint_names(slices, ready=None):
    return sorted(e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []
                  if ready is None or e["conditions"]["ready"] == ready)


def test_endpoint_slices_and_endpoints_follow_ready_pods(kubectl, ns, v1):
    create(kubectl, ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }, web_pod("web-a"), web_pod("web-b"), web_pod("other", ready_label="db"))
    # Both pods share one IP, as host-network pods on one edge node do.
    report_pod(v1, v1.read_namespaced_pod("web-a", ns), ready=True, ip="10.99.0.7")
    report_pod(v1, v1.read_namespaced_pod("web-b", ns), ready=False, ip="10.99.0.7")
    report_pod(v1, v1.read_namespaced_pod("other", ns), ready=True, ip="10.99.0.8")

    def both_listed():
        s = slices_of(kubectl, ns, "web")
        return s if endpoint_names(s) == ["web-a", "web-b"] else None

    [slice_] = wait_until(both_listed, "an EndpointSlice listing both pods")
    labels = slice_["metadata"]["labels"]
    assert labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_["addressType"] == "IPv4"
    assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    by_pod = {e["targetRef"]["name"]: e for e in slice_["endpoints"]}
    assert by_pod["web-a"]["addresses"] == by_pod["web-b"]["addresses"] == ["10.99.0.7"]
    assert by_pod["web-a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_pod["web-b"]["conditions"]["ready"] is False
    owner = slice_["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)

    ep = wait_until(lambda: kubectl.json("get", "endpoints", "web", "-n", ns), "Endpoints web")
    [subset] = ep["subsets"]
    assert [a["targetRef"]["name"] for a in subset["addresses"]] == ["web-a"]
    assert [a["targetRef"]["name"] for a in subset["notReadyAddresses"]] == ["web-b"]
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

    # Unchanged pods cause no writes: the slice is not rewritten over and over.
    rv = slice_["metadata"]["resourceVersion"]
    time.sleep(2)
    assert slices_of(kubectl, ns, "web")[0]["metadata"]["resourceVersion"] == rv

    report_pod(v1, v1.read_namespaced_pod("web-b", ns), ready=True, ip="10.99.0.7")
    wait_until(lambda: endpoint_names(slices_of(kubectl, ns, "web"), ready=True) == ["web-a", "web-b"],
               "both endpoints ready")
    wait_until(lambda: len(kubectl.json("get", "endpoints", "web", "-n", ns)["subsets"][0]
                           .get("addresses", [])) == 2, "both addresses ready in Endpoints")

    # A pod whose labels stop matching leaves; a deleted pod leaves.
    kubectl("label", "pod", "web-a", "-n", ns, "app=gone", "--overwrite")
    wait_until(lambda: endpoint_names(slices_of(kubectl, ns, "web")) == ["web-b"], "web-a to leave")
    kubectl("delete", "pod", "web-b", "-n", ns, "--grace-period=0", "--force")
    wait_until(lambda: endpoint_names(slices_of(kubectl, ns, "web")) == [], "web-b to leave")
    wait_until(lambda: not kubectl.json("get", "endpoints", "web", "-n", ns).get("subsets"),
               "the Endpoints to be empty")

    # A Service without a selector is left alone.
    create(kubectl, ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
                         "spec": {"ports": [{"port": 80}]}})
    time.sleep(1)
    assert slices_of(kubectl, ns, "manual") == []
    kubectl("delete", "service", "web", "-n", ns)
    wait_until(lambda: kubectl("get", "endpoints", "web", "-n", ns, "--ignore-not-found",
                               "-o", "name").stdout.strip() == "", "the Endpoints to be deleted")


# --------------------------------------------------------------------------------------------------
# node lifecycle: its own server, with a short grace period


GRACE_SECONDS = 3


@pytest.fixture
def lifecycle_cluster(ledge_bin, kubectl_path, tmp_path):
    """A second `ledge server` with `--node-monitor-grace-period 3s`, and kubectl for it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    log_path = tmp_path / "server.log"
    port = conftest._free_port()
    cmd = [str(ledge_bin), "server", "--data-dir", str(data_dir), "--https-listen-port", str(port),
           "--bind-address", "127.0.0.1", "--node-monitor-grace-period", f"{GRACE_SECONDS}s"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "RUST_BACKTRACE": "1"})
    try:
        srv = conftest._wait_ready(process, data_dir / "admin.kubeconfig", data_dir, log_path, port,
                                   kubectl_path)
        home = tmp_path / "home"
        home.mkdir()
        yield srv, conftest.Kubectl(kubectl_path, srv.kubeconfig, home)
    finally:
        conftest._stop(process)


def lease(name):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}}


class LeaseRenewer:
    """Renews a node's Lease every 0.3 s, as the agent's heartbeat does, while running."""

    def __init__(self, kubectl, node):
        self.kubectl, self.node = kubectl, node
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            if self.running.is_set():
                self.kubectl("patch", "lease", self.node, "-n", "kube-node-lease", "--type=merge",
                             "-p", json.dumps({"spec": {"renewTime": micro_now()}}), check=False)
            self.stopped.wait(0.3)

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=10)


def bound_pod(name, node, tolerations=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": {"nodeName": node, "tolerations": tolerations or [],
                     "containers": [{"name": "c", "image": "registry.example/app:1"}]}}


def test_node_without_lease_renewals_turns_unknown_and_only_timed_pods_are_evicted(lifecycle_cluster):
    srv, kubectl = lifecycle_cluster
    node, manual = "edge-1", "manual-1"
    fake_node(kubectl, node)
    fake_node(kubectl, manual)  # no Lease: managed by hand, must be left alone
    kubectl("create", "-f", "-", input=json.dumps(lease(node)))
    renewer = LeaseRenewer(kubectl, node)
    renewer.running.set()
    try:
        kubectl("create", "-f", "-", input=manifest(
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain", "namespace": "default"},
             "spec": {"selector": {"app": "plain"}, "ports": [{"port": 80}]}},
            bound_pod("plain", node),
            bound_pod("timed", node, [{"key": UNREACHABLE, "operator": "Exists",
                                       "effect": "NoExecute", "tolerationSeconds": 2}]),
            bound_pod("forever", node, [{"key": UNREACHABLE, "operator": "Exists",
                                         "effect": "NoExecute"}])))
        from kubernetes import config as kconfig
        api = kconfig.new_client_from_config(config_file=str(srv.kubeconfig), persist_config=False)
        core = client.CoreV1Api(api)
        for name in ["plain", "timed", "forever"]:
            report_pod(core, core.read_namespaced_pod(name, "default"))

        # Renewed for longer than the grace period: still Ready, untainted.
        time.sleep(GRACE_SECONDS * 2)
        n = kubectl.json("get", "node", node)
        assert condition(n, "Ready")["status"] == "True"
        assert not n["spec"].get("taints")

        renewer.running.clear()

        def unknown():
            n = kubectl.json("get", "node", node)
            return n if condition(n, "Ready")["status"] == "Unknown" and n["spec"].get("taints") else None

        n = wait_until(unknown, "the node to turn Unknown and be tainted")
        ready = condition(n, "Ready")
        assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown",
                                                        "Kubelet stopped posting node status.")
        assert condition(n, "MemoryPressure")["status"] == "Unknown"
        taints = {(t["key"], t["effect"]): t for t in n["spec"]["taints"]}
        assert set(taints) == {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")}
        assert taints[(UNREACHABLE, "NoExecute")].get("timeAdded")

        def deleted_or_terminating(name):
            p = kubectl.json("get", "pod", name, "-n", "default") if kubectl(
                "get", "pod", name, "-n", "default", "--ignore-not-found", "-o", "name").stdout.strip() else None
            return p is None or bool(p["metadata"].get("deletionTimestamp"))

        wait_until(lambda: deleted_or_terminating("timed"), "the pod with tolerationSeconds: 2 to be evicted")
        def endpoint_ready():
            slices = kubectl.json("get", "endpointslices", "-n", "default",
                                  "-l", "kubernetes.io/service-name=plain")["items"]
            eps = [e for s in slices for e in (s.get("endpoints") or [])]
            return eps[0]["conditions"]["ready"] if eps else None

        # The Service stops counting the pod, but the pod's own status is left alone (ledge does
        # not write every pod of a lost node, upstream's MarkPodsNotReady).
        wait_until(lambda: endpoint_ready() is False, "the plain pod's endpoint to turn not ready")
        plain = kubectl.json("get", "pod", "plain", "-n", "default")
        assert condition(plain, "Ready")["status"] == "True"
        # Well past the timed pod's eviction: the edge rule keeps the others.
        time.sleep(3)
        for name in ["plain", "forever"]:
            p = kubectl.json("get", "pod", name, "-n", "default")
            assert not p["metadata"].get("deletionTimestamp"), f"{name} must not be evicted"
        assert not plain["metadata"].get("deletionTimestamp")
        events = kubectl("get", "events", "-n", "default", "--field-selector",
                         "reason=TaintManagerEviction", "-o", "jsonpath={.items[*].involvedObject.name}").stdout
        assert events.split() == ["timed"]

        # The node is back: the lease renews and the agent reports Ready again.
        kubectl("patch", "lease", node, "-n", "kube-node-lease", "--type=merge",
                "-p", json.dumps({"spec": {"renewTime": micro_now()}}))
        renewer.running.set()
        t = now()
        kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p", json.dumps({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "",
                            "lastHeartbeatTime": t, "lastTransitionTime": t}]}}))
        wait_until(lambda: not kubectl.json("get", "node", node)["spec"].get("taints"),
                   "the unreachable taints to be removed")
        wait_until(lambda: endpoint_ready() is True, "the plain pod's endpoint to be ready again")

        m = kubectl.json("get", "node", manual)
        assert condition(m, "Ready")["status"] == "True", "a node without a Lease is left alone"
        assert not m["spec"].get("taints")
        api.close()
    finally:
        renewer.close()


# --------------------------------------------------------------------------------------------------
# DaemonSets


@pytest.fixture
def ds_nodes(kubectl):
    """Four fake nodes tainted for this test only: two eligible, one with a taint the DaemonSet
    does not tolerate, one without the DaemonSet's node label."""
    tag = uuid.uuid4().hex[:6]
    own = {"key": "ledge.dev/e2e-ds", "value": tag, "effect": "NoSchedule"}
    names = [f"ds-{tag}-{i}" for i in range(1, 5)]
    fake_node(kubectl, names[0], {"e2e-ds": tag}, [own])
    fake_node(kubectl, names[1], {"e2e-ds": tag}, [own])
    fake_node(kubectl, names[2], {"e2e-ds": tag}, [own, {"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    fake_node(kubectl, names[3], {"other": tag}, [own])
    yield tag, names
    for name in names:
        kubectl("delete", "node", name, "--wait=false", check=False)


def daemon_set(tag, image="registry.example/agent:1"):
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"nodeSelector": {"e2e-ds": tag},
                         "tolerations": [{"key": "ledge.dev/e2e-ds", "operator": "Exists"}],
                         "containers": [{"name": "agent", "image": image}]},
            },
        },
    }


def test_daemon_set_runs_one_pod_per_eligible_node_and_rolls_out(kubectl, ns, v1, ds_nodes):
    tag, names = ds_nodes
    create(kubectl, ns, daemon_set(tag))

    def bound():
        pods = [p for p in v1.list_namespaced_pod(ns, label_selector="app=agent").items
                if p.metadata.deletion_timestamp is None]
        nodes = sorted(p.spec.node_name or "" for p in pods)
        return pods if nodes == names[:2] else None

    pods = wait_until(bound, "one daemon pod bound to each eligible node")
    for p in pods:
        terms = p.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        assert terms[0].match_fields[0].key == "metadata.name"
        assert terms[0].match_fields[0].values == [p.spec.node_name]
        keys = {(t.key, t.effect) for t in p.spec.tolerations}
        assert (UNREACHABLE, "NoExecute") in keys and ("node.kubernetes.io/unschedulable", "NoSchedule") in keys
        assert p.metadata.labels.get("controller-revision-hash")

    with FakeKubelet(v1, ns, selector="app=agent"):
        out = kubectl("rollout", "status", "ds/agent", "-n", ns, f"--timeout={ROLLOUT_TIMEOUT}",
                      timeout=120).stdout
        assert 'daemon set "agent" successfully rolled out' in out, out
        ds = kubectl.json("get", "ds", "agent", "-n", ns)
        st = ds["status"]
        assert (st["desiredNumberScheduled"], st["currentNumberScheduled"], st["numberReady"],
                st["numberAvailable"], st["updatedNumberScheduled"], st["numberMisscheduled"]) == (2, 2, 2, 2, 2, 0)
        assert st["observedGeneration"] == ds["metadata"]["generation"]
        old_hash = pods[0].metadata.labels["controller-revision-hash"]

        kubectl("set", "image", "ds/agent", "-n", ns, "agent=registry.example/agent:2")
        out = kubectl("rollout", "status", "ds/agent", "-n", ns, f"--timeout={ROLLOUT_TIMEOUT}",
                      timeout=120).stdout
        assert 'daemon set "agent" successfully rolled out' in out, out

    new = wait_until(bound, "the updated pods")
    assert {p.spec.containers[0].image for p in new} == {"registry.example/agent:2"}
    assert {p.metadata.labels["controller-revision-hash"] for p in new} != {old_hash}
    revisions = kubectl.json("get", "controllerrevisions", "-n", ns)["items"]
    assert sorted(r["revision"] for r in revisions) == [1, 2]
    history = kubectl("rollout", "history", "ds/agent", "-n", ns).stdout.splitlines()
    assert history[0].strip() == "daemonset.apps/agent", history
    assert history[1].split() == ["REVISION", "CHANGE-CAUSE"], history
    assert [line.split() for line in history[2:] if line.strip()] == \
        [["1", "<none>"], ["2", "<none>"]], history


# --------------------------------------------------------------------------------------------------
# Jobs


def job(name, completions=None, parallelism=None, **spec):
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "registry.example/job:1"}]}},
                     **spec}}
    if completions is not None:
        body["spec"]["completions"] = completions
    if parallelism is not None:
        body["spec"]["parallelism"] = parallelism
    return body


def get_job(kubectl, ns, name):
    return kubectl.json("get", "job", name, "-n", ns)


def test_job_runs_pods_to_completions_with_exact_counts(kubectl, ns, v1):
    create(kubectl, ns, job("work", completions=3, parallelism=2))
    j = get_job(kubectl, ns, "work")
    uid = j["metadata"]["uid"]
    assert j["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": uid}

    def two_active():
        pods = v1.list_namespaced_pod(ns, label_selector="job-name=work").items
        return pods if len(pods) == 2 else None

    pods = wait_until(two_active, "parallelism=2 pods")
    for p in pods:
        assert p.metadata.labels["batch.kubernetes.io/controller-uid"] == uid
        assert p.metadata.labels["controller-uid"] == uid
        assert p.metadata.labels["batch.kubernetes.io/job-name"] == "work"
        assert "batch.kubernetes.io/job-tracking" in p.metadata.finalizers
    time.sleep(1)
    assert len(v1.list_namespaced_pod(ns, label_selector="job-name=work").items) == 2

    with FakeKubelet(v1, ns, selector="job-name=work", phase="Succeeded"):
        kubectl("wait", "--for=condition=complete", "job/work", "-n", ns, "--timeout=60s", timeout=90)
    j = get_job(kubectl, ns, "work")
    st = j["status"]
    assert (st.get("succeeded"), st.get("failed", 0), st.get("active", 0)) == (3, 0, 0)
    assert st["startTime"] and st["completionTime"]
    assert condition(j, "Complete")["status"] == "True"
    pods = v1.list_namespaced_pod(ns, label_selector="job-name=work").items
    assert len(pods) == 3
    wait_until(lambda: all(not p.metadata.finalizers for p in
                           v1.list_namespaced_pod(ns, label_selector="job-name=work").items),
               "the tracking finalizers to be removed")
    out = kubectl("get", "job", "work", "-n", ns).stdout
    assert "3/3" in out and "Complete" in out, out


def test_job_fails_past_its_backoff_limit(kubectl, ns, v1):
    create(kubectl, ns, job("flaky", backoffLimit=1))
    with FakeKubelet(v1, ns, selector="job-name=flaky", phase="Failed"):
        kubectl("wait", "--for=condition=failed", "job/flaky", "-n", ns, "--timeout=60s", timeout=90)
    j = get_job(kubectl, ns, "flaky")
    failed = condition(j, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "BackoffLimitExceeded")
    assert j["status"]["failed"] == 2
    assert not condition(j, "Complete")


def test_finished_job_is_deleted_after_its_ttl(kubectl, ns, v1):
    create(kubectl, ns, job("brief", ttlSecondsAfterFinished=2))
    with FakeKubelet(v1, ns, selector="job-name=brief", phase="Succeeded"):
        kubectl("wait", "--for=condition=complete", "job/brief", "-n", ns, "--timeout=60s", timeout=90)
    wait_until(lambda: kubectl("get", "job", "brief", "-n", ns, "--ignore-not-found", "-o", "name")
               .stdout.strip() == "", "the job to be deleted after its TTL")
    wait_until(lambda: not v1.list_namespaced_pod(ns, label_selector="job-name=brief").items,
               "its pods to be collected")


def test_indexed_job_runs_each_index_once(kubectl, ns, v1):
    create(kubectl, ns, job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    pods = wait_until(lambda: (lambda ps: ps if len(ps) == 3 else None)(
        v1.list_namespaced_pod(ns, label_selector="job-name=idx").items), "three indexed pods")
    indexes = sorted(p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1", "2"]
    assert sorted(p.metadata.labels["batch.kubernetes.io/job-completion-index"] for p in pods) == indexes
    with FakeKubelet(v1, ns, selector="job-name=idx", phase="Succeeded"):
        kubectl("wait", "--for=condition=complete", "job/idx", "-n", ns, "--timeout=60s", timeout=90)
    st = get_job(kubectl, ns, "idx")["status"]
    assert (st["succeeded"], st["completedIndexes"]) == (3, "0-2")


# --------------------------------------------------------------------------------------------------
# CronJobs (the schedule itself is unit-tested: a real minute boundary is too slow here)


def cron_job(name, schedule="0 0 1 1 *", **spec):
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, **spec, "jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"cron": name}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "registry.example/job:1"}]}}}}}}


def events_of(kubectl, ns, name, reason):
    return kubectl("get", "events", "-n", ns, "--field-selector",
                   f"involvedObject.name={name},reason={reason}",
                   "-o", "jsonpath={.items[*].message}").stdout


def test_cron_job_is_accepted_suspended_and_runs_jobs_created_from_it(kubectl, ns, v1):
    create(kubectl, ns, cron_job("nightly"))
    cj = kubectl.json("get", "cronjob", "nightly", "-n", ns)
    assert (cj["spec"]["concurrencyPolicy"], cj["spec"]["suspend"]) == ("Allow", False)
    # A yearly schedule does not fire now: no Job, no lastScheduleTime.
    time.sleep(1)
    assert kubectl.json("get", "jobs", "-n", ns)["items"] == []

    kubectl("create", "job", "manual", "--from=cronjob/nightly", "-n", ns)
    j = get_job(kubectl, ns, "manual")
    owner = j["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "nightly", cj["metadata"]["uid"])
    with FakeKubelet(v1, ns, selector="cron=nightly", phase="Succeeded"):
        kubectl("wait", "--for=condition=complete", "job/manual", "-n", ns, "--timeout=60s", timeout=90)
    wait_until(lambda: kubectl.json("get", "cronjob", "nightly", "-n", ns)["status"].get("lastSuccessfulTime"),
               "lastSuccessfulTime from the completed Job")
    assert "manual" in events_of(kubectl, ns, "nightly", "UnexpectedJob")

    kubectl("patch", "cronjob", "nightly", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    out = kubectl("get", "cronjob", "nightly", "-n", ns).stdout
    assert "True" in out, out


def test_cron_job_time_zones_are_checked_and_followed(kubectl, ns):
    for zone, why in [("Mars/Olympus", "unknown time zone Mars/Olympus"),
                      ("Local", "timeZone must be an explicit time zone"),
                      ("", "timeZone must be nil or non-empty string")]:
        out = kubectl("create", "-n", ns, "-f", "-", check=False,
                      input=manifest(cron_job("bad-zone", timeZone=zone)))
        assert out.returncode != 0 and "spec.timeZone: Invalid value" in out.stderr \
            and why in out.stderr, out.stderr
    out = kubectl("create", "-n", ns, "-f", "-", check=False,
                  input=manifest(cron_job("tz-prefix", schedule="CRON_TZ=UTC 0 0 * * *")))
    assert out.returncode != 0 and "use timeZone field instead" in out.stderr, out.stderr

    # India is 5:30 ahead of UTC, so its hour is never UTC's: a schedule for every minute of
    # the hour Kolkata's clock shows in 90 s fires soon only if it is read in Kolkata's zone.
    from zoneinfo import ZoneInfo
    soon = datetime.now(ZoneInfo("Asia/Kolkata")).timestamp() + 90
    hour = datetime.fromtimestamp(soon, ZoneInfo("Asia/Kolkata")).hour
    create(kubectl, ns, cron_job("zoned", schedule=f"* {hour} * * *", timeZone="Asia/Kolkata"))
    rows = kubectl("get", "cronjob", "zoned", "-n", ns).stdout.splitlines()
    assert rows[0].split()[:3] == ["NAME", "SCHEDULE", "TIMEZONE"], rows
    assert rows[1].split()[1:4] == ["*", str(hour), "*"] and "Asia/Kolkata" in rows[1], rows
    jobs = wait_until(lambda: kubectl.json("get", "jobs", "-n", ns, "-l", "cron=zoned")["items"]
                      or kubectl.json("get", "jobs", "-n", ns)["items"],
                      "a Job of the zoned CronJob", timeout=180)
    assert all(j["metadata"]["name"].startswith("zoned-") for j in jobs), jobs
    assert events_of(kubectl, ns, "zoned", "UnknownTimeZone") == ""
