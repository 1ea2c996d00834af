"""A fleet: one `ledge server` and three `ledge agent` processes joined with a token, each a Node
with its own labels (`site=north` on fleet-a and fleet-b, `site=south` on fleet-c, `tier=edge` on
all) and fleet-c tainted `dedicated=south:NoSchedule`. What a user of several edge devices sees:
DaemonSets on every node that tolerates them, node selection and upstream-shaped scheduling
failures, preemption on a full node carried out by a real agent, crash-loop back-off with logs
through the agent's tunnel, and Jobs and CronJobs completing across the fleet.

Every pod runs with the `process` runtime; every command carries a marker unique to this run so
the tests can count the real processes (`pgrep -f`) the agents started. Each test has its own
namespace and removes what it created, so no test's pods (or CPU requests) leak into the next.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

import conftest
import e2e_util
from e2e_util import wait_until

SH = "/bin/sh"
RUN = secrets.token_hex(4)
# Every pod command of this module carries it, so leftovers can be found after the fleet stops.
RUN_MARKER = f"ledge-fleet-{RUN}"
TAINT_KEY, TAINT_VALUE = "dedicated", "south"
NODES = {
    "fleet-a": {"labels": ("site=north", "tier=edge"), "taints": ()},
    "fleet-b": {"labels": ("site=north", "tier=edge"), "taints": ()},
    "fleet-c": {"labels": ("site=south", "tier=edge"),
                "taints": (f"{TAINT_KEY}={TAINT_VALUE}:NoSchedule",)},
}
UNTAINTED = {"fleet-a", "fleet-b"}
TOLERATE_SOUTH = {"key": TAINT_KEY, "operator": "Equal", "value": TAINT_VALUE,
                  "effect": "NoSchedule"}
JOIN_TIMEOUT = 90.0
# Pods start real processes on a shared 2-core machine: waits for them are generous.
POD_TIMEOUT = 90.0


# --------------------------------------------------------------------------------------------------
# the fleet


@dataclass
class Fleet:
    """The fleet's server, its kubectl, and the agents by node name."""

    server: conftest.Server
    kubectl: conftest.Kubectl
    agents: dict[str, e2e_util.Agent]

    def logs(self) -> dict:
        """Log title → (path, process), for `conftest.attach_logs_on_failure`."""
        logs = {"ledge server log": (self.server.log_path, self.server.process)}
        for name, agent in self.agents.items():
            logs[f"ledge agent {name} log"] = (agent.log, agent.process)
        return logs


@pytest.fixture(scope="module")
def fleet(request, ledge_bin, kubectl_path, tmp_path_factory) -> Fleet:
    """A server and three joined agents, all Nodes Ready; everything is stopped afterwards,
    agents first (so they finish their pods while the server still answers), then the server."""
    base = tmp_path_factory.mktemp("ledge-fleet")
    srv = conftest.start_server(ledge_bin, kubectl_path, base / "server")
    agents: dict[str, e2e_util.Agent] = {}
    try:
        kubectl = conftest.Kubectl(kubectl_path, srv.kubeconfig, base / "kubectl-home")
        token = e2e_util.create_token(ledge_bin, srv.data_dir, "--ttl", "1h",
                                      "--description", "e2e fleet")
        for name, node in NODES.items():
            agents[name] = e2e_util.Agent(
                ledge_bin, srv, base / name, name, base / f"{name}.log", token=token,
                labels=node["labels"], taints=node["taints"],
                extra=("--restart-backoff", "1s"))
        fleet = Fleet(srv, kubectl, agents)

        def all_ready():
            for name, agent in agents.items():
                if agent.process.poll() is not None:
                    pytest.fail(f"agent {name} exited with code {agent.process.returncode} while "
                                f"joining; log:\n{e2e_util.file_tail(agent.log, 100)}",
                                pytrace=False)
            return all(e2e_util.node_ready(kubectl, name) for name in NODES)

        try:
            wait_until(all_ready, "the three fleet nodes to be Ready", timeout=JOIN_TIMEOUT)
        except AssertionError as err:
            pytest.fail(f"{err}\n" + "\n".join(
                f"--- {title}\n{e2e_util.file_tail(path, 60)}"
                for title, (path, _) in fleet.logs().items()), pytrace=False)
        yield fleet
    finally:
        for agent in agents.values():
            agent.stop()
        srv.stop()
        _kill_leftover_pod_processes(request.config)
        if request.session.testsfailed:
            paths = [(f"ledge agent {name}", a.log) for name, a in agents.items()]
            for title, path in [("ledge server", srv.log_path), *paths]:
                conftest._report(request.config,
                                 f"{title} log (last {conftest.LOG_TAIL_LINES} lines of {path})",
                                 e2e_util.file_tail(path, conftest.LOG_TAIL_LINES))


