"""Pods on a real node: `ledge up` runs a server and an agent in one process, and the agent runs
pods with the `process` runtime. What a kubectl user sees is checked: phases, container states,
restarts with back-off, logs, probes, env and volumes, init containers, deadlines, deletion
that stops the processes, images imported with `ledge image import`; pods of several
containers, the `kubectl logs` options, `kubectl describe pod`, `kubectl get pods -o wide`, and
pods that fit on no node (FailedScheduling).
"""

from __future__ import annotations

import datetime
import math
import os
import re
import subprocess
import time
import uuid

import pytest

import e2e_util

SH = "/bin/sh"


def pod(name: str, command: str, **spec) -> dict:
    container = {"name": "main", "image": "host", "command": [SH, "-c", command]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"runtimeClassName": "process", "containers": [container], **spec},
    }


@pytest.fixture
def cluster(node_cluster):
    return node_cluster


@pytest.fixture
def ns(node_ns):
    return node_ns


def apply(cluster, ns, *docs):
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(*docs))


def container_status(cluster, ns, name, idx=0, init=False):
    key = "initContainerStatuses" if init else "containerStatuses"
    return cluster.pod(ns, name).get("status", {}).get(key, [{}])[idx]


def logs(cluster, ns, name, *args) -> str:
    return cluster.kubectl("-n", ns, "logs", name, *args).stdout


def processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return out.stdout.split()


