"""Fixtures for ledge's end-to-end tests: a real `ledge server` driven by real clients.

One server per pytest session (`server`), reached only on 127.0.0.1. Clients:
- `kubectl(*args, version=None, ...)`: the kubectl on PATH, or `kubectl.1.27` ... `kubectl.1.33`
  from the Google Cloud SDK folder that PATH's kubectl links into.
- `api_client`: the PyPI `kubernetes` client, loaded from the server's admin kubeconfig.
Each test gets its own namespace (`ns`) and removes what it created.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import e2e_util

SERVER_START_TIMEOUT = 30.0
SERVER_STOP_GRACE = 10.0
LOG_TAIL_LINES = 200
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


# --------------------------------------------------------------------------------------------------
# the binary and the server


@pytest.fixture(scope="session")
def ledge_bin() -> Path:
    """The `ledge` binary under test: $LEDGE_BIN, else the release build in the target dir."""
    if os.environ.get("LEDGE_BIN"):
        path = Path(os.environ["LEDGE_BIN"])
        origin = "LEDGE_BIN"
    else:
        target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "ledge-target")
        path = Path(target) / "release" / "ledge"
        origin = "CARGO_TARGET_DIR" if os.environ.get("CARGO_TARGET_DIR") else "default target dir"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"ledge binary not found at {path} (from {origin}); build it with "
            "`cargo build --release -p ledge` or run ./test.sh, or set LEDGE_BIN",
            pytrace=False,
        )
    return path


@dataclass
class Server:
    """A running `ledge server` and where to find its artefacts."""

    kubeconfig: Path
    url: str
    data_dir: Path
    log_path: Path
    port: int
    process: subprocess.Popen

    def log_tail(self, lines: int = LOG_TAIL_LINES, since: int = 0) -> str:
        """The last `lines` lines of the server log, starting at byte offset `since`."""
        return e2e_util.file_tail(self.log_path, lines, since)

    def log_size(self) -> int:
        return _file_size(self.log_path)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the grace period."""
        _stop(self.process)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


_free_port = e2e_util.free_port


