#!/usr/bin/env python3
"""Pod start latency and agent memory (issue 3), measured on this machine in one run:

  bench/run --pods                        (builds, then runs this with the release binary)
  python3 bench/pods.py --ledge BIN [--pods 100] [--wasm FILE]

1. `ledge server` and `ledge agent` as separate processes (loopback), the agent idle: its RSS.
2. N Wasm pods (the hello-wasm HTTP component, imported with `ledge image import`, all replicas
   sharing one port), created one after another: create → Running latency per pod, p50/p99,
   read from the pods' own `status.containerStatuses[].state.running.startedAt` against the time
   the create was acknowledged; then the agent's RSS with all N running.
3. The same N pods as native processes (`busybox httpd`, one port each).
4. Baseline: `runc run -d` of a busybox bundle, N times, create → started.

Prints a table with ratios against the runc baseline and, with --results, appends the figures
to bench/RESULTS.md's "Pods" section. Everything it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100 * len(values) + 0.5)) - 1))
    return values[k]


class Cluster:
    def __init__(self, ledge: str, work: Path):
        self.ledge = ledge
        self.work = work
        self.procs: list[subprocess.Popen] = []
        port = free_port()
        self.server_dir = work / "server"
        self.agent_dir = work / "agent"
        log = open(work / "server.log", "wb")
        self.server = subprocess.Popen(
            [ledge, "server", "--data-dir", str(self.server_dir), "--https-listen-port", str(port),
             "--bind-address", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(self.server)
        self.kubeconfig = self.server_dir / "admin.kubeconfig"
        self.wait(lambda: self.kubeconfig.exists() and self.kubectl("get", "--raw", "/readyz",
                                                                     check=False).returncode == 0,
                  "server ready")
        token = subprocess.run([ledge, "token", "create", "--data-dir", str(self.server_dir)],
                               capture_output=True, text=True, check=True).stdout.strip()
        alog = open(work / "agent.log", "wb")
        self.agent = subprocess.Popen(
            [ledge, "agent", "--server", f"https://127.0.0.1:{port}", "--token", token,
             "--data-dir", str(self.agent_dir), "--node-name", "bench-node",
             "--node-ip", "127.0.0.1"],
            stdout=alog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.procs.append(self.agent)
        self.wait(lambda: "True" in self.kubectl(
            "get", "node", "bench-node", "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False).stdout,
            "node Ready")

    def kubectl(self, *args, check=True, input=None):
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, check=check, input=input)

    @staticmethod
    def wait(pred, what, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if pred():
                    return
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        raise SystemExit(f"bench: timed out waiting for {what}")

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()


def run_pods(cluster: Cluster, ns: str, pods: list[dict]) -> list[float]:
    """Create pods one after another; return create → Running latencies in ms, measured here:
    from sending the create to receiving the watch event that shows the pod Running."""
    import threading

    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    api.create_namespace({"metadata": {"name": ns}})
    sent: dict[str, float] = {}
    running: dict[str, float] = {}
    done = threading.Event()
    w = watch.Watch()
    rv = api.list_namespaced_pod(ns).metadata.resource_version

    def follow():
        for ev in w.stream(api.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=600):
            pod = ev["object"]
            if pod.status and pod.status.phase == "Running" and pod.metadata.name not in running:
                running[pod.metadata.name] = time.monotonic()
                if len(running) == len(pods):
                    done.set()
                    w.stop()
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(0.5)
    for p in pods:
        sent[p["metadata"]["name"]] = time.monotonic()
        api.create_namespaced_pod(ns, p)
        # One at a time, as a rollout of independent pods would arrive: wait for this one.
        deadline = time.monotonic() + 60
        while p["metadata"]["name"] not in running and time.monotonic() < deadline:
            time.sleep(0.0005)
    done.wait(timeout=120)
    # In creation order, so the slowest can be told apart from the first (cold) ones.
    return [(running[n] - sent[n]) * 1000 for n in sent if n in running]


def wasm_pod(i: int, port: int) -> dict:
    return {"metadata": {"name": f"wasm-{i}", "labels": {"app": "hello"}},
            "spec": {"runtimeClassName": "wasm", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "hello", "image": "bench/hello-wasm:1",
                                     "ports": [{"containerPort": port}]}]}}


def process_pod(i: int, port: int) -> dict:
    busybox = shutil.which("busybox") or "/bin/busybox"
    return {"metadata": {"name": f"proc-{i}"},
            "spec": {"runtimeClassName": "process", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "hello", "image": "host",
                                     "command": [busybox, "httpd", "-f", "-p", str(port)]}]}}


def runc_baseline(n: int, work: Path) -> list[float]:
    runc = shutil.which("runc")
    busybox = shutil.which("busybox")
    if not runc or not busybox:
        print("bench: runc or busybox missing; skipping the runc baseline", file=sys.stderr)
        return []
    bundle = work / "bundle"
    (bundle / "rootfs/bin").mkdir(parents=True)
    shutil.copy(busybox, bundle / "rootfs/bin/busybox")
    for tool in ("sh", "sleep", "httpd"):
        os.symlink("busybox", bundle / "rootfs/bin" / tool)
    subprocess.run([runc, "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/sleep", "3600"]
    (bundle / "config.json").write_text(json.dumps(spec))
    latencies = []
    ids = []
    try:
        for i in range(n):
            cid = f"ledge-bench-{os.getpid()}-{i}"
            start = time.monotonic()
            subprocess.run([runc, "run", "-d", "--bundle", str(bundle), cid], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            latencies.append((time.monotonic() - start) * 1000)
            ids.append(cid)
    finally:
        for cid in ids:
            subprocess.run([runc, "delete", "-f", cid], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    return latencies


def summary(name: str, lat: list[float], base: float | None) -> str:
    if not lat:
        return f"| {name} | – | – | – |"
    p50, p99 = statistics.median(lat), pct(lat, 99)
    ratio = f"{p50 / base:.2f}×" if base else "–"
    return f"| {name} | {p50:.1f} | {p99:.1f} | {ratio} |"


def slowest(name: str, lat: list[float], n: int = 3) -> str:
    """The n slowest samples as `#index ms` (index 0: the first pod created)."""
    top = sorted(range(len(lat)), key=lambda i: -lat[i])[:n]
    return f"  {name}: " + ", ".join(f"#{i} {lat[i]:.1f}" for i in top)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ledge", required=True, help="the ledge binary")
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--wasm", help="the hello-wasm component "
                    "(default: $CARGO_TARGET_DIR/wasm-fixtures/hello-http.wasm)")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/ledge-target"))
    wasm = Path(args.wasm or Path(target) / "wasm-fixtures/hello-http.wasm")
    work = Path(tempfile.mkdtemp(prefix="ledge-bench-pods-", dir=target))
    cluster = None
    try:
        cluster = Cluster(args.ledge, work)
        time.sleep(3)
        idle = rss_kib(cluster.agent.pid)
        wasm_lat: list[float] = []
        busy = 0
        if wasm.exists():
            subprocess.run([args.ledge, "image", "import", str(wasm), "--name", "bench/hello-wasm:1",
                            "--data-dir", str(cluster.agent_dir)], check=True,
                           stdout=subprocess.DEVNULL)
            port = free_port()
            wasm_lat = run_pods(cluster, "bench-wasm", [wasm_pod(i, port) for i in range(args.pods)])
            time.sleep(2)
            busy = rss_kib(cluster.agent.pid)
            cluster.kubectl("delete", "namespace", "bench-wasm", "--wait=true", "--timeout=120s",
                            check=False)
        else:
            print(f"bench: {wasm} missing (examples/hello-wasm/build.sh); skipping Wasm pods",
                  file=sys.stderr)
        ports = [free_port() for _ in range(args.pods)]
        proc_lat = run_pods(cluster, "bench-proc", [process_pod(i, p) for i, p in enumerate(ports)])
        cluster.kubectl("delete", "namespace", "bench-proc", "--wait=true", "--timeout=120s",
                        check=False)
    finally:
        if cluster:
            cluster.stop()
    runc_lat = runc_baseline(args.pods, work)
    shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(runc_lat) if runc_lat else None
    print(f"\nPod create → Running, {args.pods} pods one after another on one node (ms):\n")
    print("| what | p50 | p99 | p50 vs runc |")
    print("| --- | ---: | ---: | ---: |")
    print(summary("ledge, Wasm HTTP component", wasm_lat, base))
    print(summary("ledge, native process (busybox httpd)", proc_lat, base))
    print(summary("baseline: `runc run -d` busybox bundle", runc_lat, base))
    print("\nSlowest samples (creation index, ms):")
    for name, lat in (("wasm", wasm_lat), ("process", proc_lat), ("runc", runc_lat)):
        if lat:
            print(slowest(name, lat))
    print(f"\nAgent RSS: idle {idle / 1024:.1f} MB"
          + (f", with {args.pods} Wasm HTTP pods running {busy / 1024:.1f} MB" if busy else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
