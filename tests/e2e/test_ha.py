"""High availability on etcd: two `ledge server`s on a real three-member etcd cluster (Debian's
`etcd`, every member its own process on loopback) with three agents that know both servers.

What an operator of an HA control plane relies on:
- both servers serve one cluster (one CA, the same objects, both listed in `kubernetes`);
- killing the server that holds the controller Lease (`kill -9`, under a steady write load)
  hands the controllers to the other; a Deployment scaled afterwards converges, every write
  acknowledged before the kill is there, and the agents keep their pods and report to the
  survivor;
- one etcd member down changes nothing; two down fail writes with 503 while reads keep answering
  (with a warning) and workloads keep running; with the members back, writes resume and nothing
  is lost; an agent told only one server learns the others from the cluster.

The move from the embedded store to etcd (`ledge datastore migrate`) is in test_migrate.py.

Pods use the `process` runtime with a marker unique to this run in their command, so the tests
can see the real processes.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import conftest
import e2e_util
from e2e_util import Etcd, fingerprint, processes, running_pods, wait_until

RUN = secrets.token_hex(4)
RUN_MARKER = f"ledge-ha-{RUN}"
NODES = ("ha-a", "ha-b", "ha-c")
# An agent started with only one server's URL, which must learn the others from the cluster.
LEARNER = "ha-learner"
JOIN_TIMEOUT = 90.0
POD_TIMEOUT = 90.0
# How long the survivors are given to take over; generous: this bounds a broken system, it does
# not measure a working one (bench/run --ha does).
TAKEOVER_TIMEOUT = 60.0
LEASE = "ledge-controller-manager"

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd is not installed (Debian package etcd-server)")


# --------------------------------------------------------------------------------------------------
# the HA cluster


@dataclass
class HA:
    etcd: Etcd
    servers: list[conftest.Server]
    kubectl: conftest.Kubectl
    agents: dict[str, e2e_util.Agent]
    base: Path
    token: str
    extra_logs: dict = field(default_factory=dict)

    def logs(self) -> dict:
        logs = {f"ledge server {i} log": (s.log_path, s.process)
                for i, s in enumerate(self.servers)}
        for name, agent in self.agents.items():
            logs[f"ledge agent {name} log"] = (agent.log, agent.process)
        return {**logs, **self.extra_logs}

    def on(self, server: conftest.Server) -> conftest.Kubectl:
        """kubectl against one server (every server's admin kubeconfig works on every other)."""
        return conftest.Kubectl(self.kubectl.path, server.kubeconfig, self.base / "kubectl-home")

    def holder(self, via: conftest.Server) -> str:
        lease = self.on(via).json("-n", "kube-system", "get", "lease", LEASE)
        return lease["spec"].get("holderIdentity") or ""


def server_identity(server: conftest.Server) -> str:
    return (server.data_dir / "identity").read_text().strip()


def start_ha_server(ledge_bin, kubectl_path, base: Path, etcd: Etcd, token: str | None):
    extra = ["--datastore-endpoint", etcd.url]
    if token:
        extra += ["--token", token]
    return conftest.start_server(ledge_bin, kubectl_path, base, *extra)


@pytest.fixture(scope="module")
def ha(request, ledge_bin, kubectl_path, tmp_path_factory) -> HA:
    base = tmp_path_factory.mktemp("ledge-ha")
    etcd = Etcd(base / "etcd", 3)
    servers: list[conftest.Server] = []
    agents: dict[str, e2e_util.Agent] = {}
    try:
        first = start_ha_server(ledge_bin, kubectl_path, base / "server-0", etcd, None)
        servers.append(first)
        token = (first.data_dir / "token").read_text().strip()
        servers.append(start_ha_server(ledge_bin, kubectl_path, base / "server-1", etcd, token))
        kubectl = conftest.Kubectl(kubectl_path, first.kubeconfig, base / "kubectl-home")
        join = e2e_util.create_token(ledge_bin, first.data_dir, "--ttl", "1h")

        @dataclass
        class Both:
            url: str

        urls = Both(",".join(s.url for s in servers))
        for name in NODES:
            agents[name] = e2e_util.Agent(ledge_bin, urls, base / name, name,
                                          base / f"{name}.log", token=join,
                                          extra=("--restart-backoff", "1s"))
        cluster = HA(etcd, servers, kubectl, agents, base, token)
        cluster.extra_logs = {f"etcd m{i} log": (etcd.log(i), etcd.procs[i]) for i in range(3)}
        wait_until(lambda: all(e2e_util.node_ready(kubectl, n) for n in NODES),
                   "the three agents to be Ready", timeout=JOIN_TIMEOUT)
        yield cluster
    finally:
        for agent in agents.values():
            agent.stop()
        for srv in servers:
            srv.stop()
        etcd.stop()
        e2e_util.kill_processes(RUN_MARKER)
        if request.session.testsfailed:
            for title, (path, _) in {**{f"server {i}": (s.log_path, None)
                                        for i, s in enumerate(servers)},
                                     **{n: (a.log, None) for n, a in agents.items()}}.items():
                conftest._report(request.config, f"{title} log",
                                 e2e_util.file_tail(path, conftest.LOG_TAIL_LINES))


@pytest.fixture(autouse=True)
def _ha_logs_on_failure(request, ha):
    conftest.attach_logs_on_failure(request.node, ha.logs())
    yield


@pytest.fixture
def ns(request, ha) -> str:
    test = request.node.originalname.removeprefix("test_").replace("_", "-")
    name = e2e_util.unique_name(f"ha-{test}", max_len=40)
    ha.kubectl("create", "namespace", name)
    yield name
    ha.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


# --------------------------------------------------------------------------------------------------
# the tests


def test_both_servers_serve_one_cluster(ha, ns):
    a, b = ha.on(ha.servers[0]), ha.on(ha.servers[1])
    a("-n", ns, "create", "configmap", "shared", "--from-literal=k=v")
    via_a = a.json("-n", ns, "get", "configmap", "shared")
    via_b = wait_until(lambda: b.json("-n", ns, "get", "configmap", "shared"),
                       "server 1 to serve what server 0 wrote")
    assert via_b["metadata"]["uid"] == via_a["metadata"]["uid"]
    assert via_b["data"] == {"k": "v"}
    # One CA: both servers wrote the same one into their data dirs.
    assert ((ha.servers[0].data_dir / "tls" / "ca.crt").read_text()
            == (ha.servers[1].data_dir / "tls" / "ca.crt").read_text())

    # Both are listed where agents and in-cluster clients look for the API.
    def listed():
        subsets = a.json("-n", "default", "get", "endpoints", "kubernetes").get("subsets") or []
        ports = {p["port"] for s in subsets for p in s["ports"]}
        return ports == {s.port for s in ha.servers}
    wait_until(listed, "both servers in the kubernetes Endpoints")

    # Exactly one of them holds the controller Lease.
    holder = ha.holder(ha.servers[0])
    assert holder in {server_identity(s) for s in ha.servers}, holder


def test_a_second_server_with_the_wrong_token_is_refused(ha, ledge_bin, kubectl_path, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    result = subprocess.run(
        [str(ledge_bin), "server", "--data-dir", str(data), "--https-listen-port",
         str(conftest._free_port()), "--bind-address", "127.0.0.1",
         "--datastore-endpoint", ha.etcd.url, "--token", "not-the-cluster-token"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert "refused" in result.stderr and "--token" in result.stderr, result.stderr
    assert not (data / "tls" / "ca.crt").exists()


def test_a_server_waits_for_an_unreachable_etcd_and_says_so(ha, ledge_bin, kubectl_path,
                                                         tmp_path):
    """etcd down at start: a clear message and retries, not a crash loop; the server starts once
    etcd is there."""
    etcd = Etcd(tmp_path / "etcd", 1)
    etcd.kill(0)
    log_path = tmp_path / "server.log"
    data = tmp_path / "data"
    data.mkdir()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(ledge_bin), "server", "--data-dir", str(data), "--https-listen-port",
             str(e2e_util.free_port()), "--bind-address", "127.0.0.1",
             "--datastore-endpoint", etcd.url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        wait_until(lambda: "cannot reach etcd at" in log_path.read_text(),
                   "the server to say it cannot reach etcd", timeout=60)
        text = log_path.read_text()
        assert "--datastore-endpoint" in text and "retrying" in text, text
        time.sleep(3)
        assert proc.poll() is None, f"the server gave up:\n{log_path.read_text()}"
        etcd.revive(0)
        wait_until(lambda: "ledge server is ready" in log_path.read_text(),
                   "the server to start once etcd is up", timeout=60)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)
        etcd.stop()


class Writer(threading.Thread):
    """Creates ConfigMaps one after another, alternating between the servers, and remembers
    those the API acknowledged."""

    def __init__(self, ha: HA, ns: str):
        super().__init__(daemon=True)
        self.clients = [ha.on(s) for s in ha.servers]
        self.ns = ns
        self.acked: list[str] = []
        self.failed = 0
        self.stop_flag = threading.Event()

    def run(self):
        i = 0
        while not self.stop_flag.is_set():
            name = f"w-{i:05d}"
            client = self.clients[i % len(self.clients)]
            r = client("-n", self.ns, "create", "configmap", name, "--from-literal=i=x",
                       check=False, timeout=30)
            if r.returncode == 0:
                self.acked.append(name)
            else:
                self.failed += 1
            i += 1

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=60)


def test_killing_the_leader_hands_over_and_loses_nothing(ha, ns, ledge_bin, kubectl_path):
    kubectl = ha.kubectl
    mark = f"{RUN_MARKER}-web"
    kubectl("-n", ns, "apply", "-f", "-",
            input=e2e_util.manifest(e2e_util.process_deployment("web", 3, f"sleep 3600; : {mark}")))
    wait_until(lambda: len(running_pods(kubectl, ns, "web")) == 3, "3 web pods Running",
               timeout=POD_TIMEOUT)
    before = {p["metadata"]["name"]: fingerprint(p) for p in running_pods(kubectl, ns, "web")}
    processes_before = set(processes(mark))
    assert len(processes_before) == 3, processes_before

    writer = Writer(ha, ns)
    writer.start()
    wait_until(lambda: len(writer.acked) >= 10, "the writer to get going")

    identities = {server_identity(s): s for s in ha.servers}
    leader = identities[ha.holder(ha.servers[0])]
    survivor = next(s for s in ha.servers if s is not leader)
    on_survivor = ha.on(survivor)

    # One more agent is told only the leader's address: it must learn the survivor from the
    # cluster (the `kubernetes` Endpoints, kept in servers.json) to outlive the kill.
    learner_dir = ha.base / LEARNER
    ha.agents[LEARNER] = e2e_util.Agent(
        ledge_bin, leader, learner_dir, LEARNER, ha.base / f"{LEARNER}.log",
        token=e2e_util.create_token(ledge_bin, ha.servers[0].data_dir, "--ttl", "1h"),
        extra=("--restart-backoff", "1s"))
    wait_until(lambda: e2e_util.node_ready(kubectl, LEARNER), f"{LEARNER} to be Ready",
               timeout=JOIN_TIMEOUT)

    def learned():
        stored = learner_dir / "servers.json"
        return stored.exists() and survivor.url in json.loads(stored.read_text())["servers"]
    wait_until(learned, f"{LEARNER} to learn the other server's address")

    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait(timeout=10)
    killed_at = time.monotonic()

    wait_until(lambda: ha.holder(survivor) == server_identity(survivor),
               "the surviving server to take the controller Lease", timeout=TAKEOVER_TIMEOUT)
    took = time.monotonic() - killed_at
    print(f"controller Lease taken over {took:.1f} s after the kill")

    # Controllers run on the survivor: a scale after the kill converges.
    on_survivor("-n", ns, "scale", "deployment", "web", "--replicas=5")
    wait_until(lambda: len(running_pods(on_survivor, ns, "web")) == 5,
               "5 web pods Running after the scale", timeout=POD_TIMEOUT)
    writer.stop()

    # Every acknowledged write is there.
    names = {i["metadata"]["name"]
             for i in on_survivor.json("-n", ns, "get", "configmaps")["items"]}
    missing = [n for n in writer.acked if n not in names]
    assert not missing, f"acknowledged but lost: {missing[:10]} of {len(writer.acked)}"

    # The pods from before the kill were never touched, and their processes still run.
    after = {p["metadata"]["name"]: fingerprint(p) for p in running_pods(on_survivor, ns, "web")}
    for name, print_ in before.items():
        assert after.get(name) == print_, f"{name} changed: {print_} -> {after.get(name)}"
    assert processes_before <= set(processes(mark))

    # The agents report to the survivor: their Leases keep being renewed and the nodes Ready.
    def renewed_since_kill():
        for node in (*NODES, LEARNER):
            lease = on_survivor.json("-n", "kube-node-lease", "get", "lease", node)
            if not e2e_util.node_ready(on_survivor, node):
                return False
            if lease["metadata"]["resourceVersion"] == renewals.get(node):
                return False
        return True
    renewals = {n: on_survivor.json("-n", "kube-node-lease", "get", "lease", n)
                ["metadata"]["resourceVersion"] for n in (*NODES, LEARNER)}
    wait_until(renewed_since_kill, "every node's Lease renewed after the kill, nodes Ready",
               timeout=TAKEOVER_TIMEOUT)

    # The killed server comes back on its data dir and serves the same cluster again.
    restarted = conftest.start_server(
        ledge_bin, kubectl_path, leader.data_dir.parent / "again",
        "--datastore-endpoint", ha.etcd.url, data_dir=leader.data_dir)
    ha.servers[ha.servers.index(leader)] = restarted
    assert ha.on(restarted).json("-n", ns, "get", "deployment", "web")["spec"]["replicas"] == 5


def test_etcd_losing_members(ha, ns):
    kubectl = ha.on(ha.servers[0])
    mark = f"{RUN_MARKER}-quorum"
    kubectl("-n", ns, "apply", "-f", "-",
            input=e2e_util.manifest(e2e_util.process_deployment("q", 2, f"sleep 3600; : {mark}")))
    wait_until(lambda: len(running_pods(kubectl, ns, "q")) == 2, "2 q pods Running",
               timeout=POD_TIMEOUT)
    pids = set(processes(mark))

    # One member down: nothing a user notices.
    ha.etcd.kill(0)
    kubectl("-n", ns, "create", "configmap", "one-down", "--from-literal=k=v")
    assert kubectl.json("-n", ns, "get", "configmap", "one-down")["data"] == {"k": "v"}

    # Two down: no quorum. Writes fail with 503; reads answer from the cache with a warning.
    ha.etcd.kill(1)

    def write_refused():
        # -v=6 logs each response's status line: the write must be a 503, not just any error.
        r = kubectl("-v=6", "-n", ns, "create", "configmap",
                    f"no-quorum-{secrets.token_hex(2)}", "--from-literal=k=v", check=False,
                    timeout=60)
        return r if r.returncode != 0 else None
    refused = wait_until(write_refused, "a write without quorum to be refused", timeout=60)
    assert " 503 Service Unavailable " in refused.stderr, refused.stderr
    # The message tells the operator where to look.
    assert "storage is unavailable: etcd is unavailable:" in refused.stderr, refused.stderr
    assert "Debug" not in refused.stderr and "tonic::" not in refused.stderr, refused.stderr

    def warned_read():
        r = kubectl("-n", ns, "get", "configmap", "one-down", "-o", "name", check=False)
        return r if r.returncode == 0 and "datastore is unavailable" in r.stderr else None
    read = wait_until(warned_read, "a read to be answered from the cache with a warning")
    assert read.stdout.strip() == "configmap/one-down"
    # The workloads do not notice.
    assert set(processes(mark)) == pids

    # Quorum back: writes succeed again and nothing is lost.
    ha.etcd.revive(0)
    ha.etcd.revive(1)

    def write_accepted():
        r = kubectl("-n", ns, "create", "configmap", "after", "--from-literal=k=v",
                    check=False, timeout=60)
        return r.returncode == 0 or "AlreadyExists" in r.stderr
    wait_until(write_accepted, "writes to succeed with quorum back", timeout=90)
    names = {i["metadata"]["name"] for i in kubectl.json("-n", ns, "get", "configmaps")["items"]}
    assert {"one-down", "after"} <= names
    assert len(running_pods(kubectl, ns, "q")) == 2
    assert set(processes(mark)) == pids

