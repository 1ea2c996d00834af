"""The scheduler: pending pods are bound to fitting nodes; pods that fit nowhere get the
upstream-style FailedScheduling event; topology spread, RuntimeClasses and preemption work as
upstream. Nodes here are API objects only (no agent runs), each tainted so that only this
module's pods, which tolerate the taint, are placed on them; they offer the `wasm` and
`process` runtimes through the labels a node agent would set."""

import json
import uuid

import pytest

from e2e_util import wait_until

TAINT_KEY = "ledge.dev/e2e-scheduler"
RUNTIMES = {"node.ledge.dev/runtime.wasm": "true", "node.ledge.dev/runtime.process": "true"}


def make_nodes(kubectl, specs):
    """Create fake nodes from (suffix, labels, cpu) triples; returns (tag, names)."""
    tag = uuid.uuid4().hex[:6]
    names = []
    for suffix, labels, cpu in specs:
        name = f"sched-{tag}-{suffix}"
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "e2e": tag, **labels}},
            "spec": {"taints": [{"key": TAINT_KEY, "value": tag, "effect": "NoSchedule"}]},
        }))
        kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps({
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}))
        names.append(name)
    return tag, names


def delete_nodes(kubectl, names):
    for name in names:
        kubectl("delete", "node", name, "--wait=false", check=False)


@pytest.fixture
def nodes(kubectl):
    """Three fake nodes: two small ones labelled zone=a, one large one labelled zone=b."""
    tag, names = make_nodes(kubectl, [("1", {"zone": "a", **RUNTIMES}, "1"), ("2", {"zone": "a", **RUNTIMES}, "1"),
                                      ("3", {"zone": "b", **RUNTIMES}, "8")])
    yield tag, names
    delete_nodes(kubectl, names)


def pod(name, tag, cpu="100m", selector=None, priority_class=None, labels=None, **spec_extra):
    spec = {
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
        "tolerations": [{"key": TAINT_KEY, "operator": "Equal", "value": tag, "effect": "NoSchedule"}],
        "nodeSelector": {"e2e": tag, **(selector or {})},
        **spec_extra,
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                       "spec": spec})


def events(kubectl, ns, name, reason):
    return kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name},reason={reason}",
                   "-o", "jsonpath={.items[*].message}").stdout.strip()


def pod_json(kubectl, ns, name):
    return json.loads(kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)


def node_of(kubectl, ns, name):
    return kubectl("get", "pod", name, "-n", ns, "-o", "jsonpath={.spec.nodeName}").stdout.strip()


def force_delete_pods(kubectl, ns):
    kubectl("delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force", check=False)


def test_pending_pod_is_bound_to_a_fitting_node(kubectl, ns, nodes):
    tag, names = nodes
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("big", tag, cpu="4"))
        assert wait_until(lambda: node_of(kubectl, ns, "big"), "the pod to be bound") == names[2]
        kubectl("create", "-n", ns, "-f", "-", input=pod("zoned", tag, selector={"zone": "a"}))
        assert wait_until(lambda: node_of(kubectl, ns, "zoned"), "the pod to be bound") in names[:2]
        events = kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=big,reason=Scheduled",
                         "-o", "jsonpath={.items[*].message}").stdout
        assert f"Successfully assigned {ns}/big to {names[2]}" in events
    finally:
        force_delete_pods(kubectl, ns)


def test_unschedulable_pod_gets_failed_scheduling_event(kubectl, ns, nodes):
    tag, _ = nodes
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("huge", tag, cpu="2", selector={"zone": "a"}))

        def message():
            out = kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=huge,reason=FailedScheduling",
                          "-o", "jsonpath={.items[*].message}").stdout
            return out.strip()

        msg = wait_until(message, "a FailedScheduling event")
        # Upstream sorts the reasons and, since preemption could not help either, says why.
        assert msg.startswith("0/3 nodes are available: 1 node(s) didn't match Pod's node "
                              "affinity/selector, 2 Insufficient cpu."), msg
        assert node_of(kubectl, ns, "huge") == ""
        cond = json.loads(kubectl("get", "pod", "huge", "-n", ns, "-o", "jsonpath={.status.conditions}").stdout)
        assert {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}.items() <= cond[0].items()
        # Relaxing the selector (a new pod) schedules fine on the large node.
        kubectl("create", "-n", ns, "-f", "-", input=pod("fits", tag, cpu="2"))
        assert wait_until(lambda: node_of(kubectl, ns, "fits"), "the pod to be bound")
    finally:
        force_delete_pods(kubectl, ns)


