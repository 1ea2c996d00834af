"""A server restarted on its data directory comes back with everything it held: the same CA
(old kubeconfigs keep working), the same objects with the same uids and resourceVersions, and
revisions that keep increasing."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import _free_port


def start(ledge_bin, data_dir, port, log):
    proc = subprocess.Popen(
        [str(ledge_bin), "server", "--data-dir", str(data_dir), "--https-listen-port", str(port),
         "--bind-address", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc


def wait_ready(kubectl_path, kubeconfig, proc, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ledge server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if kubeconfig.exists():
            r = subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0 and r.stdout.strip() == "ok":
                return
        time.sleep(0.2)
    pytest.fail(f"ledge server not ready:\n{log_path.read_text()[-3000:]}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_restart_keeps_objects_and_credentials(ledge_bin, kubectl_path, tmp_path):
    data_dir, port = tmp_path / "data", _free_port()
    data_dir.mkdir()
    log_path = tmp_path / "server.log"
    kubeconfig = data_dir / "admin.kubeconfig"
    env = {**os.environ, "HOME": str(tmp_path)}

    def kubectl(*args):
        return subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), *args],
                              capture_output=True, text=True, timeout=60, env=env, check=True).stdout

    with open(log_path, "ab") as log:
        proc = start(ledge_bin, data_dir, port, log)
        try:
            wait_ready(kubectl_path, kubeconfig, proc, log_path)
            subprocess.run([kubectl_path, "--kubeconfig", str(kubeconfig), "apply", "-f", "-"], check=True,
                           input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": "kept", "namespace": "default"},
                                             "data": {"k": "v"}}),
                           capture_output=True, text=True, timeout=60, env=env)
            before = json.loads(kubectl("get", "cm", "kept", "-o", "json"))
            ca_before = (data_dir / "tls" / "ca.crt").read_text()
        finally:
            stop(proc)

        proc = start(ledge_bin, data_dir, port, log)
        try:
            wait_ready(kubectl_path, kubeconfig, proc, log_path)
            after = json.loads(kubectl("get", "cm", "kept", "-o", "json"))
            assert after["metadata"]["uid"] == before["metadata"]["uid"]
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            assert after["data"] == {"k": "v"}
            assert (data_dir / "tls" / "ca.crt").read_text() == ca_before
            assert "kubernetes" in kubectl("get", "svc", "-n", "default", "-o", "name")
            kubectl("patch", "cm", "kept", "--type=merge", "-p", '{"data":{"k":"w"}}')
            later = json.loads(kubectl("get", "cm", "kept", "-o", "json"))
            assert int(later["metadata"]["resourceVersion"]) > int(after["metadata"]["resourceVersion"])
        finally:
            stop(proc)