def _server_url(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    url = config["clusters"][0]["cluster"]["server"]
    host = re.sub(r"^https?://", "", url).rsplit(":", 1)[0]
    if host not in LOOPBACK_HOSTS:
        # The tests must only ever talk to this machine.
        raise AssertionError(f"admin.kubeconfig points at {url}, not at loopback")
    return url


def start_server(ledge_bin: Path, kubectl_path: str, base: Path, *extra: str,
                 data_dir: Path | None = None, port: int | None = None) -> Server:
    """Starts `ledge server` on a free 127.0.0.1 port with data dir `base/data` (or an existing
    `data_dir`, to restart a server on its state) and log `base/ledge-server.log`, and returns it
    ready (`/readyz` = ok); the caller stops it (`server.stop()`). `extra` are further flags."""
    if data_dir is None:
        data_dir = base / "data"
        data_dir.mkdir(parents=True)
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / "ledge-server.log"
    port = port or _free_port()
    cmd = [
        str(ledge_bin), "server",
        "--data-dir", str(data_dir),
        "--https-listen-port", str(port),
        "--bind-address", "127.0.0.1",
        *extra,
    ]
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
    try:
        return _wait_ready(process, data_dir / "admin.kubeconfig", data_dir, log_path, port,
                           kubectl_path)
    except BaseException:
        _stop(process)
        raise


@pytest.fixture(scope="session")
def server(request, ledge_bin, tmp_path_factory, kubectl_path) -> Server:
    """`ledge server` on a free 127.0.0.1 port with a fresh data dir, ready (`/readyz` = ok)."""
    # A short watch history so the 410 test reaches "too old" with a few hundred writes.
    srv = start_server(ledge_bin, kubectl_path, tmp_path_factory.mktemp("ledge-server"),
                       "--watch-history", "1000")
    try:
        yield srv
    finally:
        srv.stop()
        if request.session.testsfailed:
            _report(request.config,
                    f"ledge server log (last {LOG_TAIL_LINES} lines of {srv.log_path})",
                    srv.log_tail())


def _wait_ready(process, kubeconfig, data_dir, log_path, port, kubectl_path) -> Server:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = "admin.kubeconfig not written yet"
    home = data_dir.parent / "readyz-home"
    home.mkdir(parents=True, exist_ok=True)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"ledge server exited with code {process.returncode} during startup; log:\n"
                + e2e_util.file_tail(log_path, LOG_TAIL_LINES),
                pytrace=False,
            )
        if kubeconfig.exists():
            try:
                result = subprocess.run(
                    [kubectl_path, "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
                    capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL,
                    env=_kubectl_env(home),
                )
                if result.returncode == 0 and result.stdout.strip() == "ok":
                    return Server(kubeconfig, _server_url(kubeconfig), data_dir, log_path, port,
                                  process)
                last = (f"/readyz: rc={result.returncode} {result.stdout.strip()} "
                        f"{result.stderr.strip()}")
            except subprocess.TimeoutExpired:
                last = "/readyz: kubectl timed out"
            except (yaml.YAMLError, KeyError, IndexError, TypeError) as err:
                last = f"admin.kubeconfig not parseable yet: {err!r}"
        time.sleep(0.2)
    _stop(process)
    pytest.fail(
        f"ledge server not ready within {SERVER_START_TIMEOUT:.0f}s ({last}); log:\n"
        + e2e_util.file_tail(log_path, LOG_TAIL_LINES),
        pytrace=False,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _report(config, title: str, text: str) -> None:
    """Writes straight to the terminal: session teardown output is otherwise captured and lost."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("-", title)
        reporter.write_line(text)
    else:  # pragma: no cover - pytest always has a terminal reporter unless -p no:terminal
        print(f"--- {title}\n{text}")


# The log lines written while a failing test ran are attached to its report.
_LOG_OFFSET = pytest.StashKey[int]()
_SERVER = pytest.StashKey[Server]()
_MORE_LOGS = pytest.StashKey[list]()


def attach_logs_on_failure(item, logs: dict[str, tuple[Path, subprocess.Popen | None]]) -> None:
    """If `item` fails, its report gets what each log (title → (path, the process writing it))
    gained from now on, and a note when that process has exited. For fixtures that run their own
    processes (a server, agents); the session `server` is attached automatically."""
    item.stash[_MORE_LOGS] = [(title, path, process, _file_size(path))
                              for title, (path, process) in logs.items()]


@pytest.fixture(autouse=True)
def _server_log_marker(request):
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        request.node.stash[_SERVER] = srv
        request.node.stash[_LOG_OFFSET] = srv.log_size()
    yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _SERVER in item.stash:
        srv = item.stash[_SERVER]
        text = srv.log_tail(LOG_TAIL_LINES, since=item.stash.get(_LOG_OFFSET, 0))
        if srv.process.poll() is not None:
            text += f"\n!!! ledge server has exited with code {srv.process.returncode}"
        report.sections.append((f"ledge server log during {report.when}", text))
    if report.failed:
        for title, path, process, offset in item.stash.get(_MORE_LOGS, []):
            text = e2e_util.file_tail(path, LOG_TAIL_LINES, offset)
            if process is not None and process.poll() is not None:
                text += f"\n!!! the process has exited with code {process.returncode}"
            report.sections.append((f"{title} during {report.when}", text))
    return report


# --------------------------------------------------------------------------------------------------
# kubectl


@pytest.fixture(scope="session")
def kubectl_path() -> str:
    """The kubectl on PATH (a symlink into the Google Cloud SDK bin folder on ledge's machines)."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH; the e2e tests drive the server with real kubectl",
                    pytrace=False)
    return path


def _kubectl_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env["HOME"] = str(home)
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1,localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


class KubectlError(AssertionError):
    """A kubectl command that was expected to succeed failed."""


class Kubectl:
    """Runs real kubectl against the session's server.

    `kubectl("get", "ns")` uses PATH's kubectl; `version="1.27"` uses `kubectl.1.27` from the SDK
    folder (the test is skipped if that binary is absent). Each version has its own discovery
    cache under a per-session HOME, because kubectl trusts its cache for 6 hours.
    """

    def __init__(self, path: str, kubeconfig: Path, home: Path):
        self.path = path
        self.sdk_dir = Path(os.path.realpath(path)).parent
        self.kubeconfig = kubeconfig
        self.home = home
        self.env = _kubectl_env(home)

    def binary(self, version: str | None = None) -> str:
        if version is None:
            return self.path
        candidate = self.sdk_dir / f"kubectl.{version}"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            pytest.skip(f"kubectl {version} is not installed ({candidate} is missing)")
        return str(candidate)

    def command(self, *args: str, version: str | None = None) -> list[str]:
        cache = self.home / ".kube" / f"cache-{version or 'path'}"
        return [self.binary(version), "--kubeconfig", str(self.kubeconfig),
                "--cache-dir", str(cache), *map(str, args)]

    def __call__(self, *args, version: str | None = None, check: bool = True,
                 input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = self.command(*args, version=version)
        try:
            result = subprocess.run(
                cmd, input=input, capture_output=True, text=True, timeout=timeout, env=self.env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as err:
            raise KubectlError(
                f"`{e2e_util.shell_join(cmd)}` did not finish within {timeout}s\n"
                f"--- stdout\n{_text(err.stdout)}\n--- stderr\n{_text(err.stderr)}"
            ) from None
        if check and result.returncode != 0:
            raise KubectlError(
                f"`{e2e_util.shell_join(cmd)}` exited with {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def json(self, *args, version: str | None = None, timeout: float = 60):
        """Runs `kubectl ... -o json` and returns the parsed document."""
        import json

        return json.loads(self(*args, "-o", "json", version=version, timeout=timeout).stdout)

    def popen(self, *args, version: str | None = None) -> subprocess.Popen:
        """Starts a long-running kubectl (e.g. `get -w`); the caller must stop it."""
        return subprocess.Popen(
            self.command(*args, version=version), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, text=True, bufsize=1,
            start_new_session=True,
        )


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@pytest.fixture(scope="session")
def kubectl(server, kubectl_path, tmp_path_factory) -> Kubectl:
    """Callable running real kubectl against the server; see `Kubectl`."""
    return Kubectl(kubectl_path, server.kubeconfig, tmp_path_factory.mktemp("kubectl-home"))


# --------------------------------------------------------------------------------------------------
# per-test namespace and the Python client


@pytest.fixture
def ns(request, kubectl) -> str:
    """A fresh namespace for this test, deleted (without waiting) afterwards."""
    test = request.node.originalname.removeprefix("test_").replace("_", "-")
    name = e2e_util.unique_name(f"e2e-{test}", max_len=40)
    # `kubectl create -f` (unstructured, JSON) rather than `kubectl create namespace`, which sends
    # a protobuf body from kubectl 1.32 on, and --validate=false so that every test does not also
    # depend on /openapi: the tests of those features say so when they fail.
    kubectl("create", "--validate=false", "-f", "-", input=e2e_util.manifest(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def api_client(server):
    """A `kubernetes.client.ApiClient` for the server's admin kubeconfig."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(server.kubeconfig),
                                           persist_config=False)
    yield client
    client.close()


# --------------------------------------------------------------------------------------------------
# a single-node cluster with a real agent (`ledge up`)


@dataclass
class NodeCluster:
    """`ledge up`: a server and a real node agent in one process, with its own kubectl."""

    server: Server
    kubectl: Kubectl
    agent_dir: Path
    node: str
    ledge_bin: Path

    def ns(self, prefix: str) -> str:
        name = e2e_util.unique_name(prefix, max_len=40)
        self.kubectl("create", "namespace", name)
        return name

    def pod(self, namespace: str, name: str) -> dict:
        return self.kubectl.json("-n", namespace, "get", "pod", name)


NODE_NAME = "e2e-node"


@pytest.fixture(scope="module")
def node_cluster(request, ledge_bin, tmp_path_factory, kubectl_path) -> NodeCluster:
    """`ledge up` on a free loopback port with a fresh data dir; its node is Ready."""
    base = tmp_path_factory.mktemp("ledge-up")
    data_dir = base / "data"
    log_path = base / "ledge-up.log"
    port = _free_port()
    cmd = [
        str(ledge_bin), "up",
        "--data-dir", str(data_dir),
        "--https-listen-port", str(port),
        "--bind-address", "127.0.0.1",
        "--node-name", NODE_NAME,
        # Crash-loop back-off starts at 1 s so restarts show within a test's patience.
        "--restart-backoff", "1s",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("LEDGE_LOG",)}
    env.setdefault("RUST_BACKTRACE", "1")
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server_dir = data_dir / "server"
    srv = None
    try:
        srv = _wait_ready(process, server_dir / "admin.kubeconfig", server_dir, log_path, port,
                          kubectl_path)
        kubectl = Kubectl(kubectl_path, srv.kubeconfig, tmp_path_factory.mktemp("kubectl-up"))

        def node_ready():
            out = kubectl("get", "node", NODE_NAME, "-o",
                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            return out.returncode == 0 and out.stdout.strip() == "True"

        e2e_util.wait_until(node_ready, f"node {NODE_NAME} Ready", timeout=60)
        yield NodeCluster(srv, kubectl, data_dir / "agent", NODE_NAME, ledge_bin)
    finally:
        _stop(process)
        failed = request.session.testsfailed
        if failed and srv is not None:
            _report(request.config, f"ledge up log (last {LOG_TAIL_LINES} lines of {log_path})",
                    e2e_util.file_tail(log_path, LOG_TAIL_LINES))


@pytest.fixture
def node_ns(node_cluster, request) -> str:
    """A fresh namespace on the `node_cluster`, deleted (without waiting) afterwards."""
    name = node_cluster.ns("e2e-" + request.node.originalname.removeprefix("test_")
                           .replace("_", "-")[:20])
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
