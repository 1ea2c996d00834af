"""Moving a cluster from the embedded store to etcd: `ledge datastore migrate` copies a stopped
server's store into an empty etcd, and the server restarted on etcd with the same data dir and
address serves every object with its uid and resourceVersion, while the agent reconnects and
keeps its pods running untouched."""

from __future__ import annotations

import secrets
import shutil
import subprocess

import pytest

import conftest
import e2e_util
from e2e_util import Etcd, fingerprint, processes, running_pods, wait_until

RUN_MARKER = f"ledge-migrate-{secrets.token_hex(4)}"
JOIN_TIMEOUT = 90.0
POD_TIMEOUT = 90.0

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None,
                                reason="etcd is not installed (Debian package etcd-server)")


def test_migrating_to_etcd_keeps_every_object_and_running_pod(ledge_bin, kubectl_path,
                                                              tmp_path):
    srv = conftest.start_server(ledge_bin, kubectl_path, tmp_path / "server")
    kubectl = conftest.Kubectl(kubectl_path, srv.kubeconfig, tmp_path / "kubectl-home")
    join = e2e_util.create_token(ledge_bin, srv.data_dir, "--ttl", "1h")
    agent = e2e_util.Agent(ledge_bin, srv, tmp_path / "agent", "migrated", tmp_path / "agent.log",
                           token=join)
    etcd = None
    mark = f"{RUN_MARKER}-migrated"
    try:
        wait_until(lambda: e2e_util.node_ready(kubectl, "migrated"), "the agent to be Ready",
                   timeout=JOIN_TIMEOUT)
        kubectl("create", "namespace", "moved")
        kubectl("-n", "moved", "apply", "-f", "-", input=e2e_util.manifest(
            e2e_util.process_deployment("web", 2, f"sleep 3600; : {mark}"),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
             "data": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
             "stringData": {"password": "s3cret"}}))
        wait_until(lambda: len(running_pods(kubectl, "moved", "web")) == 2, "2 web pods Running",
                   timeout=POD_TIMEOUT)

        def inventory():
            items = kubectl.json("-n", "moved", "get",
                                 "deployments,replicasets,pods,configmaps,secrets")["items"]
            return {(i["kind"], i["metadata"]["name"]):
                    (i["metadata"]["uid"], i["metadata"]["resourceVersion"]) for i in items}
        def everything():
            """Every object of every listable kind, cluster-wide: key -> (uid, resourceVersion)."""
            kinds = kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
            items = kubectl.json("get", ",".join(kinds), "-A")["items"]
            return {(i["apiVersion"], i["kind"], i["metadata"].get("namespace", ""),
                     i["metadata"]["name"]):
                    (i["metadata"]["uid"], int(i["metadata"]["resourceVersion"]))
                    for i in items}
        before = inventory()
        # The server's own presence Lease (kube-system/ledge-apiserver-<identity>) is removed when
        # it stops, so that it leaves the `kubernetes` Endpoints, and made again when it starts.
        all_before = {k: v for k, v in everything().items()
                      if not (k[1] == "Lease" and k[3].startswith("ledge-apiserver-"))}
        assert len(all_before) > 30, sorted(all_before)
        pods_before = {p["metadata"]["name"]: fingerprint(p)
                       for p in running_pods(kubectl, "moved", "web")}
        pids = set(processes(mark))
        assert len(pids) == 2

        # A running server's store is refused: its file is locked.
        etcd = Etcd(tmp_path / "etcd", 3)
        busy = subprocess.run(
            [str(ledge_bin), "datastore", "migrate", "--from", str(srv.data_dir),
             "--to", etcd.url], capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        assert busy.returncode != 0 and "stop the server" in busy.stderr, busy.stderr

        srv.stop()
        result = subprocess.run(
            [str(ledge_bin), "datastore", "migrate", "--from", str(srv.data_dir),
             "--to", etcd.url], capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert "migrated" in result.stdout, result.stdout
        again = subprocess.run(
            [str(ledge_bin), "datastore", "migrate", "--from", str(srv.data_dir),
             "--to", etcd.url], capture_output=True, text=True, timeout=300,
            stdin=subprocess.DEVNULL)
        assert again.returncode != 0 and "already holds a cluster" in again.stderr, again.stderr

        srv = conftest.start_server(ledge_bin, kubectl_path, tmp_path / "server-on-etcd",
                                    "--datastore-endpoint", etcd.url,
                                    data_dir=srv.data_dir, port=srv.port)
        after = inventory()
        assert after == before, {k: (before.get(k), after.get(k))
                                 for k in set(before) | set(after)
                                 if before.get(k) != after.get(k)}
        # Across the whole cluster, every object is still there with its uid; the running
        # server kept writing until it stopped (Leases, node status), so a resourceVersion may
        # have grown since the snapshot, never shrunk.
        all_after = everything()
        lost = sorted(k for k in all_before if k not in all_after)
        assert not lost, f"objects lost in the migration: {lost}"
        changed = {k: (all_before[k], all_after[k]) for k in all_before
                   if all_after[k][0] != all_before[k][0] or all_after[k][1] < all_before[k][1]}
        assert not changed, f"uid changed or resourceVersion went back: {changed}"
        # The agent reconnects to the same address and keeps its pods as they were.
        wait_until(lambda: e2e_util.node_ready(kubectl, "migrated"),
                   "the agent to be Ready on the migrated server", timeout=JOIN_TIMEOUT)
        now = {p["metadata"]["name"]: fingerprint(p)
               for p in running_pods(kubectl, "moved", "web")}
        assert now == pods_before
        assert set(processes(mark)) == pids
        # And the cluster works on etcd: controllers scale the Deployment.
        kubectl("-n", "moved", "scale", "deployment", "web", "--replicas=3")
        wait_until(lambda: len(running_pods(kubectl, "moved", "web")) == 3,
                   "3 web pods Running on etcd", timeout=POD_TIMEOUT)
        assert kubectl.json("-n", "moved", "get", "secret", "creds")["data"]["password"]
    finally:
        agent.stop()
        srv.stop()
        if etcd is not None:
            etcd.stop()
        e2e_util.kill_processes(mark)