def test_pod_runs_with_env_volumes_and_logs(cluster, ns, tmp_path):
    mount = f"/tmp/ledge-e2e-{uuid.uuid4().hex[:8]}"
    apply(cluster, ns,
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
           "data": {"greeting": "hello", "file.txt": "from a volume"}},
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
           "stringData": {"password": "hunter2"}},
          pod("web", f"echo greeting=$GREETING password=$PASSWORD pod=$POD ip=$IP; "
                     f"cat {mount}/file.txt; echo; sleep 3600",
              container={
                  "env": [
                      {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                      {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                      {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                      {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                  ],
                  "volumeMounts": [{"name": "cfg", "mountPath": mount, "readOnly": True}],
              },
              volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
    p = cluster.pod(ns, "web")
    assert p["status"]["phase"] == "Running"
    assert p["spec"]["nodeName"] == cluster.node
    assert p["status"]["podIP"] == "127.0.0.1"
    state = p["status"]["containerStatuses"][0]
    assert state["ready"] is True and state["started"] is True and "running" in state["state"]
    text = e2e_util.wait_until(lambda: (t := logs(cluster, ns, "web")) and "from a volume" in t and t,
                               "the pod's output")
    assert "greeting=hello password=hunter2 pod=web ip=127.0.0.1" in text
    wide = cluster.kubectl("-n", ns, "get", "pods", "-o", "wide").stdout
    assert cluster.node in wide and "Running" in wide
    # The mount lived in the container's own mount namespace only.
    assert not (tmp_path / "file.txt").exists()


def test_crash_loop_backs_off_and_keeps_the_previous_log(cluster, ns):
    apply(cluster, ns, pod("crash", "echo boom; exit 2"))

    def restarted_twice():
        s = container_status(cluster, ns, "crash")
        return s.get("restartCount", 0) >= 2 and s
    s = e2e_util.wait_until(restarted_twice, "two restarts", timeout=60)
    assert s["lastState"]["terminated"]["exitCode"] == 2
    assert s["lastState"]["terminated"]["reason"] == "Error"
    e2e_util.wait_until(
        lambda: container_status(cluster, ns, "crash").get("state", {}).get("waiting", {})
        .get("reason") == "CrashLoopBackOff", "CrashLoopBackOff")
    assert "CrashLoopBackOff" in cluster.kubectl("-n", ns, "get", "pod", "crash").stdout
    assert "boom" in logs(cluster, ns, "crash", "--previous")
    events = cluster.kubectl("-n", ns, "get", "events", "--field-selector",
                             "involvedObject.name=crash").stdout
    assert "BackOff" in events


def test_restart_policy_never_ends_in_succeeded_or_failed(cluster, ns):
    apply(cluster, ns, pod("ok", "echo done", restartPolicy="Never"),
          pod("bad", "exit 3", restartPolicy="Never"))
    e2e_util.wait_until(lambda: cluster.pod(ns, "ok")["status"].get("phase") == "Succeeded",
                        "pod ok Succeeded")
    e2e_util.wait_until(lambda: cluster.pod(ns, "bad")["status"].get("phase") == "Failed",
                        "pod bad Failed")
    term = container_status(cluster, ns, "bad")["state"]["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert container_status(cluster, ns, "ok")["state"]["terminated"]["reason"] == "Completed"
    assert "Completed" in cluster.kubectl("-n", ns, "get", "pod", "ok").stdout


def test_init_containers_run_first_and_share_an_empty_dir(cluster, ns):
    mount = f"/tmp/ledge-e2e-{uuid.uuid4().hex[:8]}"
    spec = pod("init", f"cat {mount}/order; sleep 3600",
               container={"volumeMounts": [{"name": "work", "mountPath": mount}]},
               volumes=[{"name": "work", "emptyDir": {}}])
    spec["spec"]["initContainers"] = [
        {"name": f"step{i}", "image": "host", "command": [SH, "-c", f"echo step{i} >> {mount}/order"],
         "volumeMounts": [{"name": "work", "mountPath": mount}]}
        for i in (1, 2)
    ]
    apply(cluster, ns, spec)
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/init", "--timeout=60s")
    text = e2e_util.wait_until(lambda: logs(cluster, ns, "init", "-c", "main"), "main output")
    assert text.split() == ["step1", "step2"]
    inits = cluster.pod(ns, "init")["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]


def test_readiness_probe_gates_ready(cluster, ns):
    port = 20000 + uuid.uuid4().int % 20000
    apply(cluster, ns, pod(
        "probed", f"sleep 2; exec python3 -m http.server {port} --bind 127.0.0.1",
        container={"ports": [{"name": "http", "containerPort": port}],
                   "readinessProbe": {"httpGet": {"port": "http", "path": "/"},
                                      "periodSeconds": 1}}))
    e2e_util.wait_until(lambda: container_status(cluster, ns, "probed").get("started"),
                        "container started")
    assert cluster.pod(ns, "probed")["status"]["containerStatuses"][0]["ready"] is False
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/probed", "--timeout=60s")


def test_delete_stops_the_process_and_removes_the_pod(cluster, ns):
    marker = f"ledge-e2e-{uuid.uuid4().hex}"
    apply(cluster, ns, pod("doomed", f"sleep 3600; : {marker}",
                           terminationGracePeriodSeconds=5))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/doomed", "--timeout=60s")
    e2e_util.wait_until(lambda: processes(marker), "the process to exist")
    cluster.kubectl("-n", ns, "delete", "pod", "doomed", "--timeout=60s")
    assert processes(marker) == []
    out = cluster.kubectl("-n", ns, "get", "pod", "doomed", check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr


def test_active_deadline_fails_the_pod(cluster, ns):
    apply(cluster, ns, pod("late", "sleep 3600", activeDeadlineSeconds=2))
    e2e_util.wait_until(lambda: cluster.pod(ns, "late")["status"].get("reason") == "DeadlineExceeded",
                        "DeadlineExceeded", timeout=60)
    assert cluster.pod(ns, "late")["status"]["phase"] == "Failed"


def test_missing_image_says_how_to_import_it(cluster, ns):
    bad = pod("missing", "true")
    bad["spec"]["containers"][0] = {"name": "main", "image": "nowhere/nothing:1"}
    apply(cluster, ns, bad)

    def waiting():
        return container_status(cluster, ns, "missing").get("state", {}).get("waiting", {})
    w = e2e_util.wait_until(lambda: waiting().get("reason") == "ErrImageNeverPull" and waiting(),
                            "ErrImageNeverPull")
    assert "ledge image import" in w["message"]


def test_imported_executable_image_runs(cluster, ns, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from an imported image \"$@\"\nsleep 3600\n")
    out = subprocess.run([str(cluster.ledge_bin), "image", "import", str(script), "--name",
                          "e2e/hello:1", "--data-dir", str(cluster.agent_dir)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    listed = subprocess.run([str(cluster.ledge_bin), "image", "list", "--data-dir",
                             str(cluster.agent_dir)], capture_output=True, text=True).stdout
    assert "e2e/hello:1" in listed and "executable" in listed
    p = pod("imported", "unused")
    p["spec"]["containers"][0] = {"name": "main", "image": "e2e/hello:1", "args": ["arg1"]}
    apply(cluster, ns, p)
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/imported", "--timeout=60s")
    text = e2e_util.wait_until(lambda: logs(cluster, ns, "imported"), "output")
    assert "hello from an imported image arg1" in text
    assert container_status(cluster, ns, "imported")["imageID"].startswith("sha256:")
    bad = subprocess.run([str(cluster.ledge_bin), "image", "import", "/etc/hostname", "--name",
                          "x", "--data-dir", str(cluster.agent_dir)], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL)
    assert bad.returncode == 1 and "neither a WebAssembly module" in bad.stderr


def test_deployment_rolls_out_on_the_node(cluster, ns):
    marker = f"ledge-e2e-{uuid.uuid4().hex}"
    apply(cluster, ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"runtimeClassName": "process",
                                       "terminationGracePeriodSeconds": 5,
                                       "containers": [{"name": "main", "image": "host",
                                                       "command": [SH, "-c", f"sleep 3600; : {marker}"]}]}}}})
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")
    e2e_util.wait_until(lambda: len(processes(marker)) == 2, "two processes")
    cluster.kubectl("-n", ns, "scale", "deployment/web", "--replicas=3")
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")
    e2e_util.wait_until(lambda: len(processes(marker)) == 3, "three processes")
    cluster.kubectl("-n", ns, "delete", "deployment", "web")
    e2e_util.wait_until(lambda: processes(marker) == [], "every process gone", timeout=60)


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def http_get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_example_hello_process_is_served_on_its_node_port(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", str(REPO / "examples/hello-process.yaml"))
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/hello-process", "--timeout=90s")
    text = e2e_util.wait_until(lambda: http_get("http://127.0.0.1:30081/"),
                               "an answer on the node port")
    assert text.startswith("Hello from hello-process-") and cluster.node in text
    slices = cluster.kubectl.json("-n", ns, "get", "endpointslices", "-l",
                                  "kubernetes.io/service-name=hello-process")
    assert slices["items"][0]["endpoints"][0]["conditions"]["ready"] is True
    cluster.kubectl("-n", ns, "delete", "-f", str(REPO / "examples/hello-process.yaml"))


def test_example_job_completes_on_the_node(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", str(REPO / "examples/job.yaml"))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Complete", "job/count", "--timeout=120s",
                    timeout=130)
    job = cluster.kubectl.json("-n", ns, "get", "job", "count")
    assert job["status"]["succeeded"] == 5
    assert "counts 3" in cluster.kubectl("-n", ns, "logs", "job/count").stdout


def test_example_daemonset_runs_on_the_node(cluster, ns):
    cluster.kubectl("-n", ns, "apply", "-f", str(REPO / "examples/daemonset.yaml"))
    cluster.kubectl("-n", ns, "rollout", "status", "daemonset/node-report", "--timeout=90s")
    text = e2e_util.wait_until(
        lambda: cluster.kubectl("-n", ns, "logs", "-l", "app=node-report").stdout,
        "the reporter's output")
    assert f"{cluster.node} load:" in text


def test_exec_runs_beside_the_container_over_websocket(cluster, ns):
    mount = f"/tmp/ledge-e2e-{uuid.uuid4().hex[:8]}"
    apply(cluster, ns,
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
           "data": {"motd": "inside the container's mounts"}},
          pod("shell", "sleep 3600", container={
              "env": [{"name": "GREETING", "value": "hi"}],
              "volumeMounts": [{"name": "cfg", "mountPath": mount}]},
              volumes=[{"name": "cfg", "configMap": {"name": "cfg"}}]))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/shell", "--timeout=60s")
    out = cluster.kubectl("-n", ns, "exec", "shell", "--", SH, "-c",
                          f"echo $GREETING $HOSTNAME; cat {mount}/motd; echo oops >&2")
    assert out.stdout.split("\n")[:2] == ["hi shell", "inside the container's mounts"]
    assert "oops" in out.stderr
    piped = cluster.kubectl("-n", ns, "exec", "-i", "shell", "--", "cat", input="through stdin\n")
    assert piped.stdout == "through stdin\n"
    failed = cluster.kubectl("-n", ns, "exec", "shell", "--", SH, "-c", "exit 7", check=False)
    assert failed.returncode == 7, failed.stderr
    old = cluster.kubectl("-n", ns, "exec", "shell", "--", "true", version="1.27", check=False)
    assert old.returncode != 0 and "WebSocket" in old.stderr


# --------------------------------------------------------------------------------------------------
# probes: liveness, startup, tcpSocket and exec


def events(cluster, ns, name, reason=None) -> list[dict]:
    """The pod's events (`reason` only, if given), as `kubectl get events` lists them."""
    items = cluster.kubectl.json("-n", ns, "get", "events", "--field-selector",
                                 f"involvedObject.name={name}")["items"]
    return [e for e in items if reason is None or e.get("reason") == reason]


def messages(cluster, ns, name, reason) -> list[str]:
    return [e.get("message", "") for e in events(cluster, ns, name, reason)]


def probe(handler: dict, **fields) -> dict:
    """A probe run every second (upstream's default is 10 s) that gives up after one failure."""
    return {**handler, "periodSeconds": 1, "failureThreshold": 1, **fields}


def marker_path(what: str) -> str:
    """A fresh path under /tmp, which process containers share with the node (and its tests)."""
    return f"/tmp/ledge-e2e-{what}-{uuid.uuid4().hex[:8]}"


def touch(path: str) -> None:
    open(path, "w").close()


def test_failing_liveness_probe_restarts_the_container(cluster, ns):
    # The classic upstream example: healthy while /tmp/alive exists, which the container removes
    # after a while. kubelet kills it (reason Killing), counts a restart, keeps the killed run as
    # lastState and starts it again, which becomes healthy, then unhealthy, again.
    alive = marker_path("alive")
    apply(cluster, ns, pod("liveness", f"echo run; touch {alive}; sleep 2; rm -f {alive}; "
                                       "sleep 3600",
                           terminationGracePeriodSeconds=1,
                           container={"livenessProbe": probe({"exec": {"command": ["cat", alive]}},
                                                             initialDelaySeconds=1,
                                                             failureThreshold=2)}))

    def restarted_and_running():
        s = container_status(cluster, ns, "liveness")
        return s.get("restartCount", 0) >= 1 and "running" in s.get("state", {}) and s
    s = e2e_util.wait_until(restarted_and_running, "a restart after the liveness probe failed",
                            timeout=60)
    # SIGTERM ends `sh` with 128 + 15; SIGKILL after the grace period would be 137.
    term = s["lastState"]["terminated"]
    assert term["exitCode"] in (137, 143) and term["reason"] == "Error", term
    assert term["finishedAt"] <= s["state"]["running"]["startedAt"]
    assert cluster.pod(ns, "liveness")["status"]["phase"] == "Running"
    unhealthy = events(cluster, ns, "liveness", "Unhealthy")
    assert unhealthy and all(e["type"] == "Warning" for e in unhealthy), unhealthy
    assert any(e["message"].startswith("Liveness probe failed: ") for e in unhealthy), unhealthy
    killing = events(cluster, ns, "liveness", "Killing")
    assert any(e["message"] == "Container main failed liveness probe, will be restarted"
               and e["type"] == "Normal" for e in killing), killing
    assert logs(cluster, ns, "liveness", "--previous") == "run\n"


def test_startup_probe_holds_back_liveness(cluster, ns):
    # Until the startup probe passes the container is not started and its liveness probe (which
    # would fail at once) is not run; once it passes the container is started, and from then on
    # the liveness probe runs and restarts it. (Readiness meanwhile: the test below.)
    started = marker_path("started")
    closed = e2e_util.free_port()  # nothing listens there: a liveness probe on it fails
    apply(cluster, ns, pod("slow-start", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={
                               "startupProbe": probe({"exec": {"command": ["cat", started]}},
                                                     failureThreshold=600),
                               "livenessProbe": probe({"tcpSocket": {"port": closed}},
                                                      failureThreshold=3)}))
    e2e_util.wait_until(
        lambda: sum(e.get("count", 1) for e in events(cluster, ns, "slow-start", "Unhealthy")
                    if e["message"].startswith("Startup probe failed: ")) >= 3,
        "three failed startup probes")
    s = container_status(cluster, ns, "slow-start")
    assert "running" in s["state"] and s["started"] is False, s
    assert s["restartCount"] == 0
    assert not [m for m in messages(cluster, ns, "slow-start", "Unhealthy")
                if m.startswith("Liveness probe failed: ")]

    touch(started)
    try:
        s = e2e_util.wait_until(lambda: (s := container_status(cluster, ns, "slow-start"))
                                .get("started") and s, "started once the startup probe passed")
        assert s["restartCount"] == 0
        e2e_util.wait_until(
            lambda: container_status(cluster, ns, "slow-start").get("restartCount", 0) >= 1,
            "a restart by the liveness probe, which runs now", timeout=60)
    finally:
        os.remove(started)
    assert any(m.startswith("Liveness probe failed: ")
               for m in messages(cluster, ns, "slow-start", "Unhealthy"))
    assert "Container main failed liveness probe, will be restarted" in \
        messages(cluster, ns, "slow-start", "Killing")


def test_startup_probe_that_never_passes_restarts_the_container(cluster, ns):
    closed = e2e_util.free_port()
    apply(cluster, ns, pod("never-starts", "echo run; sleep 3600", terminationGracePeriodSeconds=1,
                           container={"startupProbe": probe({"tcpSocket": {"port": closed}},
                                                            failureThreshold=2)}))
    s = e2e_util.wait_until(
        lambda: (s := container_status(cluster, ns, "never-starts")).get("restartCount", 0) >= 2
        and s, "two restarts after failed startup probes", timeout=60)
    assert s["started"] is False
    assert s["lastState"]["terminated"]["exitCode"] in (137, 143)
    assert "Container main failed startup probe, will be restarted" in \
        messages(cluster, ns, "never-starts", "Killing")
    failed = [m for m in messages(cluster, ns, "never-starts", "Unhealthy")
              if m.startswith("Startup probe failed: ")]
    assert failed and f"127.0.0.1:{closed}" in failed[0], failed


def test_container_is_not_ready_before_its_startup_probe_passes(cluster, ns):
    # Upstream (prober manager UpdatePodStatus): a container that is not started is not ready,
    # with or without a readiness probe, so a slow starter stays out of its Services' endpoints.
    started = marker_path("started")
    apply(cluster, ns, pod("starting", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={"startupProbe": probe({"exec": {"command": ["cat", started]}},
                                                            failureThreshold=600)}))
    e2e_util.wait_until(lambda: messages(cluster, ns, "starting", "Unhealthy"),
                        "a failed startup probe")
    p = cluster.pod(ns, "starting")
    s = p["status"]["containerStatuses"][0]
    assert "running" in s["state"] and s["started"] is False, s
    ready = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
    assert s["ready"] is False and ready.get("Ready") == "False", (s, ready)
    touch(started)
    try:
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/starting",
                        "--timeout=60s")
    finally:
        os.remove(started)
    assert container_status(cluster, ns, "starting")["started"] is True


def test_tcp_socket_readiness_follows_the_listening_port(cluster, ns):
    # The process listens only once told to (a file appears) and stops listening when told
    # to: Ready follows the port, and the container keeps running (readiness never restarts).
    port = e2e_util.free_port()
    listen, stop = marker_path("listen"), marker_path("stop")
    www = marker_path("www")
    apply(cluster, ns, pod(
        "tcp-ready",
        f"until [ -e {listen} ]; do sleep 0.2; done; mkdir -p {www}; "
        f"busybox httpd -f -p 127.0.0.1:{port} -h {www} & pid=$!; "
        f"until [ -e {stop} ]; do sleep 0.2; done; kill $pid; sleep 3600",
        terminationGracePeriodSeconds=1,
        container={"ports": [{"name": "svc", "containerPort": port}],
                   "readinessProbe": probe({"tcpSocket": {"port": "svc"}})}))
    try:
        e2e_util.wait_until(lambda: messages(cluster, ns, "tcp-ready", "Unhealthy"),
                            "a failed readiness probe")
        s = container_status(cluster, ns, "tcp-ready")
        assert "running" in s["state"] and s["started"] is True and s["ready"] is False, s
        touch(listen)
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/tcp-ready",
                        "--timeout=60s")
        touch(stop)
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready=false", "pod/tcp-ready",
                        "--timeout=60s")
    finally:
        for path in (listen, stop):
            if os.path.exists(path):
                os.remove(path)
    s = container_status(cluster, ns, "tcp-ready")
    assert s["restartCount"] == 0 and "running" in s["state"], s
    assert any(m.startswith("Readiness probe failed: ") and f"127.0.0.1:{port}" in m
               for m in messages(cluster, ns, "tcp-ready", "Unhealthy"))


def test_exec_readiness_probe_follows_a_file(cluster, ns):
    ready = marker_path("ready")
    apply(cluster, ns, pod("exec-ready", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={"readinessProbe": probe({"exec": {"command": ["cat", ready]}})}))
    try:
        e2e_util.wait_until(lambda: messages(cluster, ns, "exec-ready", "Unhealthy"),
                            "a failed readiness probe")
        assert container_status(cluster, ns, "exec-ready")["ready"] is False
        touch(ready)
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/exec-ready",
                        "--timeout=60s")
        os.remove(ready)
        cluster.kubectl("-n", ns, "wait", "--for=condition=Ready=false", "pod/exec-ready",
                        "--timeout=60s")
    finally:
        if os.path.exists(ready):
            os.remove(ready)
    assert container_status(cluster, ns, "exec-ready")["restartCount"] == 0


def test_exec_probe_failure_event_carries_the_command_output(cluster, ns):
    # What the probe printed is how a user learns why it failed (`kubectl describe pod`):
    # kubelet runs it with CombinedOutput and puts that output in the event.
    apply(cluster, ns, pod("says-why", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={"readinessProbe": probe({"exec": {"command": [
                               SH, "-c", "echo on stdout; echo on stderr >&2; exit 1"]}})}))
    failed = e2e_util.wait_until(lambda: messages(cluster, ns, "says-why", "Unhealthy"),
                                 "a failed readiness probe")
    assert "Readiness probe failed: on stdout\non stderr" in failed, failed


def test_exec_probe_runs_in_the_container(cluster, ns):
    # A readiness check that reads the container's env and a file in one of its volumes: the
    # container writes `ready` into its emptyDir, at a mount path only it sees.
    mount = marker_path("probe-vol")
    apply(cluster, ns, pod(
        "in-container", f"echo yes > {mount}/ready; sleep 3600", terminationGracePeriodSeconds=1,
        container={"env": [{"name": "ROLE", "value": "primary"}],
                   "volumeMounts": [{"name": "work", "mountPath": mount}],
                   "readinessProbe": probe({"exec": {"command": [
                       SH, "-c", f'test "$ROLE" = primary && grep -q yes {mount}/ready']}})},
        volumes=[{"name": "work", "emptyDir": {}}]))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/in-container",
                    "--timeout=30s")


# --------------------------------------------------------------------------------------------------
# several containers in one pod


def two_containers(name: str, a: str, b: str, **spec) -> dict:
    """A pod with containers `a` and `b` running the given shell commands."""
    p = pod(name, a, terminationGracePeriodSeconds=1, **spec)
    p["spec"]["containers"][0]["name"] = "a"
    p["spec"]["containers"].append({"name": "b", "image": "host", "command": [SH, "-c", b]})
    return p


def statuses_by_name(cluster, ns, name) -> dict[str, dict]:
    return {s["name"]: s for s in cluster.pod(ns, name)["status"].get("containerStatuses", [])}


def get_pod_row(cluster, ns, name, *args) -> dict[str, str]:
    """The pod's row of `kubectl get pod NAME`, as {column: cell}."""
    _, rows = e2e_util.parse_table(cluster.kubectl("-n", ns, "get", "pod", name, *args).stdout)
    assert len(rows) == 1, rows
    return rows[0]


def test_two_containers_run_together_each_with_its_own_log(cluster, ns):
    apply(cluster, ns, two_containers("duo", "echo from-a; sleep 3600", "echo from-b; sleep 3600"))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/duo", "--timeout=60s")
    s = statuses_by_name(cluster, ns, "duo")
    assert sorted(s) == ["a", "b"]
    assert all("running" in c["state"] and c["ready"] for c in s.values()), s
    assert get_pod_row(cluster, ns, "duo")["READY"] == "2/2"
    e2e_util.wait_until(lambda: logs(cluster, ns, "duo", "-c", "b") == "from-b\n", "b's output")
    assert logs(cluster, ns, "duo", "-c", "a") == "from-a\n"

    # kubectl (1.21 on) picks the first container itself and says so on stderr.
    out = cluster.kubectl("-n", ns, "logs", "duo")
    assert out.stdout == "from-a\n"
    assert 'Defaulted container "a" out of: a, b' in out.stderr, out.stderr
    # The API itself wants a container named, and lists the choices.
    raw = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/duo/log", check=False)
    assert raw.returncode != 0
    assert raw.stderr.strip() == ("Error from server (BadRequest): a container name must be "
                                  "specified for pod duo, choose one of: [a b]"), raw.stderr
    raw = cluster.kubectl("get", "--raw",
                          f"/api/v1/namespaces/{ns}/pods/duo/log?container=c", check=False)
    assert raw.stderr.strip() == \
        "Error from server (BadRequest): container c is not valid for pod duo", raw.stderr

    both = logs(cluster, ns, "duo", "--all-containers", "--prefix")
    assert sorted(both.splitlines()) == ["[pod/duo/a] from-a", "[pod/duo/b] from-b"], both


def test_log_request_without_a_container_lists_the_init_containers_too(cluster, ns):
    p = two_containers("trio", "sleep 3600", "sleep 3600")
    p["spec"]["initContainers"] = [{"name": "setup", "image": "host",
                                    "command": [SH, "-c", "echo set up"]}]
    apply(cluster, ns, p)
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/trio", "--timeout=60s")
    assert logs(cluster, ns, "trio", "-c", "setup") == "set up\n"
    raw = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/trio/log", check=False)
    message = raw.stderr.strip()
    assert message.startswith("Error from server (BadRequest): a container name must be "
                              "specified for pod trio, choose one of: ["), message
    assert "setup" in message, message


def test_one_container_ending_under_restart_policy_never(cluster, ns):
    # Upstream's phase rules: Running while any container runs; once all have ended, Failed if
    # any failed. The ended container is not restarted, not ready, and keeps its exit code.
    release = marker_path("release")
    try:
        apply(cluster, ns, two_containers(
            "never", "echo a; exit 4",
            f"until [ -e {release} ]; do sleep 0.1; done; echo b done", restartPolicy="Never"))
        s = e2e_util.wait_until(
            lambda: (s := statuses_by_name(cluster, ns, "never")).get("a", {}).get("state", {})
            .get("terminated") and s, "container a to end")
        assert s["a"]["state"]["terminated"]["exitCode"] == 4
        assert s["a"]["state"]["terminated"]["reason"] == "Error"
        assert s["a"]["ready"] is False and s["a"]["restartCount"] == 0
        assert "running" in s["b"]["state"] and s["b"]["ready"] is True, s["b"]
        p = cluster.pod(ns, "never")
        assert p["status"]["phase"] == "Running"
        ready = {c["type"]: c for c in p["status"]["conditions"]}
        assert ready["Ready"]["status"] == "False"
        assert ready["Ready"]["message"] == "containers with unready status: [a]", ready
        row = get_pod_row(cluster, ns, "never")
        assert (row["READY"], row["STATUS"], row["RESTARTS"]) == ("1/2", "Error", "0"), row

        touch(release)
        e2e_util.wait_until(lambda: cluster.pod(ns, "never")["status"]["phase"] == "Failed",
                            "phase Failed once b has ended too")
    finally:
        if os.path.exists(release):
            os.remove(release)
    s = statuses_by_name(cluster, ns, "never")
    assert s["b"]["state"]["terminated"]["reason"] == "Completed"
    assert s["a"]["restartCount"] == 0 and s["b"]["restartCount"] == 0
    assert logs(cluster, ns, "never", "-c", "b") == "b done\n"
    row = get_pod_row(cluster, ns, "never")
    assert (row["READY"], row["STATUS"]) == ("0/2", "Error"), row


def test_on_failure_restarts_only_the_failed_container(cluster, ns):
    # `a` fails its first run and succeeds its second: under OnFailure it is restarted once and
    # then left Completed while `b` runs on; the pod succeeds when `b` ends well too.
    runs, release = marker_path("runs"), marker_path("release")
    try:
        apply(cluster, ns, two_containers(
            "onfail",
            f"n=$(cat {runs} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {runs}; "
            "echo run-$n; [ $n -ge 2 ]",
            f"until [ -e {release} ]; do sleep 0.1; done", restartPolicy="OnFailure"))
        s = e2e_util.wait_until(
            lambda: (s := statuses_by_name(cluster, ns, "onfail")).get("a", {}).get("state", {})
            .get("terminated", {}).get("reason") == "Completed" and s,
            "container a to complete its second run", timeout=60)
        assert s["a"]["restartCount"] == 1
        assert s["a"]["lastState"]["terminated"]["exitCode"] == 1
        assert s["a"]["state"]["terminated"]["exitCode"] == 0
        assert "running" in s["b"]["state"] and s["b"]["restartCount"] == 0, s["b"]
        assert cluster.pod(ns, "onfail")["status"]["phase"] == "Running"
        assert logs(cluster, ns, "onfail", "-c", "a") == "run-2\n"
        assert logs(cluster, ns, "onfail", "-c", "a", "--previous") == "run-1\n"
        touch(release)
        e2e_util.wait_until(
            lambda: cluster.pod(ns, "onfail")["status"]["phase"] == "Succeeded",
            "phase Succeeded once b has ended well")
    finally:
        for path in (runs, release):
            if os.path.exists(path):
                os.remove(path)
    assert statuses_by_name(cluster, ns, "onfail")["a"]["restartCount"] == 1
    row = get_pod_row(cluster, ns, "onfail")
    assert (row["READY"], row["STATUS"]) == ("0/2", "Completed"), row


def test_status_column_says_not_ready_when_a_completed_container_leaves_the_pod_unready(
        cluster, ns):
    apply(cluster, ns, two_containers("half", "echo done", "sleep 3600", restartPolicy="Never"))
    e2e_util.wait_until(
        lambda: statuses_by_name(cluster, ns, "half").get("a", {}).get("state", {})
        .get("terminated", {}).get("reason") == "Completed", "container a to complete")
    p = cluster.pod(ns, "half")
    ready = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert p["status"]["phase"] == "Running" and ready["Ready"] == "False", p["status"]
    row = get_pod_row(cluster, ns, "half")
    assert (row["READY"], row["STATUS"]) == ("1/2", "NotReady"), row


# --------------------------------------------------------------------------------------------------
# kubectl logs options: -f, --tail, --since, --since-time, --timestamps, --limit-bytes, --previous

# kubelet writes `--timestamps` with RFC3339NanoFixed: always nine fractional digits, UTC `Z`.
TIMESTAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9})Z (.*)$")


