"""Joining: `ledge token create` on the server, then `ledge agent` as a separate process with its
own data dir. The agent verifies the server against the CA hash in its token, gets a node
certificate through the CSR API, registers its Node (Ready, labelled, with real capacity) and
renews its Lease. Bad tokens are refused with a clear message; a bootstrap token can do nothing
but ask for a certificate, and a node certificate reaches only its own Node and Lease and what
its pods need (the Node authorizer). An agent whose server is unreachable waits for it, saying
so once, and joins when it appears; stopped or killed meanwhile, it leaves nothing half-written.

Every agent here is tainted `ledge.dev/e2e-agent=true:NoSchedule` so the server's scheduler puts
no other test's pods on it, and its Node is deleted at the end.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest

import e2e_util

AGENT_TAINT = "ledge.dev/e2e-agent=true:NoSchedule"


@pytest.fixture
def agents():
    """Starts agents (`agents(...)`) and stops every one at the end."""
    started: list[e2e_util.Agent] = []

    def start(*args, **kwargs) -> e2e_util.Agent:
        agent = e2e_util.Agent(*args, taints=(AGENT_TAINT,), **kwargs)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def node_name(kubectl):
    """A unique node name; the Node and its Lease are deleted afterwards."""
    name = e2e_util.unique_name("e2e-agent", max_len=40)
    yield name
    kubectl("delete", "node", name, "--ignore-not-found", "--wait=false")
    kubectl("delete", "lease", name, "-n", "kube-node-lease", "--ignore-not-found", "--wait=false")


@pytest.fixture
def token(ledge_bin, server):
    """A fresh join token, deleted afterwards."""
    value = e2e_util.create_token(ledge_bin, server.data_dir, "--ttl", "1h",
                                  "--description", "e2e join")
    yield value
    subprocess.run([str(ledge_bin), "token", "delete", "--data-dir", str(server.data_dir),
                    token_id(value)], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)


def token_id(token: str) -> str:
    return token.split("::", 1)[1].split(".", 1)[0]


def ca_pem(server) -> bytes:
    return (server.data_dir / "tls" / "ca.crt").read_bytes()


def api_request(server, path: str, bearer: str | None = None, *, method: str = "GET",
                body: dict | None = None, pki: Path | None = None) -> tuple[int, bytes]:
    """A raw HTTPS request to the server, trusting only its CA; with `pki` (an agent's
    `<data dir>/pki`), authenticated by that node's client certificate."""
    url = urlparse(server.url)
    context = ssl.create_default_context(cadata=ca_pem(server).decode())
    if pki is not None:
        context.load_cert_chain(certfile=pki / "node.crt", keyfile=pki / "node.key")
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def lease_renew_time(kubectl, name: str) -> str:
    lease = kubectl.json("get", "lease", name, "-n", "kube-node-lease")
    return lease["spec"]["renewTime"]


def csrs_of(kubectl, tid: str) -> list[dict]:
    items = kubectl.json("get", "csr")["items"]
    return [c for c in items if c["spec"].get("username") == f"system:bootstrap:{tid}"]


