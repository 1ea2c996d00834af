"""Helpers shared by the e2e tests: manifests, kubectl tables, bounded waits, watch readers,
node agents and join tokens."""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any, Callable

import yaml

# Every wait in these tests is for eventual state and is bounded by this (seconds).
EVENTUAL_TIMEOUT = 30.0


def file_tail(path: Path, lines: int, since: int = 0) -> str:
    """The last `lines` lines of `path` from byte offset `since` (empty if the file is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(since)
            data = f.read()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(deque(data.decode(errors="replace").splitlines(), maxlen=lines))


def unique_name(prefix: str, max_len: int = 63) -> str:
    """A DNS-1123 label `<prefix>-<random>` no longer than `max_len`."""
    suffix = secrets.token_hex(3)
    slug = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")
    slug = slug[: max_len - len(suffix) - 1].rstrip("-")
    return f"{slug}-{suffix}"


def shell_join(cmd) -> str:
    return " ".join(shlex.quote(str(c)) for c in cmd)


class _ManifestDumper(yaml.SafeDumper):
    """Quotes the strings that kubectl's YAML 1.1 decoder would read as booleans (`y`, `n`, ...)
    and PyYAML, speaking YAML 1.1 with a shorter list of booleans, leaves plain."""


def _represent_str(dumper, value):
    style = '"' if value in ("y", "Y", "n", "N") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def manifest(*docs: dict) -> str:
    """Multi-document YAML for `kubectl ... -f -`."""
    return yaml.dump_all(docs, Dumper=_ManifestDumper, sort_keys=False)


def write_manifest(path: Path, *docs: dict) -> Path:
    path.write_text(manifest(*docs))
    return path


def configmap(name: str, data: dict | None = None, labels: dict | None = None,
              namespace: str | None = None) -> dict:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    if data is not None:
        obj["data"] = data
    return obj


def deployment(name: str, replicas: int = 1, env: list | None = None,
               extra_containers: list | None = None) -> dict:
    """An apps/v1 Deployment with a container `app` (env `env`) plus `extra_containers`."""
    app = {"name": "app", "image": "registry.example/app:1"}
    if env is not None:
        app["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [app, *(extra_containers or [])]},
            },
        },
    }


def parse_table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parses kubectl's column output into (headers, rows as {header: cell}).

    kubectl aligns cells under the header with a tabwriter, so each cell is sliced at its header's
    offset; this keeps empty cells (e.g. no SHORTNAMES) in the right column.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return [], []
    header = lines[0]
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+", header)]
    names = [name for _, name in spans]
    starts = [start for start, _ in spans]
    ends = starts[1:] + [None]
    rows = []
    for line in lines[1:]:
        rows.append({name: line[s:e].strip() for name, s, e in zip(names, starts, ends)})
    return names, rows


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = EVENTUAL_TIMEOUT,
               interval: float = 0.25):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` passes (fails)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - reported below if the wait times out
            last_error = err
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error}" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


class StreamReader:
    """Reads a process's stdout (and stderr) on background threads, so reads can time out."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self):
        for line in self.process.stderr:
            self.stderr.append(line)

    def readline(self, deadline: float) -> str | None:
        """Next stdout line; None at EOF; raises TimeoutError past `deadline` (monotonic)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            return self.lines.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError from None

    def stop(self):
        """Stops the process and its session (PATH's kubectl may be a dispatcher with a child)."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=5)

    def _signal(self, sig):
        try:
            os.killpg(self.process.pid, sig)  # started with start_new_session=True
        except ProcessLookupError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class JsonEventStream(StreamReader):
    """`kubectl get -w --output-watch-events -o json`: a stream of pretty-printed JSON documents."""

    def __init__(self, process: subprocess.Popen):
        super().__init__(process)
        self._buffer = ""
        self._decoder = json.JSONDecoder()
        self.seen: list[dict] = []

    def next_event(self, timeout: float = EVENTUAL_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            text = self._buffer.lstrip()
            if text:
                try:
                    event, end = self._decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass
                else:
                    self._buffer = text[end:]
                    self.seen.append(event)
                    return event
            try:
                line = self.readline(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"no watch event within {timeout:.0f}s; events so far: {self.summary()}; "
                    f"stderr: {''.join(self.stderr)!r}; unparsed output: {self._buffer!r}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"kubectl watch exited (code {self.process.poll()}) after {self.summary()}; "
                    f"stderr: {''.join(self.stderr)!r}; unparsed output: {self._buffer!r}"
                )
            self._buffer += line

    def wait_for(self, predicate: Callable[[dict], bool], what: str,
                 timeout: float = EVENTUAL_TIMEOUT) -> dict:
        """Skips events until one matches `predicate`, returning it; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout:.0f}s; saw {self.summary()}")
            event = self.next_event(timeout=remaining)
            if predicate(event):
                return event

    def summary(self) -> list[tuple[str, str]]:
        return [(e.get("type"), e.get("object", {}).get("metadata", {}).get("name"))
                for e in self.seen]


def status_of(err) -> dict:
    """The Kubernetes `Status` body of a `kubernetes.client.ApiException` ({} if not JSON)."""
    try:
        return json.loads(err.body or "{}")
    except (TypeError, ValueError):
        return {}


# --------------------------------------------------------------------------------------------------
# node agents


AGENT_EXIT_TIMEOUT = 30.0
AGENT_STOP_GRACE = 10.0


def create_token(ledge_bin: Path, server_data_dir: Path, *extra: str) -> str:
    """A join token from `ledge token create` on the server's data dir."""
    result = subprocess.run(
        [str(ledge_bin), "token", "create", "--data-dir", str(server_data_dir), *extra],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("K10") and "::" in token, token
    return token


class Agent:
    """A `ledge agent` process (its own data dir and node name) whose output goes to `log`.

    `server` is anything with a `.url`; `labels` (`k=v`) and `taints` (`k=v:Effect`) become
    `--node-label`/`--node-taint`; `extra` are further flags. The Lease is renewed every second.
    """

    def __init__(self, ledge_bin: Path, server, data_dir: Path, name: str, log: Path,
                 token: str | None = None, *, labels: tuple[str, ...] = (),
                 taints: tuple[str, ...] = (), extra: tuple[str, ...] = ()):
        self.name = name
        self.log = log
        cmd = [str(ledge_bin), "agent", "--server", server.url, "--data-dir", str(data_dir),
               "--node-name", name, "--lease-interval", "1s"]
        for label in labels:
            cmd += ["--node-label", label]
        for taint in taints:
            cmd += ["--node-taint", taint]
        cmd += list(extra)
        if token is not None:
            cmd += ["--token", token]
        env = {k: v for k, v in os.environ.items() if k not in ("LEDGE_TOKEN", "LEDGE_LOG")}
        env.setdefault("RUST_BACKTRACE", "1")
        with open(log, "ab") as out:
            out.write(f"$ {shell_join(c if c != token else '<token>' for c in cmd)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_exit(self, timeout: float = AGENT_EXIT_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the agent did not exit within {timeout:.0f}s; log:\n"
                                 + self.output()) from None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL (its whole session) if it has not exited within the grace."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=AGENT_STOP_GRACE)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        return self.process.returncode


def node_ready(kubectl, name: str) -> dict | None:
    """The Node if its Ready condition is True, else None."""
    node = kubectl.json("get", "node", name)
    for cond in node.get("status", {}).get("conditions", []):
        if cond["type"] == "Ready" and cond["status"] == "True":
            return node
    return None


class BackgroundPoller:
    """Calls `once()` every `interval` seconds on a thread while used as a context manager (or
    until `max_seconds` pass); an error stops it and is raised when the `with` block ends.
    Fake kubelets of the tests subclass it."""

    def __init__(self, interval: float = 0.2, max_seconds: float = 120):
        self.interval, self.max_seconds = interval, max_seconds
        self.stop_event = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def once(self) -> None:
        raise NotImplementedError

    def _run(self):
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                self.once()
            except Exception as err:  # noqa: BLE001 - reported when the test stops us
                self.error = err
                return
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=10)
        if self.error is not None and exc[0] is None:
            raise AssertionError(f"{type(self).__name__} failed: {self.error!r}")


# --------------------------------------------------------------------------------------------------
# real etcd members and process-runtime workloads (the HA and migration suites)


def free_port() -> int:
    """A TCP port free on loopback now and below the kernel's ephemeral range.

    A port from `bind(0)` lies in the range the kernel also draws the local end of outgoing
    connections from, so after its process is killed a client's connection can take it before
    the process restarts on it. Ports below that range are only ever taken by a listener.
    """
    import random
    import socket
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    floor = 10000
    ceiling = max(low, floor + 1000)
    start = random.randrange(floor, ceiling)
    for step in range(ceiling - floor):
        port = floor + (start - floor + step) % (ceiling - floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class Etcd:
    """`size` etcd members on free loopback ports, each with its own data dir and log."""

    def __init__(self, base: Path, size: int):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port()) for _ in range(size)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
        self.clients = [f"127.0.0.1:{client}" for client, _ in ports]
        self.commands = []
        for i, (client, peer) in enumerate(ports):
            self.commands.append([
                "etcd", "--name", f"m{i}", "--data-dir", str(base / f"m{i}"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"ledge-test-{ports[0][0]}",
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--log-level", "warn",
            ])
        self.procs: list[subprocess.Popen | None] = [None] * size
        for i in range(size):
            self._spawn(i)
        for i in range(size):
            self.wait_healthy(i)

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.clients)

    def log(self, i: int) -> Path:
        return self.base / f"m{i}.log"

    def _spawn(self, i: int) -> None:
        with open(self.log(i), "ab") as out:
            self.procs[i] = subprocess.Popen(self.commands[i], stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def healthy(self, i: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.clients[i]}/health", timeout=2) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def wait_healthy(self, i: int) -> None:
        wait_until(lambda: self.healthy(i), f"etcd member m{i} to be healthy", timeout=60)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def revive(self, i: int) -> None:
        self._spawn(i)
        self.wait_healthy(i)

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)


def processes(pattern: str) -> list[str]:
    """PIDs of the processes whose command line contains `pattern`."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return out.stdout.split()


def kill_processes(pattern: str) -> None:
    """SIGKILL every process whose command line contains `pattern` (pods left behind)."""
    for pid in processes(pattern):
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def process_pod_template(command: str) -> dict:
    """A pod spec running `command` with `/bin/sh -c` on the node (the `process` runtime)."""
    return {"runtimeClassName": "process", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "host",
                            "command": ["/bin/sh", "-c", command]}]}


def process_deployment(name: str, replicas: int, command: str) -> dict:
    """A Deployment whose pods run `command` with the `process` runtime."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": process_pod_template(command)}}}


def running_pods(kubectl, ns: str, app: str) -> list[dict]:
    """The Running, not terminating pods labelled `app=<app>`."""
    items = kubectl.json("-n", ns, "get", "pods", "-l", f"app={app}")["items"]
    return [p for p in items if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def fingerprint(pod: dict) -> tuple:
    """What changes when a pod is replaced or restarted."""
    statuses = pod["status"].get("containerStatuses") or [{}]
    return (pod["metadata"]["uid"], pod["spec"].get("nodeName"),
            statuses[0].get("restartCount"), pod["status"].get("startTime"))