def _kill_leftover_pod_processes(config) -> None:
    """Pod processes of this run that outlived their agents are reported and stopped, so a
    failed test does not leave `sleep 3600`s behind."""
    pids = processes(RUN_MARKER)
    if not pids:
        return
    conftest._report(config, "pod processes left after the agents stopped",
                     subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(pids)],
                                    capture_output=True, text=True).stdout)
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def _fleet_logs_on_failure(request, fleet):
    conftest.attach_logs_on_failure(request.node, fleet.logs())
    yield


@pytest.fixture
def kubectl(fleet) -> conftest.Kubectl:
    return fleet.kubectl


@pytest.fixture
def ns(request, kubectl) -> str:
    """A fresh namespace for this test, deleted (without waiting) afterwards."""
    test = request.node.originalname.removeprefix("test_").replace("_", "-")
    name = e2e_util.unique_name(f"fleet-{test}", max_len=40)
    kubectl("create", "-f", "-", input=e2e_util.manifest(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


# --------------------------------------------------------------------------------------------------
# helpers


def marker(what: str) -> str:
    """A string unique to this run and purpose, put in a pod's command to find its processes."""
    return f"{RUN_MARKER}-{what}-{secrets.token_hex(3)}"


def processes(pattern: str) -> list[str]:
    """PIDs of the processes whose command line contains `pattern`."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def pod_spec(command: str, **spec) -> dict:
    """A pod spec running `command` with `/bin/sh -c` on the node (the `process` runtime)."""
    container = {"name": "main", "image": "host", "command": [SH, "-c", command],
                 **spec.pop("container", {})}
    return {"runtimeClassName": "process", "terminationGracePeriodSeconds": 1,
            "containers": [container], **spec}


def pod(name: str, command: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": pod_spec(command, **spec)}


def on_node(node: str) -> dict:
    return {"kubernetes.io/hostname": node}


def apply(kubectl, ns: str, *docs: dict) -> None:
    kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(*docs))


def get_pod(kubectl, ns: str, name: str) -> dict:
    return kubectl.json("-n", ns, "get", "pod", name)


def running(kubectl, ns: str, name: str) -> dict | None:
    p = get_pod(kubectl, ns, name)
    return p if p["status"].get("phase") == "Running" else None


def gone(kubectl, ns: str, kind: str, name: str) -> bool:
    return kubectl("-n", ns, "get", kind, name, "--ignore-not-found", "-o",
                   "name").stdout.strip() == ""


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c["type"] == type_), {})


def events_for(kubectl, ns: str, name: str, reason: str) -> list[dict]:
    return kubectl.json("-n", ns, "get", "events", "--field-selector",
                        f"involvedObject.name={name},reason={reason}")["items"]


def cpu_millis(quantity: str) -> int:
    """A CPU quantity (`2`, `1500m`, `0.5`) in millicores."""
    if quantity.endswith("m"):
        return int(quantity[:-1])
    return int(float(quantity) * 1000)


def watch(kubectl, ns: str, kind: str, *names: str) -> e2e_util.JsonEventStream:
    return e2e_util.JsonEventStream(kubectl.popen(
        "-n", ns, "get", kind, *names, "-w", "--output-watch-events", "-o", "json"))


def ds_pods(kubectl, ns: str, app: str) -> list[dict]:
    """The DaemonSet's pods that are not being deleted."""
    items = kubectl.json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


# --------------------------------------------------------------------------------------------------
# the fleet as the tests found it


def test_the_agents_registered_their_labels_taints_and_real_capacity(kubectl):
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    assert set(nodes) == set(NODES)
    for name, want in NODES.items():
        labels = nodes[name]["metadata"]["labels"]
        for label in want["labels"]:
            key, value = label.split("=")
            assert labels.get(key) == value, (name, labels)
        assert labels["kubernetes.io/hostname"] == name
        taints = nodes[name]["spec"].get("taints") or []
        if want["taints"]:
            assert {"key": TAINT_KEY, "value": TAINT_VALUE, "effect": "NoSchedule"} in taints
        else:
            assert taints == [], (name, taints)
        assert 1 <= cpu_millis(nodes[name]["status"]["allocatable"]["cpu"]) \
            <= 1000 * (os.cpu_count() or 1)
    out = kubectl("get", "nodes", "-l", "site=north", "-o", "name").stdout.split()
    assert sorted(out) == ["node/fleet-a", "node/fleet-b"]


# --------------------------------------------------------------------------------------------------
# 1. DaemonSets


def daemonset(name: str, command: str, tolerations: list | None = None) -> dict:
    spec = pod_spec(command)
    if tolerations:
        spec["tolerations"] = tolerations
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def test_daemonset_runs_on_every_node_that_tolerates_it(kubectl, ns):
    mark = marker("ds")
    command = f"sleep 3600; : {mark}"
    apply(kubectl, ns, daemonset("agentd", command))
    kubectl("-n", ns, "rollout", "status", "ds/agentd", "--timeout=120s", timeout=130)

    def one_running_pod_per(nodes: set[str], tolerating: bool):
        pods = ds_pods(kubectl, ns, "agentd")
        placed = sorted(p["spec"].get("nodeName") or "" for p in pods)
        if placed != sorted(nodes):
            return None
        if not all(p["status"].get("phase") == "Running" for p in pods):
            return None
        if not all((TOLERATE_SOUTH in (p["spec"].get("tolerations") or [])) == tolerating
                   for p in pods):
            return None
        return pods

    wait_until(lambda: one_running_pod_per(UNTAINTED, False),
               "one Running pod on fleet-a and one on fleet-b", timeout=POD_TIMEOUT)
    ds = kubectl.json("-n", ns, "get", "ds", "agentd")
    assert ds["status"]["desiredNumberScheduled"] == 2, ds["status"]
    assert ds["status"]["numberReady"] == 2, ds["status"]
    # The tainted node was left out, not merely late: its pod would count as desired.
    assert not [p for p in ds_pods(kubectl, ns, "agentd") if p["spec"].get("nodeName") == "fleet-c"]
    wait_until(lambda: len(processes(mark)) == 2, "the agents to run two processes",
               timeout=POD_TIMEOUT)

    # Tolerating the taint rolls the DaemonSet out to fleet-c as well.
    apply(kubectl, ns, daemonset("agentd", command, tolerations=[TOLERATE_SOUTH]))
    kubectl("-n", ns, "rollout", "status", "ds/agentd", "--timeout=120s", timeout=130)
    wait_until(lambda: one_running_pod_per(set(NODES), True),
               "one Running pod of the new template on each of the three nodes",
               timeout=POD_TIMEOUT)
    ds = kubectl.json("-n", ns, "get", "ds", "agentd")
    status = ds["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"],
            status["updatedNumberScheduled"], status["numberReady"]) == (3, 3, 3, 3), status
    # The replaced pods' processes were stopped: exactly one per node is left.
    wait_until(lambda: len(processes(mark)) == 3, "exactly three processes (one per node)",
               timeout=POD_TIMEOUT)
    table = kubectl("-n", ns, "get", "pods", "--no-headers", "-o",
                    "custom-columns=NODE:.spec.nodeName,STATUS:.status.phase").stdout
    assert sorted(table.split("\n")[:-1]) == [f"{n}   Running" for n in sorted(NODES)], table

    kubectl("-n", ns, "delete", "ds", "agentd", "--timeout=60s")
    wait_until(lambda: processes(mark) == [], "the agents to stop every DaemonSet process",
               timeout=POD_TIMEOUT)


# --------------------------------------------------------------------------------------------------
# 2. node selection and FailedScheduling


def test_node_selector_and_toleration_pick_the_node_and_a_mismatch_stays_pending(kubectl, ns):
    mark = marker("south")
    apply(kubectl, ns, pod("south", f"sleep 3600; : {mark}", nodeSelector={"site": "south"},
                           tolerations=[TOLERATE_SOUTH]))
    p = wait_until(lambda: running(kubectl, ns, "south"), "pod south Running",
                   timeout=POD_TIMEOUT)
    assert p["spec"]["nodeName"] == "fleet-c"
    wait_until(lambda: len(processes(mark)) == 1, "fleet-c's agent to run the process")

    apply(kubectl, ns, pod("nowhere", "sleep 3600", nodeSelector={"site": "nowhere"}))
    event = wait_until(lambda: events_for(kubectl, ns, "nowhere", "FailedScheduling"),
                       "a FailedScheduling event", timeout=60)[-1]
    message = event["message"]
    assert event["type"] == "Warning", event
    assert message.startswith("0/3 nodes are available: "), message
    assert "2 node(s) didn't match Pod's node affinity/selector" in message, message
    assert "1 node(s) had untolerated taint {dedicated: south}" in message, message
    assert "preemption: " in message, message
    p = get_pod(kubectl, ns, "nowhere")
    assert p["status"].get("phase") == "Pending"
    assert not p["spec"].get("nodeName"), p["spec"]
    scheduled = condition(p, "PodScheduled")
    assert (scheduled.get("status"), scheduled.get("reason")) == ("False", "Unschedulable"), p
    assert "didn't match Pod's node affinity/selector" in scheduled.get("message", ""), scheduled
    _, rows = e2e_util.parse_table(kubectl("-n", ns, "get", "pod", "nowhere").stdout)
    assert rows[0]["STATUS"] == "Pending", rows

    # A node that gains the label takes the pending pod.
    try:
        kubectl("label", "node", "fleet-b", "site=nowhere", "--overwrite")
        p = wait_until(lambda: running(kubectl, ns, "nowhere"),
                       "the pending pod to run once fleet-b matches", timeout=POD_TIMEOUT)
        assert p["spec"]["nodeName"] == "fleet-b"
    finally:
        kubectl("label", "node", "fleet-b", "site=north", "--overwrite")

    kubectl("-n", ns, "delete", "pod", "south", "nowhere", "--timeout=60s")
    wait_until(lambda: processes(mark) == [], "fleet-c's agent to stop the process")


# --------------------------------------------------------------------------------------------------
# 3. preemption


def priority_class(name: str, value: int) -> dict:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority",
            "description": "e2e fleet preemption"}