def test_token_create_prints_a_pinned_token_and_list_shows_it(ledge_bin, server, token):
    digest = hashlib.sha256(ca_pem(server)).hexdigest()
    assert token.startswith(f"K10{digest}::")
    tid, secret = token.split("::", 1)[1].split(".")
    assert len(tid) == 6 and len(secret) == 16
    listed = subprocess.run([str(ledge_bin), "token", "list", "--data-dir", str(server.data_dir)],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert listed.returncode == 0, listed.stderr
    line = next((l for l in listed.stdout.splitlines() if l.startswith(tid)), None)
    assert line is not None, listed.stdout
    assert "e2e join" in line and ("59m" in line or "1h" in line), line
    assert secret not in listed.stdout


def test_agent_joins_registers_renews_and_restarts_without_token(
        ledge_bin, server, kubectl, token, node_name, agents, tmp_path):
    data_dir = tmp_path / "agent"
    agent = agents(ledge_bin, server, data_dir, node_name, tmp_path / "agent.log", token=token,
                   extra=("--node-label", "e2e.ledge.dev/join=yes"))
    node = e2e_util.wait_until(lambda: e2e_util.node_ready(kubectl, node_name),
                               f"node {node_name} Ready")

    labels = node["metadata"]["labels"]
    assert labels["e2e.ledge.dev/join"] == "yes"
    assert labels["kubernetes.io/hostname"] == node_name
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["kubernetes.io/arch"] in ("amd64", "arm64")
    assert labels["node.ledge.dev/runtime.process"] == "true"
    assert {"key": "ledge.dev/e2e-agent", "value": "true", "effect": "NoSchedule"} \
        in node["spec"]["taints"]
    status = node["status"]
    assert 1 <= int(status["capacity"]["cpu"]) <= (os.cpu_count() or 1)
    assert status["capacity"]["pods"] == "110"
    for resource in ("memory", "ephemeral-storage"):
        assert status["capacity"][resource].endswith("Ki"), status["capacity"]
        assert int(status["capacity"][resource][:-2]) > 0
        assert int(status["allocatable"][resource][:-2]) < int(status["capacity"][resource][:-2])
    assert status["nodeInfo"]["kubeletVersion"] == "v1.32.0-ledge"
    assert status["nodeInfo"]["operatingSystem"] == "linux"
    assert {a["type"] for a in status["addresses"]} == {"InternalIP", "Hostname"}
    table = kubectl("get", "node", node_name, "--no-headers").stdout.split()
    assert table[:2] == [node_name, "Ready"], table

    # The Lease is the node's, and it is renewed (every second here).
    lease = kubectl.json("get", "lease", node_name, "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == node_name
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    first = lease["spec"]["renewTime"]
    e2e_util.wait_until(lambda: lease_renew_time(kubectl, node_name) > first,
                        "the lease to be renewed", timeout=15)

    # The certificate came through the CSR API, auto-approved for the bootstrap token.
    csrs = csrs_of(kubectl, token_id(token))
    assert len(csrs) == 1, csrs
    conditions = csrs[0]["status"]["conditions"]
    assert conditions[0]["type"] == "Approved" and conditions[0]["reason"] == "AutoApproved"
    assert csrs[0]["status"]["certificate"]
    _, rows = e2e_util.parse_table(kubectl("get", "csr", csrs[0]["metadata"]["name"]).stdout)
    assert rows[0]["SIGNERNAME"] == "kubernetes.io/kube-apiserver-client-kubelet", rows
    assert rows[0]["REQUESTOR"] == f"system:bootstrap:{token_id(token)}", rows
    assert rows[0]["CONDITION"] == "Approved,Issued", rows
    for name in ("ca.crt", "node.crt", "node.key"):
        assert (data_dir / "pki" / name).stat().st_mode & 0o777 == 0o600, name

    assert agent.stop() == 0, agent.output()

    # Restarted without a token, it reuses its certificate and carries on.
    before = lease_renew_time(kubectl, node_name)
    again = agents(ledge_bin, server, data_dir, node_name, tmp_path / "agent2.log")
    e2e_util.wait_until(lambda: lease_renew_time(kubectl, node_name) > before,
                        "the restarted agent to renew the lease", timeout=15)
    assert again.process.poll() is None, again.output()
    assert "using the stored node certificate" in again.output()
    assert len(csrs_of(kubectl, token_id(token))) == 1
    assert e2e_util.node_ready(kubectl, node_name)
    assert again.stop() == 0, again.output()


def test_a_wrong_token_secret_is_refused_with_401(ledge_bin, server, kubectl, token, node_name,
                                                 agents, tmp_path):
    head, secret = token.rsplit(".", 1)
    forged = f"{head}.{'a' * 16 if secret != 'a' * 16 else 'b' * 16}"
    agent = agents(ledge_bin, server, tmp_path / "agent", node_name, tmp_path / "agent.log",
                   token=forged)
    code = agent.wait_exit()
    out = agent.output()
    assert code != 0, out
    assert "401" in out and "Unauthorized" in out, out
    assert forged not in out
    assert kubectl("get", "node", node_name, "--ignore-not-found", "-o", "name").stdout == ""
    assert not (tmp_path / "agent" / "pki" / "node.crt").exists()


def test_an_expired_token_is_refused_with_401(ledge_bin, server, kubectl, node_name, agents,
                                             tmp_path):
    expired = e2e_util.create_token(ledge_bin, server.data_dir, "--ttl", "1s")
    try:
        time.sleep(2.5)
        agent = agents(ledge_bin, server, tmp_path / "agent", node_name, tmp_path / "agent.log",
                       token=expired)
        code = agent.wait_exit()
        out = agent.output()
        assert code != 0, out
        assert "401" in out and "expired" in out, out
        assert csrs_of(kubectl, token_id(expired)) == []
    finally:
        subprocess.run([str(ledge_bin), "token", "delete", "--data-dir", str(server.data_dir),
                        token_id(expired)], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)


def test_a_token_pinning_another_ca_is_refused_before_authenticating(
        ledge_bin, server, kubectl, token, node_name, agents, tmp_path):
    other = hashlib.sha256(b"not this cluster's CA").hexdigest()
    actual = hashlib.sha256(ca_pem(server)).hexdigest()
    pinned_elsewhere = f"K10{other}::{token.split('::', 1)[1]}"
    agent = agents(ledge_bin, server, tmp_path / "agent", node_name, tmp_path / "agent.log",
                   token=pinned_elsewhere)
    code = agent.wait_exit()
    out = agent.output()
    assert code != 0, out
    assert "does not match" in out and other in out and actual in out, out
    # The (valid) bootstrap token was never presented: no CSR, no Node.
    assert csrs_of(kubectl, token_id(token)) == []
    assert kubectl("get", "node", node_name, "--ignore-not-found", "-o", "name").stdout == ""


def test_bootstrap_tokens_may_only_ask_for_certificates(server, token):
    bearer = token.split("::", 1)[1]
    code, body = api_request(server, "/api/v1/namespaces/default/secrets", bearer)
    assert code == 403, body
    status = json.loads(body)
    assert status["reason"] == "Forbidden"
    assert status["message"] == (
        f'secrets is forbidden: User "system:bootstrap:{token_id(token)}" cannot list resource '
        '"secrets" in API group "" in the namespace "default"')
    code, body = api_request(server, "/api/v1/nodes", bearer)
    assert code == 403, body
    code, body = api_request(server, "/apis/certificates.k8s.io/v1/certificatesigningrequests",
                             bearer)
    assert code == 200, body
    code, body = api_request(server, "/api/v1/namespaces/default/secrets",
                             bearer[:-1] + ("x" if bearer[-1] != "x" else "y"))
    assert code == 401, body
    # The CA is public, and it is what the token pins.
    code, body = api_request(server, "/cacerts")
    assert code == 200
    assert body == ca_pem(server)
    assert token.startswith(f"K10{hashlib.sha256(body).hexdigest()}::")


def pod_bound_to(node: str, name: str, **spec) -> dict:
    """A pod bound to `node` directly (no scheduler), run by the `process` runtime."""
    container = {"name": "main", "image": "host", "command": ["/bin/sh", "-c", "sleep 3600"],
                 **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "runtimeClassName": "process",
                     "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def forbidden(code: int, body: bytes) -> str:
    """The message of a 403 Status."""
    assert code == 403, (code, body)
    status = json.loads(body)
    assert status["reason"] == "Forbidden", status
    return status["message"]


def test_a_node_certificate_reaches_only_its_node_its_lease_and_what_its_pods_need(
        ledge_bin, server, kubectl, token, node_name, agents, tmp_path, ns):
    data_dir = tmp_path / "agent"
    agent = agents(ledge_bin, server, data_dir, node_name, tmp_path / "agent.log", token=token)
    e2e_util.wait_until(lambda: e2e_util.node_ready(kubectl, node_name),
                        f"node {node_name} Ready")
    pki = data_dir / "pki"
    user = f"system:node:{node_name}"

    def as_node(path: str, **kwargs) -> tuple[int, bytes]:
        return api_request(server, path, pki=pki, **kwargs)

    # Another node, without an agent: its pod stays bound to it and is never run.
    other = f"{node_name}-x"
    kubectl("create", "--validate=false", "-f", "-", input=e2e_util.manifest({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": other},
        "spec": {"taints": [{"key": "ledge.dev/e2e-agent", "value": "true",
                             "effect": "NoSchedule"}]}}))
    try:
        def secret(name: str) -> dict:
            return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                    "stringData": {"k": name}}

        kubectl("-n", ns, "create", "--validate=false", "-f", "-", input=e2e_util.manifest(
            secret("mine"), secret("unrelated"), secret("theirs"),
            e2e_util.configmap("mine-cm", {"k": "v"}),
            pod_bound_to(node_name, "mine",
                         container={"env": [{"name": "K", "valueFrom": {
                             "secretKeyRef": {"name": "mine", "key": "k"}}}],
                             "volumeMounts": [{"name": "cm", "mountPath": "/cm"}]},
                         volumes=[{"name": "cm", "configMap": {"name": "mine-cm"}}]),
            pod_bound_to(other, "theirs",
                         container={"envFrom": [{"secretRef": {"name": "theirs"}}]})))

        # The agent runs its pod under these rules: it lists and watches its pods, reads the
        # Secret and ConfigMap they reference, writes pod status and records events.
        e2e_util.wait_until(
            lambda: kubectl.json("-n", ns, "get", "pod", "mine")["status"].get("phase")
            == "Running", "the agent to run its pod")
        events = kubectl("-n", ns, "get", "events", "--field-selector",
                         "involvedObject.name=mine", "-o", "name").stdout
        assert events.strip(), "the agent recorded no events for its pod"

        # Its own Node and Lease; any Node may be read, only its own written.
        code, body = as_node(f"/api/v1/nodes/{node_name}")
        assert code == 200, body
        assert json.loads(body)["metadata"]["name"] == node_name
        code, body = as_node(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                             f"{node_name}")
        assert code == 200, body
        assert json.loads(body)["spec"]["holderIdentity"] == node_name
        assert as_node(f"/api/v1/nodes/{other}")[0] == 200
        message = forbidden(*as_node(f"/api/v1/nodes/{other}", method="DELETE"))
        assert message == (f'nodes "{other}" is forbidden: User "{user}" cannot delete resource '
                           f'"nodes" in API group "" at the cluster scope: node "{node_name}" is '
                           f'not allowed to modify node "{other}"')
        assert kubectl("get", "node", other, "-o", "name").stdout.strip() == f"node/{other}"
        forbidden(*as_node("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
                           f"{other}"))

        # Pods: its own, not another node's; lists only with its node's field selector.
        code, body = as_node(f"/api/v1/namespaces/{ns}/pods/mine")
        assert code == 200, body
        message = forbidden(*as_node(f"/api/v1/namespaces/{ns}/pods/theirs"))
        assert message == (f'pods "theirs" is forbidden: User "{user}" cannot get resource "pods" '
                           f'in API group "" in the namespace "{ns}": no relationship found '
                           f"between node '{node_name}' and this object")
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/pods/theirs", method="DELETE"))
        assert kubectl.json("-n", ns, "get", "pod", "theirs")["metadata"]["name"] == "theirs"
        message = forbidden(*as_node("/api/v1/pods"))
        assert message.endswith(
            f"can only list/watch pods with spec.nodeName={node_name} field selector"), message
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/pods?watch=true"))
        code, body = as_node(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node_name}")
        assert code == 200, body
        assert [p["metadata"]["name"] for p in json.loads(body)["items"]] == ["mine"]

        # Secrets and ConfigMaps: only those its pods reference, one at a time.
        code, body = as_node(f"/api/v1/namespaces/{ns}/secrets/mine")
        assert code == 200, body
        assert json.loads(body)["metadata"]["name"] == "mine"
        assert as_node(f"/api/v1/namespaces/{ns}/configmaps/mine-cm")[0] == 200
        message = forbidden(*as_node(f"/api/v1/namespaces/{ns}/secrets/unrelated"))
        assert message.endswith(f"no relationship found between node '{node_name}' and this "
                                "object"), message
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/secrets/theirs"))
        message = forbidden(*as_node(f"/api/v1/namespaces/{ns}/secrets"))
        assert message == (f'secrets is forbidden: User "{user}" cannot list resource "secrets" '
                           f'in API group "" in the namespace "{ns}": can only get individual '
                           "resources of this type")
        forbidden(*as_node("/api/v1/secrets"))
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/configmaps"))

        # Nothing else: no workloads, no pod creation; discovery is open.
        message = forbidden(*as_node("/apis/apps/v1/deployments"))
        assert message == (f'deployments.apps is forbidden: User "{user}" cannot list resource '
                           '"deployments" in API group "apps" at the cluster scope')
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/pods", method="POST",
                           body=pod_bound_to(node_name, "sneaky")))
        assert as_node("/apis")[0] == 200
        assert as_node("/version")[0] == 200

        # Deleting its pod completes through the agent (its zero-grace delete is allowed).
        kubectl("-n", ns, "delete", "pod", "mine", "--wait=false")
        e2e_util.wait_until(
            lambda: kubectl("-n", ns, "get", "pod", "mine", "--ignore-not-found", "-o",
                            "name").stdout.strip() == "",
            "the agent to finish deleting its pod")
        # Once it is gone, so is the node's access to what it referenced.
        forbidden(*as_node(f"/api/v1/namespaces/{ns}/secrets/mine"))
        assert agent.process.poll() is None, agent.output()
        # Nothing the agent asked for along the way was refused.
        assert "forbidden" not in agent.output().lower(), agent.output()
    finally:
        kubectl("delete", "node", other, "--ignore-not-found", "--wait=false")