def test_priority_class_sets_pod_priority(kubectl, ns, nodes):
    tag, _ = nodes
    pc = f"e2e-high-{tag}"
    kubectl("create", "priorityclass", pc, "--value=1000")
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("vip", tag, priority_class=pc))
        assert kubectl("get", "pod", "vip", "-n", ns, "-o", "jsonpath={.spec.priority}").stdout == "1000"
        missing = kubectl("create", "-n", ns, "-f", "-", input=pod("nope", tag, priority_class="does-not-exist"), check=False)
        assert missing.returncode != 0
        assert "no PriorityClass with name does-not-exist was found" in missing.stderr
    finally:
        force_delete_pods(kubectl, ns)
        kubectl("delete", "priorityclass", pc, check=False)


def test_pods_of_a_deleted_node_are_garbage_collected(kubectl, ns, nodes):
    tag, names = nodes
    kubectl("create", "-n", ns, "-f", "-", input=pod("stranded", tag, cpu="4"))
    assert wait_until(lambda: node_of(kubectl, ns, "stranded"), "the pod to be bound") == names[2]
    # A bound pod is deleted gracefully: it waits for its node agent ...
    kubectl("delete", "pod", "stranded", "-n", ns, "--wait=false")
    assert kubectl("get", "pod", "stranded", "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    # ... until the node itself is removed; then nothing can stop it and it is collected.
    kubectl("delete", "node", names[2])
    wait_until(lambda: kubectl("get", "pod", "stranded", "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip() == "",
             "the orphaned pod to be deleted")


# --- topology spread ---------------------------------------------------------------------------

@pytest.fixture
def zones(kubectl):
    """Three fake nodes in zones a, b, c; zone a's node is far larger, so without spreading
    every pod would go there (least allocated)."""
    tag, names = make_nodes(kubectl, [("a", {"zone": "a", **RUNTIMES}, "64"), ("b", {"zone": "b", **RUNTIMES}, "2"),
                                      ("c", {"zone": "c", **RUNTIMES}, "2")])
    yield tag, names
    delete_nodes(kubectl, names)


def test_topology_spread_constraints_spread_pods_over_zones(kubectl, ns, zones):
    tag, names = zones
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "spread"}}}]
    try:
        for i in range(6):
            kubectl("create", "-n", ns, "-f", "-",
                    input=pod(f"s{i}", tag, labels={"app": "spread"}, topologySpreadConstraints=spread))
        placed = [wait_until(lambda i=i: node_of(kubectl, ns, f"s{i}"), "the pod to be bound") for i in range(6)]
        assert sorted(placed.count(n) for n in names) == [2, 2, 2], placed
        # A constraint on a key no node has: every node is rejected, with upstream's reason.
        rack = [{"maxSkew": 1, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"app": "spread"}}}]
        kubectl("create", "-n", ns, "-f", "-",
                input=pod("norack", tag, labels={"app": "spread"}, topologySpreadConstraints=rack))
        msg = wait_until(lambda: events(kubectl, ns, "norack", "FailedScheduling"), "a FailedScheduling event")
        assert "3 node(s) didn't match pod topology spread constraints (missing required label)" in msg, msg
        # ScheduleAnyway only prefers: with zone a holding one more pod, the next pod avoids it.
        soft = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": {"app": "soft"}}}]
        kubectl("create", "-n", ns, "-f", "-",
                input=pod("soft0", tag, labels={"app": "soft"}, selector={"zone": "a"}))
        assert wait_until(lambda: node_of(kubectl, ns, "soft0"), "the pod to be bound") == names[0]
        kubectl("create", "-n", ns, "-f", "-",
                input=pod("soft1", tag, labels={"app": "soft"}, topologySpreadConstraints=soft))
        assert wait_until(lambda: node_of(kubectl, ns, "soft1"), "the pod to be bound") != names[0]
    finally:
        force_delete_pods(kubectl, ns)


# --- runtime classes ---------------------------------------------------------------------------

@pytest.fixture
def runtime_nodes(kubectl):
    """A large node offering only the process runtime, a small one offering only wasm."""
    tag, names = make_nodes(kubectl, [("proc", {"node.ledge.dev/runtime.process": "true"}, "16"),
                                      ("wasm", {"node.ledge.dev/runtime.wasm": "true"}, "1")])
    yield tag, names
    delete_nodes(kubectl, names)