def test_a_high_priority_pod_preempts_a_low_one_on_a_full_node(kubectl, ns):
    allocatable = kubectl.json("get", "node", "fleet-a")["status"]["allocatable"]["cpu"]
    request = cpu_millis(allocatable) * 3 // 4
    assert request > 0, allocatable
    low_class, high_class = f"fleet-low-{RUN}", f"fleet-high-{RUN}"
    low_mark, high_mark = marker("low"), marker("high")

    def hungry(name: str, klass: str, mark: str) -> dict:
        return pod(name, f"sleep 3600; : {mark}", nodeSelector=on_node("fleet-a"),
                   priorityClassName=klass,
                   container={"resources": {"requests": {"cpu": f"{request}m"}}})

    kubectl("create", "-f", "-", input=e2e_util.manifest(
        priority_class(low_class, 100), priority_class(high_class, 1000)))
    try:
        apply(kubectl, ns, hungry("low", low_class, low_mark))
        low = wait_until(lambda: running(kubectl, ns, "low"), "the low-priority pod Running",
                         timeout=POD_TIMEOUT)
        assert low["spec"]["nodeName"] == "fleet-a"
        assert low["spec"]["priority"] == 100
        low_uid = low["metadata"]["uid"]
        wait_until(lambda: len(processes(low_mark)) == 1, "fleet-a's agent to run the low pod")

        seen = {"low marked DisruptionTarget": False, "low deleted": False,
                "high nominated to fleet-a": False, "high Running on fleet-a": False}
        with watch(kubectl, ns, "pods") as events:
            apply(kubectl, ns, hungry("high", high_class, high_mark))
            deadline = time.monotonic() + POD_TIMEOUT
            while not all(seen.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"within {POD_TIMEOUT:.0f}s saw only {seen}; "
                                         f"events: {events.summary()}")
                event = events.next_event(timeout=remaining)
                obj = event["object"]
                name = obj["metadata"]["name"]
                if name == "low" and obj["metadata"]["uid"] == low_uid:
                    target = condition(obj, "DisruptionTarget")
                    if target.get("status") == "True":
                        assert target["reason"] == "PreemptionByScheduler", target
                        seen["low marked DisruptionTarget"] = True
                    if event["type"] == "DELETED":
                        seen["low deleted"] = True
                elif name == "high":
                    status = obj.get("status", {})
                    if status.get("nominatedNodeName") == "fleet-a":
                        seen["high nominated to fleet-a"] = True
                    if obj["spec"].get("nodeName") == "fleet-a" \
                            and status.get("phase") == "Running":
                        seen["high Running on fleet-a"] = True
                        # Bound only once the victim was gone: the node never held both.
                        assert seen["low deleted"], seen

        high = get_pod(kubectl, ns, "high")
        assert high["spec"]["priority"] == 1000
        assert gone(kubectl, ns, "pod", "low")
        # The agent stopped the victim's process and started the preemptor's.
        assert processes(low_mark) == []
        wait_until(lambda: len(processes(high_mark)) == 1, "fleet-a's agent to run the high pod")
        preempted = events_for(kubectl, ns, "low", "Preempted")
        assert preempted, "no Preempted event for the victim"
        assert preempted[-1]["message"] == \
            f"Preempted by pod {high['metadata']['uid']} on node fleet-a", preempted[-1]

        kubectl("-n", ns, "delete", "pod", "high", "--timeout=60s")
        wait_until(lambda: processes(high_mark) == [], "the agent to stop the high pod")
    finally:
        kubectl("delete", "priorityclass", low_class, high_class, "--ignore-not-found")