# --------------------------------------------------------------------------------------------------
# an agent whose server is not there (yet)


class TcpRelay:
    """Listens on 127.0.0.1:`port` and relays every connection to `target` (host, port): the
    server turning up at the address an agent has been told to use. Until `forward` is set it
    hangs up on each connection at once (a server still starting), counting them."""

    def __init__(self, port: int, target: tuple[str, int]):
        self.target = target
        self.accepted = 0
        self.forward = False
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if not self.forward:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()
        for s in self.sockets:
            s.close()


def retry_warnings(agent: e2e_util.Agent) -> list[str]:
    """The agent's log lines saying that it cannot reach its server and will retry."""
    return [line for line in agent.output().splitlines()
            if "cannot reach" in line and "retrying" in line]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def test_an_agent_started_before_its_server_waits_and_joins_once_it_is_reachable(
        ledge_bin, server, kubectl, token, node_name, agents, tmp_path):
    # The agent of an edge box often boots before the network or the server is up: it must not
    # exit (a supervisor would restart it in a loop), it says once, on one line, what it waits
    # for, and it joins on its own when the server appears at that address.
    port = e2e_util.free_port()
    url = f"https://127.0.0.1:{port}"
    data_dir = tmp_path / "agent"
    agent = agents(ledge_bin, SimpleNamespace(url=url), data_dir, node_name,
                   tmp_path / "agent.log", token=token)
    [warning] = e2e_util.wait_until(lambda: retry_warnings(agent), "the agent to say it retries")
    assert " WARN " in warning and url in warning and "Connection refused" in warning, warning
    assert agent.process.poll() is None, agent.output()
    assert not (data_dir / "pki").exists(), files_under(data_dir)
    out = agent.output()
    assert token not in out and token.split(".")[-1] not in out
    assert "panicked" not in out and "ERROR" not in out, out

    target = urlparse(server.url)
    relay = TcpRelay(port, (target.hostname, target.port))
    try:
        # Something listens there now but hangs up: the agent keeps trying, in the same process.
        e2e_util.wait_until(lambda: relay.accepted >= 3, "three more attempts", timeout=90)
        assert agent.process.poll() is None, agent.output()
        assert not (data_dir / "pki").exists(), files_under(data_dir)
        relay.forward = True
        e2e_util.wait_until(lambda: e2e_util.node_ready(kubectl, node_name),
                            f"node {node_name} Ready once its server is reachable", timeout=90)
        assert agent.process.poll() is None, agent.output()
        assert (data_dir / "pki" / "node.crt").exists()
        # Said once, not at every attempt.
        assert len(retry_warnings(agent)) == 1, agent.output()
        assert agent.stop() == 0, agent.output()
    finally:
        relay.close()