def timestamped(text: str) -> list[tuple[datetime.datetime, str]]:
    """`kubectl logs --timestamps` output as (time, line) pairs; fails on a malformed line."""
    out = []
    for line in text.splitlines():
        m = TIMESTAMPED.match(line)
        assert m, f"not an RFC3339Nano-prefixed log line: {line!r}"
        # Python parses microseconds only; the last three digits are dropped.
        at = datetime.datetime.strptime(m.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f")
        out.append((at.replace(tzinfo=datetime.timezone.utc), m.group(2)))
    return out


def test_logs_follow_streams_new_lines_and_ends_when_the_container_exits(cluster, ns):
    step, done = marker_path("step"), marker_path("done")
    apply(cluster, ns, pod(
        "follow", f"echo first; until [ -e {step} ]; do sleep 0.1; done; echo second; "
                  f"until [ -e {done} ]; do sleep 0.1; done; echo last", restartPolicy="Never"))
    try:
        e2e_util.wait_until(lambda: logs(cluster, ns, "follow") == "first\n", "the first line")
        with e2e_util.StreamReader(cluster.kubectl.popen("-n", ns, "logs", "-f", "follow")) as out:
            deadline = time.monotonic() + e2e_util.EVENTUAL_TIMEOUT
            assert out.readline(deadline) == "first\n", out.stderr
            touch(step)
            assert out.readline(deadline) == "second\n", out.stderr
            # Still following: the container is running, waiting for `done`.
            assert out.process.poll() is None, out.stderr
            touch(done)
            assert out.readline(deadline) == "last\n", out.stderr
            assert out.readline(deadline) is None, "kubectl logs -f went on after the exit"
            assert out.process.wait(timeout=30) == 0, out.stderr
    finally:
        for path in (step, done):
            if os.path.exists(path):
                os.remove(path)
    assert cluster.pod(ns, "follow")["status"]["phase"] == "Succeeded"
    # --tail with -f: the last line so far, then what follows (nothing: the container ended).
    assert logs(cluster, ns, "follow", "-f", "--tail=1") == "last\n"


def test_logs_tail_limit_bytes_and_timestamps(cluster, ns):
    apply(cluster, ns, pod("lines", "for w in one two three four five; do echo $w; done; "
                                    "sleep 3600", terminationGracePeriodSeconds=1))
    everything = "one\ntwo\nthree\nfour\nfive\n"
    e2e_util.wait_until(lambda: logs(cluster, ns, "lines") == everything, "five lines")
    assert logs(cluster, ns, "lines", "--tail=2") == "four\nfive\n"
    assert logs(cluster, ns, "lines", "--tail=0") == ""
    assert logs(cluster, ns, "lines", "--tail=50") == everything
    assert logs(cluster, ns, "lines", "--limit-bytes=6") == "one\ntw"
    assert logs(cluster, ns, "lines", "--limit-bytes=6", "--tail=1") == "five\n"

    stamped = timestamped(logs(cluster, ns, "lines", "--timestamps"))
    assert [text for _, text in stamped] == everything.split()
    times = [at for at, _ in stamped]
    assert times == sorted(times)
    started = datetime.datetime.fromisoformat(
        container_status(cluster, ns, "lines")["state"]["running"]["startedAt"]
        .replace("Z", "+00:00"))
    # startedAt has whole seconds; each line was written after the start and before now.
    assert started <= times[0] and times[-1] <= datetime.datetime.now(datetime.timezone.utc)
    last = timestamped(logs(cluster, ns, "lines", "--timestamps", "--tail=1"))
    assert last == stamped[-1:]


def test_logs_since_leaves_out_older_lines(cluster, ns):
    go = marker_path("go")
    apply(cluster, ns, pod("since", f"echo early; until [ -e {go} ]; do sleep 0.1; done; "
                                    "echo late; sleep 3600", terminationGracePeriodSeconds=1))
    try:
        e2e_util.wait_until(lambda: logs(cluster, ns, "since") == "early\n", "the early line")
        time.sleep(6)  # the gap between the two lines that --since cuts through
        touch(go)
        e2e_util.wait_until(lambda: logs(cluster, ns, "since") == "early\nlate\n",
                            "the late line")
    finally:
        if os.path.exists(go):
            os.remove(go)
    (early, _), (late, _) = timestamped(logs(cluster, ns, "since", "--timestamps"))
    # A window that reaches back past `late` (with 3 s to spare for this command to arrive)
    # but, as the lines are 6 s apart, not to `early`.
    age = (datetime.datetime.now(datetime.timezone.utc) - late).total_seconds()
    assert logs(cluster, ns, "since", f"--since={math.ceil(age) + 3}s") == "late\n"
    assert logs(cluster, ns, "since", "--since=1h") == "early\nlate\n"
    middle = early + (late - early) / 2
    assert logs(cluster, ns, "since", "--since-time=" + middle.strftime("%Y-%m-%dT%H:%M:%SZ")) \
        == "late\n"


def test_logs_previous_shows_the_run_before_the_restart(cluster, ns):
    runs = marker_path("runs")
    apply(cluster, ns, pod("fresh", "echo only run; sleep 3600", terminationGracePeriodSeconds=1),
          pod("again", f"n=$(cat {runs} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {runs}; "
                       "echo run-$n; if [ $n -ge 2 ]; then exec sleep 3600; fi; exit 3",
              terminationGracePeriodSeconds=1))
    try:
        s = e2e_util.wait_until(
            lambda: (s := container_status(cluster, ns, "again")).get("restartCount", 0) >= 1
            and "running" in s.get("state", {}) and s, "the second run", timeout=60)
    finally:
        if os.path.exists(runs):
            os.remove(runs)
    assert s["restartCount"] == 1
    e2e_util.wait_until(lambda: logs(cluster, ns, "again") == "run-2\n", "the second run's log")
    assert logs(cluster, ns, "again", "--previous") == "run-1\n"
    assert logs(cluster, ns, "again", "-p", "--tail=5") == "run-1\n"
    [(at, text)] = timestamped(logs(cluster, ns, "again", "--previous", "--timestamps"))
    assert text == "run-1"
    finished = datetime.datetime.fromisoformat(
        s["lastState"]["terminated"]["finishedAt"].replace("Z", "+00:00"))
    assert at < finished + datetime.timedelta(seconds=1)

    # A container that never restarted has no previous run: kubelet's message.
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/fresh", "--timeout=60s")
    out = cluster.kubectl("-n", ns, "logs", "fresh", "--previous", check=False)
    assert out.returncode != 0
    assert out.stderr.strip() == ('Error from server (BadRequest): previous terminated container '
                                  '"main" in pod "fresh" not found'), out.stderr


# --------------------------------------------------------------------------------------------------
# kubectl describe pod, kubectl get pods -o wide


def describe(cluster, ns, name) -> str:
    return cluster.kubectl("-n", ns, "describe", "pod", name).stdout


def described(text: str, key: str, indent: int = 0) -> list[str]:
    """The values of every `key:` line at `indent` in `kubectl describe` output."""
    pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(?:\s+(.*?))?\s*$")
    return [m.group(1) or "" for line in text.splitlines() if (m := pattern.match(line))]


def described_one(text: str, key: str, indent: int = 0) -> str:
    values = described(text, key, indent)
    assert len(values) == 1, f"{key!r} at indent {indent}: {values}\n{text}"
    return values[0]


def section(text: str, title: str) -> list[str]:
    """The lines of a top-level section (`Conditions:`, `Events:`), up to the next one."""
    lines = text.splitlines()
    start = lines.index(title) + 1 if title in lines else None
    assert start is not None, f"no {title!r} section:\n{text}"
    end = next((i for i in range(start, len(lines))
                if lines[i] and not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def section_table(text: str, title: str) -> list[dict[str, str]]:
    """A table section of `kubectl describe` (Conditions, Events) as rows of {column: cell}."""
    lines = [line for line in section(text, title) if not set(line.strip()) <= {"-", " "}]
    _, rows = e2e_util.parse_table("\n".join(lines))
    return rows


def container_block(text: str, container: str) -> str:
    """One container's lines under `Containers:`, dedented to its fields."""
    lines = section(text, "Containers:")
    start = lines.index(f"  {container}:") + 1
    end = next((i for i in range(start, len(lines)) if re.match(r"^  \S", lines[i])), len(lines))
    return "\n".join(line[4:] for line in lines[start:end])


def test_describe_pod_shows_a_running_pod_like_upstream(cluster, ns):
    apply(cluster, ns, pod("shown", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={"env": [{"name": "MODE", "value": "demo"}]}))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/shown", "--timeout=60s")
    text = e2e_util.wait_until(
        lambda: (t := describe(cluster, ns, "shown")) and "Started container main" in t and t,
        "describe to show the Started event")
    assert described_one(text, "Name") == "shown"
    assert described_one(text, "Namespace") == ns
    assert described_one(text, "Priority") == "0"
    assert described_one(text, "Node") == f"{cluster.node}/127.0.0.1"
    assert described_one(text, "Status") == "Running"
    assert described_one(text, "IP") == "127.0.0.1"
    assert section(text, "IPs:") == ["  IP:  127.0.0.1"]
    start = described_one(text, "Start Time")
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", start), start

    main = container_block(text, "main")
    assert described_one(main, "State") == "Running"
    assert re.fullmatch(r"\w{3}, .*", described_one(main, "Started", indent=2))
    assert described_one(main, "Ready") == "True"
    assert described_one(main, "Restart Count") == "0"
    assert described(main, "Last State") == []
    assert described_one(main, "Image") == "host"
    assert described_one(main, "MODE", indent=2) == "demo"

    conditions = {row["Type"]: row["Status"] for row in section_table(text, "Conditions:")}
    assert conditions == {"PodScheduled": "True", "PodReadyToStartContainers": "True",
                          "Initialized": "True", "Ready": "True", "ContainersReady": "True"}

    events = section_table(text, "Events:")
    assert {(e["Type"], e["Reason"], e["From"], e["Message"]) for e in events} >= {
        ("Normal", "Scheduled", "default-scheduler",
         f"Successfully assigned {ns}/shown to {cluster.node}"),
        ("Normal", "Started", "kubelet", "Started container main"),
    }, events


def test_describe_pod_shows_the_last_state_of_a_restarted_container(cluster, ns):
    runs = marker_path("runs")
    apply(cluster, ns, pod("restarted", f"n=$(cat {runs} 2>/dev/null || echo 0); n=$((n+1)); "
                                        f"echo $n > {runs}; if [ $n -ge 2 ]; then exec sleep 3600; "
                                        "fi; exit 3", terminationGracePeriodSeconds=1))
    try:
        e2e_util.wait_until(
            lambda: (s := container_status(cluster, ns, "restarted")).get("restartCount") == 1
            and s.get("ready"), "the second run, ready", timeout=60)
    finally:
        if os.path.exists(runs):
            os.remove(runs)
    uid = cluster.pod(ns, "restarted")["metadata"]["uid"]
    text = e2e_util.wait_until(
        lambda: (t := describe(cluster, ns, "restarted")) and "(x2 over" in t and t,
        "describe to count two Started events")
    main = container_block(text, "main")
    assert described_one(main, "State") == "Running"
    assert described_one(main, "Last State") == "Terminated"
    last = main.split("Last State:", 1)[1].split("\nReady:", 1)[0]
    assert described_one(last, "Reason", indent=2) == "Error"
    assert described_one(last, "Exit Code", indent=2) == "3"
    assert described(last, "Started", indent=2) and described(last, "Finished", indent=2)
    assert described_one(main, "Ready") == "True"
    assert described_one(main, "Restart Count") == "1"

    events = section_table(text, "Events:")
    backoff = [e for e in events if e["Reason"] == "BackOff"]
    assert backoff and backoff[0]["Type"] == "Warning" and backoff[0]["From"] == "kubelet", events
    assert backoff[0]["Message"] == \
        f"Back-off restarting failed container main in pod restarted_{ns}({uid})"
    started = [e for e in events if e["Reason"] == "Started"]
    assert len(started) == 1 and re.fullmatch(r"\S+ \(x2 over \S+\)", started[0]["Age"]), events


def test_events_are_named_by_their_time_so_describe_lists_scheduled_first(cluster, ns):
    apply(cluster, ns, pod("ordered", "sleep 3600", terminationGracePeriodSeconds=1))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/ordered", "--timeout=60s")
    items = e2e_util.wait_until(
        lambda: (e := events(cluster, ns, "ordered")) and {"Scheduled", "Started"}
        <= {x["reason"] for x in e} and e, "the Scheduled and Started events")
    for event in items:
        name = event["metadata"]["name"]
        m = re.fullmatch(r"ordered\.([0-9a-f]+)", name)
        assert m, name
        at = datetime.datetime.fromtimestamp(int(m.group(1), 16) / 1e9, datetime.timezone.utc)
        stamp = datetime.datetime.fromisoformat(event["firstTimestamp"].replace("Z", "+00:00"))
        assert abs((at - stamp).total_seconds()) < 60, (name, event["firstTimestamp"])
    reasons = [e["Reason"] for e in section_table(describe(cluster, ns, "ordered"), "Events:")]
    assert reasons.index("Scheduled") < reasons.index("Started"), reasons


def test_a_pod_runs_as_the_default_service_account(cluster, ns):
    apply(cluster, ns, pod("sa", "sleep 3600", terminationGracePeriodSeconds=1))
    assert cluster.pod(ns, "sa")["spec"].get("serviceAccountName") == "default"
    assert described_one(describe(cluster, ns, "sa"), "Service Account") == "default"


WIDE_COLUMNS = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                "READINESS GATES"]


def wide_table(cluster, ns, *names) -> tuple[list[str], dict[str, dict[str, str]]]:
    """`kubectl get pods -o wide` as (columns, {pod: {column: cell}}); columns are split at
    runs of two or more spaces (`NOMINATED NODE` is one column)."""
    text = cluster.kubectl("-n", ns, "get", "pods", *names, "-o", "wide").stdout
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    starts = [s for s, _ in spans] + [None]
    rows = {}
    for line in lines[1:]:
        cells = {name: line[starts[i]:starts[i + 1]].strip() for i, (_, name) in enumerate(spans)}
        rows[cells["NAME"]] = cells
    return [name for _, name in spans], rows


def test_get_pods_wide_shows_ip_node_and_none(cluster, ns):
    apply(cluster, ns, pod("placed", "sleep 3600", terminationGracePeriodSeconds=1),
          pod("nowhere", "sleep 3600", nodeSelector={"e2e.ledge.dev/no-such-node": "x"}))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/placed", "--timeout=60s")
    columns, rows = wide_table(cluster, ns)
    assert columns == WIDE_COLUMNS
    placed = rows["placed"]
    assert (placed["READY"], placed["STATUS"], placed["RESTARTS"]) == ("1/1", "Running", "0")
    assert re.fullmatch(r"\d+s|\d+m\d*s?", placed["AGE"]), placed
    assert placed["IP"] == "127.0.0.1" and placed["NODE"] == cluster.node
    assert placed["NOMINATED NODE"] == "<none>" and placed["READINESS GATES"] == "<none>"
    nowhere = rows["nowhere"]
    assert (nowhere["READY"], nowhere["STATUS"]) == ("0/1", "Pending"), nowhere
    assert (nowhere["IP"], nowhere["NODE"], nowhere["NOMINATED NODE"],
            nowhere["READINESS GATES"]) == ("<none>",) * 4, nowhere
    # The same columns, without a header, through an older kubectl.
    old = cluster.kubectl("-n", ns, "get", "pod", "placed", "-o", "wide", "--no-headers",
                          version="1.27").stdout.split()
    assert old[:3] == ["placed", "1/1", "Running"] and old[5:] == [
        "127.0.0.1", cluster.node, "<none>", "<none>"], old


def test_readiness_gates_hold_back_ready_and_show_in_wide_output(cluster, ns):
    gate = "e2e.ledge.dev/gate"
    apply(cluster, ns, pod("gated", "sleep 3600", terminationGracePeriodSeconds=1,
                           readinessGates=[{"conditionType": gate}]))

    def conditions():
        return {c["type"]: c for c in cluster.pod(ns, "gated")["status"].get("conditions", [])}
    ready = e2e_util.wait_until(
        lambda: (c := conditions()).get("ContainersReady", {}).get("status") == "True" and c,
        "the containers to be ready")
    _, rows = wide_table(cluster, ns, "gated")
    gates_before = rows["gated"]["READINESS GATES"]
    cluster.kubectl("-n", ns, "patch", "pod", "gated", "--subresource=status", "--type=strategic",
                    "-p", '{"status": {"conditions": [{"type": "%s", "status": "True"}]}}' % gate)
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/gated", "--timeout=60s")
    _, rows = wide_table(cluster, ns, "gated")
    assert gates_before == "0/1"
    assert ready["Ready"]["status"] == "False", ready
    assert ready["Ready"].get("reason") == "ReadinessGatesNotReady", ready
    assert ready["Ready"].get("message") == \
        f'corresponding condition of pod readiness gate "{gate}" does not exist.', ready
    assert rows["gated"]["READINESS GATES"] == "1/1", rows


# --------------------------------------------------------------------------------------------------
# a pod that fits on no node


NO_VICTIMS = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."


def failed_scheduling(cluster, ns, name) -> str:
    """The message of the pod's FailedScheduling event, once there is one."""
    def message():
        found = events(cluster, ns, name, "FailedScheduling")
        return found and found[0]
    event = e2e_util.wait_until(message, f"a FailedScheduling event for {name}")
    assert event["type"] == "Warning" and event["source"]["component"] == "default-scheduler"
    return event["message"]


def test_a_pod_asking_for_more_memory_than_the_node_has_stays_pending(cluster, ns):
    marker = f"ledge-e2e-{uuid.uuid4().hex}"
    apply(cluster, ns, pod("runs", f"sleep 3600; : {marker}", terminationGracePeriodSeconds=1))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/runs", "--timeout=60s")
    allocatable = cluster.kubectl.json("get", "node", cluster.node)["status"]["allocatable"]
    assert allocatable["memory"].endswith("Ki"), allocatable
    too_much = f"{int(allocatable['memory'][:-2]) * 2}Ki"
    apply(cluster, ns, pod("greedy", "sleep 3600",
                           container={"resources": {"requests": {"memory": too_much}}}))

    # Upstream's FitError text, then what preemption found (nothing of lower priority).
    message = failed_scheduling(cluster, ns, "greedy")
    assert message.startswith("0/1 nodes are available: 1 Insufficient memory."), message
    assert message == f"0/1 nodes are available: 1 Insufficient memory. {NO_VICTIMS}"
    p = cluster.pod(ns, "greedy")
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName"), p
    [scheduled] = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (scheduled["status"], scheduled["reason"], scheduled["message"]) == \
        ("False", "Unschedulable", message), scheduled
    _, rows = wide_table(cluster, ns, "greedy")
    assert (rows["greedy"]["STATUS"], rows["greedy"]["NODE"]) == ("Pending", "<none>"), rows
    text = describe(cluster, ns, "greedy")
    assert described_one(text, "Node") == "<none>"
    assert {(e["Type"], e["Reason"], e["From"], e["Message"])
            for e in section_table(text, "Events:")} == {
        ("Warning", "FailedScheduling", "default-scheduler", message)}
    assert {row["Type"]: row["Status"] for row in section_table(text, "Conditions:")} == \
        {"PodScheduled": "False"}

    # The node's other pods carry on, and a pod that fits is still placed.
    apply(cluster, ns, pod("modest", "sleep 3600", terminationGracePeriodSeconds=1,
                           container={"resources": {"requests": {"memory": "1Mi"}}}))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/modest", "--timeout=60s")
    s = container_status(cluster, ns, "runs")
    assert "running" in s["state"] and s["restartCount"] == 0, s
    assert len(processes(marker)) == 1
    assert cluster.pod(ns, "greedy")["status"]["phase"] == "Pending"
    cluster.kubectl("-n", ns, "delete", "pod", "greedy", "--wait=false")


def test_a_pod_asking_for_more_cpu_than_the_node_has_stays_pending(cluster, ns):
    cpus = cluster.kubectl.json("get", "node", cluster.node)["status"]["allocatable"]["cpu"]
    apply(cluster, ns, pod("hungry", "sleep 3600", container={
        "resources": {"requests": {"cpu": str(int(cpus) * 4)}}}))
    message = failed_scheduling(cluster, ns, "hungry")
    assert message == f"0/1 nodes are available: 1 Insufficient cpu. {NO_VICTIMS}"
    assert cluster.pod(ns, "hungry")["status"]["phase"] == "Pending"
    cluster.kubectl("-n", ns, "delete", "pod", "hungry", "--wait=false")


def test_every_resource_short_on_the_node_is_named(cluster, ns):
    allocatable = cluster.kubectl.json("get", "node", cluster.node)["status"]["allocatable"]
    apply(cluster, ns, pod("both", "sleep 3600", container={"resources": {"requests": {
        "cpu": str(int(allocatable["cpu"]) * 4),
        "memory": f"{int(allocatable['memory'][:-2]) * 2}Ki"}}}))
    message = failed_scheduling(cluster, ns, "both")
    cluster.kubectl("-n", ns, "delete", "pod", "both", "--wait=false")
    assert message == \
        f"0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. {NO_VICTIMS}"