# --------------------------------------------------------------------------------------------------
# 4. crash loop


BACK_OFF = re.compile(r"^back-off (\d+)s restarting failed container=main pod=crash_(.+)\((.+)\)$")


def test_a_crashing_process_backs_off_longer_each_time_and_keeps_its_previous_log(kubectl, ns):
    mark = marker("crash")
    # On fleet-b, the second agent: its logs must come through its own tunnel.
    apply(kubectl, ns, pod("crash", f"echo boom {mark}; exit 1",
                           nodeSelector=on_node("fleet-b")))
    # Back-off delay shown while waiting, by the restart count it was shown at.
    delays: dict[int, int] = {}
    with watch(kubectl, ns, "pods") as events:
        def crash_looping_after_three_restarts(event) -> bool:
            obj = event["object"]
            statuses = obj.get("status", {}).get("containerStatuses") or []
            if not statuses:
                return False
            s = statuses[0]
            waiting = s.get("state", {}).get("waiting") or {}
            if waiting.get("reason") != "CrashLoopBackOff":
                return False
            match = BACK_OFF.match(waiting.get("message", ""))
            assert match, waiting
            assert match.group(2) == ns and match.group(3) == obj["metadata"]["uid"], waiting
            delays.setdefault(s["restartCount"], int(match.group(1)))
            return s["restartCount"] >= 3

        events.wait_for(crash_looping_after_three_restarts,
                        "CrashLoopBackOff after three restarts", timeout=POD_TIMEOUT)

    counts = sorted(delays)
    assert len(counts) >= 2, f"back-off seen at too few restart counts: {delays}"
    shown = [delays[c] for c in counts]
    assert shown == sorted(shown) and len(set(shown)) == len(shown), \
        f"the back-off did not grow with each restart: {delays}"

    s = get_pod(kubectl, ns, "crash")["status"]["containerStatuses"][0]
    assert s["restartCount"] >= 3
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert s["lastState"]["terminated"]["reason"] == "Error"
    # What `kubectl get pod` shows while it waits out the (now long) back-off.
    row = wait_until(
        lambda: (r := e2e_util.parse_table(kubectl("-n", ns, "get", "pod", "crash").stdout)[1][0])
        ["STATUS"] == "CrashLoopBackOff" and r, "kubectl get pod to show CrashLoopBackOff")
    assert int(row["RESTARTS"].split()[0]) >= 3, row
    assert f"boom {mark}" in kubectl("-n", ns, "logs", "crash", "--previous").stdout
    backoff = events_for(kubectl, ns, "crash", "BackOff")
    assert backoff and backoff[-1]["type"] == "Warning", backoff
    assert backoff[-1]["message"].startswith("Back-off restarting failed container main"), \
        backoff[-1]

    kubectl("-n", ns, "delete", "pod", "crash", "--timeout=60s")