def test_an_agent_stopped_while_it_waits_for_its_server_leaves_nothing_half_written(
        ledge_bin, server, kubectl, token, node_name, agents, tmp_path):
    url = f"https://127.0.0.1:{e2e_util.free_port()}"
    data_dir = tmp_path / "agent"
    nowhere = SimpleNamespace(url=url)

    # Stopped the ordinary way, it ends at once and cleanly.
    first = agents(ledge_bin, nowhere, data_dir, node_name, tmp_path / "first.log", token=token)
    e2e_util.wait_until(lambda: retry_warnings(first), "the agent to say it retries")
    assert first.stop() == 0, first.output()

    # Killed outright, it leaves no credentials or partial files behind ...
    second = agents(ledge_bin, nowhere, data_dir, node_name, tmp_path / "second.log", token=token)
    e2e_util.wait_until(lambda: retry_warnings(second), "the agent to say it retries")
    os.killpg(second.process.pid, signal.SIGKILL)
    second.process.wait(timeout=10)
    left = files_under(data_dir)
    assert not [f for f in left if f.startswith("pki")], left
    assert not [f for f in left if f.endswith((".tmp", ".part", ".new")) or "/." in f
                or f.startswith(".")], left

    # ... so the same data dir joins the real server like a new one.
    third = agents(ledge_bin, server, data_dir, node_name, tmp_path / "third.log", token=token)
    e2e_util.wait_until(lambda: e2e_util.node_ready(kubectl, node_name),
                        f"node {node_name} Ready")
    assert third.process.poll() is None, third.output()
    assert "using the stored node certificate" not in third.output()
    assert third.stop() == 0, third.output()
