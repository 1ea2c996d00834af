"""Pods on a real node: `ledge up` runs a server and an agent in one process, and the agent runs
pods with the `process` runtime. What a kubectl user sees is checked: phases, container states,
restarts with back-off, logs, probes, env and volumes, init containers, deadlines, deletion
that stops the processes, images imported with `ledge image import`.
"""

from __future__ import annotations

import os
import subprocess
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