def test_runtime_classes_exist_and_default_to_wasm(kubectl, ns, runtime_nodes):
    tag, (proc_node, wasm_node) = runtime_nodes
    for rc in ("wasm", "process"):
        assert kubectl("get", "runtimeclass", rc, "-o", "jsonpath={.handler}").stdout == rc
    try:
        # No runtimeClassName: admission sets the cluster default, and the pod goes to the
        # only node that offers it, although the other has far more room.
        kubectl("create", "-n", ns, "-f", "-", input=pod("plain", tag))
        assert pod_json(kubectl, ns, "plain")["spec"]["runtimeClassName"] == "wasm"
        assert wait_until(lambda: node_of(kubectl, ns, "plain"), "the pod to be bound") == wasm_node
        kubectl("create", "-n", ns, "-f", "-", input=pod("proc", tag, runtimeClassName="process"))
        assert wait_until(lambda: node_of(kubectl, ns, "proc"), "the pod to be bound") == proc_node
        # Pinned to the node without the runtime: unschedulable, with the runtime as reason.
        kubectl("create", "-n", ns, "-f", "-",
                input=pod("pinned", tag, selector={"kubernetes.io/hostname": proc_node}))
        msg = wait_until(lambda: events(kubectl, ns, "pinned", "FailedScheduling"), "a FailedScheduling event")
        assert "1 node(s) didn't support runtime class \"wasm\"" in msg, msg
        assert "Preemption is not helpful for scheduling" in msg, msg
        assert node_of(kubectl, ns, "pinned") == ""
    finally:
        force_delete_pods(kubectl, ns)


def test_unknown_runtime_class_is_rejected_at_admission(kubectl, ns):
    out = kubectl("create", "-n", ns, "-f", "-", input=pod("nope", "x", runtimeClassName="does-not-exist"),
                  check=False)
    assert out.returncode != 0
    assert 'pod rejected: RuntimeClass "does-not-exist" not found' in out.stderr, out.stderr


def test_runtime_class_overhead_and_scheduling_are_merged(kubectl, ns, runtime_nodes):
    tag, (proc_node, _) = runtime_nodes
    rc = f"e2e-edge-{tag}"
    kubectl("create", "-f", "-", input=json.dumps({
        "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": rc}, "handler": "process",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
        "scheduling": {"nodeSelector": {"kubernetes.io/hostname": proc_node},
                       "tolerations": [{"key": "ledge.dev/edge", "operator": "Exists"}]}}))
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("edge", tag, runtimeClassName=rc))
        spec = pod_json(kubectl, ns, "edge")["spec"]
        assert spec["overhead"] == {"cpu": "250m", "memory": "64Mi"}
        assert spec["nodeSelector"]["kubernetes.io/hostname"] == proc_node
        assert {"key": "ledge.dev/edge", "operator": "Exists"} in spec["tolerations"]
        assert wait_until(lambda: node_of(kubectl, ns, "edge"), "the pod to be bound") == proc_node
        # A conflicting node selector is refused, as upstream.
        out = kubectl("create", "-n", ns, "-f", "-", check=False,
                      input=pod("clash", tag, runtimeClassName=rc, selector={"kubernetes.io/hostname": "other"}))
        assert out.returncode != 0 and "conflict: runtimeClass.scheduling.nodeSelector" in out.stderr, out.stderr
    finally:
        force_delete_pods(kubectl, ns)
        kubectl("delete", "runtimeclass", rc, check=False)


# --- preemption --------------------------------------------------------------------------------

@pytest.fixture
def one_node(kubectl):
    tag, names = make_nodes(kubectl, [("only", RUNTIMES, "1")])
    yield tag, names[0]
    delete_nodes(kubectl, names)


@pytest.fixture
def priorities(kubectl):
    tag = uuid.uuid4().hex[:6]
    classes = {"low": (f"e2e-low-{tag}", 10, "PreemptLowerPriority"),
               "high": (f"e2e-high-{tag}", 1000, "PreemptLowerPriority"),
               "never": (f"e2e-never-{tag}", 1000, "Never")}
    for name, value, policy in classes.values():
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, "preemptionPolicy": policy}))
    yield {k: v[0] for k, v in classes.items()}
    for name, _, _ in classes.values():
        kubectl("delete", "priorityclass", name, check=False)