# --------------------------------------------------------------------------------------------------
# 5. Jobs and CronJobs


def job_template(command: str, completions: int = 1, parallelism: int = 1) -> dict:
    spec = pod_spec(command, restartPolicy="Never")
    spec["containers"][0]["env"] = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    return {"completions": completions, "parallelism": parallelism, "backoffLimit": 2,
            "template": {"spec": spec}}


def test_a_job_completes_across_the_fleet(kubectl, ns):
    mark = marker("job")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
           "spec": job_template(f"echo done on $NODE_NAME {mark}; sleep 2",
                                completions=3, parallelism=2)}
    with watch(kubectl, ns, "jobs") as events:
        apply(kubectl, ns, job)
        kubectl("-n", ns, "wait", "--for=condition=Complete", "job/batch", "--timeout=150s",
                timeout=160)
        # Let the watch catch up with the completion, then check parallelism was honoured.
        final = events.wait_for(lambda e: e["object"]["metadata"]["name"] == "batch" and condition(
            e["object"], "Complete").get("status") == "True", "the Complete job in the watch")
        active = [e["object"].get("status", {}).get("active", 0) for e in events.seen]
        assert max(active) <= 2, f"more than `parallelism` pods active: {active}"
    assert final["object"]["status"]["succeeded"] == 3

    pods = kubectl.json("-n", ns, "get", "pods", "-l", "batch.kubernetes.io/job-name=batch")
    pods = pods["items"]
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    for p in pods:
        assert p["status"]["phase"] == "Succeeded", p["status"]
        node = p["spec"]["nodeName"]
        assert node in UNTAINTED, f"{p['metadata']['name']} ran on {node}, which it does not " \
                                  "tolerate"
        # Each pod's log comes from the agent that ran it.
        out = kubectl("-n", ns, "logs", p["metadata"]["name"]).stdout
        assert f"done on {node} {mark}" in out, out

    kubectl("-n", ns, "delete", "job", "batch", "--cascade=foreground", "--timeout=60s")


