"""The scheduler: pending pods are bound to fitting nodes; pods that fit nowhere get the
upstream-style FailedScheduling event. Nodes here are API objects only (no agent runs), each
tainted so that only this module's pods, which tolerate the taint, are placed on them."""

import json
import uuid

import pytest

from e2e_util import wait_until

TAINT_KEY = "ledge.dev/e2e-scheduler"


@pytest.fixture
def nodes(kubectl):
    """Three fake nodes: two small ones labelled zone=a, one large one labelled zone=b."""
    tag = uuid.uuid4().hex[:6]
    names = []
    for name, zone, cpu in [(f"sched-{tag}-1", "a", "1"), (f"sched-{tag}-2", "a", "1"), (f"sched-{tag}-3", "b", "8")]:
        kubectl("create", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": zone, "kubernetes.io/hostname": name, "e2e": tag}},
            "spec": {"taints": [{"key": TAINT_KEY, "value": tag, "effect": "NoSchedule"}]},
        }))
        kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps({
            "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
                       "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"}}}))
        names.append(name)
    yield tag, names
    for name in names:
        kubectl("delete", "node", name, "--wait=false", check=False)


def pod(name, tag, cpu="100m", selector=None, priority_class=None):
    spec = {
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
        "tolerations": [{"key": TAINT_KEY, "operator": "Equal", "value": tag, "effect": "NoSchedule"}],
        "nodeSelector": {"e2e": tag, **(selector or {})},
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


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
        assert msg == "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu." \
            or msg.startswith("0/"), msg
        assert "2 Insufficient cpu" in msg, msg
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