def test_high_priority_pod_preempts_a_low_priority_one(kubectl, ns, one_node, priorities):
    tag, node = one_node
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("low", tag, cpu="800m", priority_class=priorities["low"]))
        assert wait_until(lambda: node_of(kubectl, ns, "low"), "the low-priority pod to be bound") == node

        # preemptionPolicy: Never waits instead of evicting.
        kubectl("create", "-n", ns, "-f", "-", input=pod("polite", tag, cpu="800m", priority_class=priorities["never"]))
        msg = wait_until(lambda: events(kubectl, ns, "polite", "FailedScheduling"), "a FailedScheduling event")
        assert "1 Insufficient cpu" in msg and "preemption: not eligible due to preemptionPolicy=Never." in msg, msg
        assert "deletionTimestamp" not in pod_json(kubectl, ns, "low")["metadata"]
        kubectl("delete", "pod", "polite", "-n", ns, "--grace-period=0", "--force")

        kubectl("create", "-n", ns, "-f", "-", input=pod("high", tag, cpu="800m", priority_class=priorities["high"]))
        high = wait_until(lambda: (p := pod_json(kubectl, ns, "high"))["status"].get("nominatedNodeName") and p,
                          "the preemptor to be nominated")
        assert high["status"]["nominatedNodeName"] == node
        assert high["spec"].get("nodeName", "") == ""

        # The victim is marked, told, and deleted gracefully: with no kubelet it stays terminating.
        victim = wait_until(lambda: (p := pod_json(kubectl, ns, "low"))["metadata"].get("deletionTimestamp") and p,
                            "the victim to be terminating")
        target = [c for c in victim["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert target and target[0]["status"] == "True" and target[0]["reason"] == "PreemptionByScheduler", target
        preempted = wait_until(lambda: events(kubectl, ns, "low", "Preempted"), "a Preempted event")
        assert preempted == f"Preempted by pod {high['metadata']['uid']} on node {node}"
        assert node_of(kubectl, ns, "high") == ""

        # The fake kubelet finishes the deletion; the preemptor lands on its nominated node.
        kubectl("delete", "pod", "low", "-n", ns, "--grace-period=0", "--force")
        assert wait_until(lambda: node_of(kubectl, ns, "high"), "the preemptor to be bound") == node
    finally:
        force_delete_pods(kubectl, ns)


def test_lower_priority_pod_cannot_preempt(kubectl, ns, one_node, priorities):
    tag, node = one_node
    try:
        kubectl("create", "-n", ns, "-f", "-", input=pod("big", tag, cpu="800m", priority_class=priorities["high"]))
        assert wait_until(lambda: node_of(kubectl, ns, "big"), "the pod to be bound") == node
        kubectl("create", "-n", ns, "-f", "-", input=pod("small", tag, cpu="800m", priority_class=priorities["low"]))
        msg = wait_until(lambda: events(kubectl, ns, "small", "FailedScheduling"), "a FailedScheduling event")
        assert "1 Insufficient cpu" in msg and "preemption: " in msg and "1 No preemption victims found for incoming pod" in msg, msg
        assert "deletionTimestamp" not in pod_json(kubectl, ns, "big")["metadata"]
    finally:
        force_delete_pods(kubectl, ns)


def test_disabled_scheduler_leaves_pods_pending_until_a_server_schedules(ledge_bin, kubectl_path, tmp_path):
    """`--disable-scheduler` (K3s' flag) runs no scheduler: a pod that fits stays Pending with
    no event; the same data dir served without the flag binds it."""
    import time

    from conftest import Kubectl, start_server

    srv = start_server(ledge_bin, kubectl_path, tmp_path / "off", "--disable-scheduler")
    try:
        kubectl = Kubectl(kubectl_path, srv.kubeconfig, tmp_path / "home")
        kubectl("create", "namespace", "held")
        tag, _ = make_nodes(kubectl, [("1", RUNTIMES, "2")])
        kubectl("create", "-n", "held", "-f", "-", input=pod("waits", tag))
        # Long enough for a running scheduler to have bound it many times over.
        time.sleep(3)
        assert node_of(kubectl, "held", "waits") == ""
        assert events(kubectl, "held", "waits", "Scheduled") == ""
        assert events(kubectl, "held", "waits", "FailedScheduling") == ""
    finally:
        srv.stop()
    srv = start_server(ledge_bin, kubectl_path, tmp_path / "on", data_dir=srv.data_dir)
    try:
        kubectl = Kubectl(kubectl_path, srv.kubeconfig, tmp_path / "home")
        wait_until(lambda: node_of(kubectl, "held", "waits") == f"sched-{tag}-1", timeout=30,
                   what="the pod bound once the scheduler runs")
        assert "Successfully assigned held/waits" in events(kubectl, "held", "waits", "Scheduled")
    finally:
        srv.stop()


def test_binding_subresource_assigns_once(kubectl, ns, nodes):
    """A scheduler of the user's own binds through `pods/binding` as upstream: the pod gets
    the node and `PodScheduled=True`; a second binding is refused with 409."""
    tag, names = nodes
    kubectl("create", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mine"},
        "spec": {"schedulerName": "my-scheduler", "containers": [{"name": "c", "image": "busybox"}]}}))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "mine"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": names[2]}}
    path = f"/api/v1/namespaces/{ns}/pods/mine/binding"
    kubectl("create", "--raw", path, "-f", "-", input=json.dumps(binding))
    p = pod_json(kubectl, ns, "mine")
    assert p["spec"]["nodeName"] == names[2]
    scheduled = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert [c["status"] for c in scheduled] == ["True"]
    again = kubectl("create", "--raw", path, "-f", "-", input=json.dumps(binding), check=False)
    assert again.returncode != 0
    assert f'already assigned to node "{names[2]}"' in again.stderr