@pytest.mark.timeout(420)
def test_a_cronjob_creates_a_job_every_minute_that_completes(kubectl, ns):
    mark = marker("cron")
    apply(kubectl, ns, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid",
                 "successfulJobsHistoryLimit": 3,
                 "jobTemplate": {"spec": job_template(f"echo tick on $NODE_NAME {mark}")}}})
    cron_uid = kubectl.json("-n", ns, "get", "cronjob", "tick")["metadata"]["uid"]

    def completed_job():
        for job in kubectl.json("-n", ns, "get", "jobs")["items"]:
            owners = job["metadata"].get("ownerReferences") or []
            if any(o["uid"] == cron_uid and o.get("controller") for o in owners) \
                    and condition(job, "Complete").get("status") == "True":
                return job
        return None

    # The next minute boundary is at most 60 s away; then a pod has to run to completion.
    job = wait_until(completed_job, "a Job of the CronJob to complete", timeout=180, interval=1)
    assert job["metadata"]["name"].startswith("tick-"), job["metadata"]
    assert job["status"]["succeeded"] == 1
    cron = wait_until(
        lambda: (c := kubectl.json("-n", ns, "get", "cronjob", "tick"))["status"].get(
            "lastSuccessfulTime") and c,
        "the CronJob to record its last successful run")
    assert cron["status"].get("lastScheduleTime"), cron["status"]
    out = kubectl("-n", ns, "logs", f"job/{job['metadata']['name']}").stdout
    assert re.search(rf"tick on fleet-[ab] {re.escape(mark)}", out), out

    kubectl("-n", ns, "delete", "cronjob", "tick", "--cascade=foreground", "--timeout=60s")
