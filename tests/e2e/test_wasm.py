"""Wasm pods on a real node (`ledge up`): the hello-wasm `wasi:http` component served through a
Deployment and a NodePort Service, scaled, rolled to a new image and back, deleted; WASI
preview 1 commands that log, read volumes, exit with codes, crash-loop and trap; images that
are not Wasm. The fixtures are built from registry tools by `./test.sh`'s deps stage
(`crates/wasm/fixtures/build.sh`, `examples/hello-wasm/build.sh`).
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import e2e_util

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/ledge-target"))) \
    / "wasm-fixtures"

# A core module whose `_start` executes `unreachable`: the smallest trap.
TRAP_MODULE = bytes.fromhex(
    "0061736d01000000"          # magic, version 1
    "010401600000"              # types: () -> ()
    "03020100"                  # functions: one of type 0
    "070a01065f7374617274" "0000"  # export "_start" = function 0
    "0a05010300000b")           # code: unreachable

# A module that grows its memory by 1 MiB (16 pages) in an endless loop: only a memory limit
# stops it.
MEMORY_HOG = bytes.fromhex(
    "0061736d01000000"
    "010401600000"
    "03020100"
    "0503010001"                # memory: one, min 1 page
    "070a01065f7374617274" "0000"
    "0a0e010c00" "0340" "4110" "4000" "1a" "0c00" "0b" "0b")  # loop: grow 16; drop; br 0


def fixture(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `crates/wasm/fixtures/build.sh` and "
                    "`examples/hello-wasm/build.sh` (./test.sh does)", pytrace=False)
    return path


def import_image(cluster, path: Path, name: str) -> None:
    out = subprocess.run([str(cluster.ledge_bin), "image", "import", str(path), "--name", name,
                          "--data-dir", str(cluster.agent_dir)], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def cluster(node_cluster):
    return node_cluster


@pytest.fixture
def ns(node_ns):
    return node_ns


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def port_closed(url: str) -> bool:
    try:
        http_get(url)
        return False
    except (urllib.error.URLError, ConnectionError, OSError):
        return True


def pods(cluster, ns, selector):
    return cluster.kubectl.json("-n", ns, "get", "pods", "-l", selector)["items"]


def test_hello_wasm_deployment_lifecycle(cluster, ns, tmp_path):
    hello = fixture("hello-http.wasm")
    import_image(cluster, hello, "hello-wasm:1")
    v2 = tmp_path / "hello-v2.wasm"
    # The same component with a custom section appended: another digest, another image.
    v2.write_bytes(hello.read_bytes() + b"\x00\x05\x04ledg")
    import_image(cluster, v2, "hello-wasm:2")
    k = cluster.kubectl
    k("-n", ns, "apply", "-f", str(REPO / "examples/hello-wasm.yaml"))
    k("-n", ns, "rollout", "status", "deployment/hello-wasm", "--timeout=90s")
    text = e2e_util.wait_until(lambda: http_get("http://127.0.0.1:30080/e2e"),
                               "the component's answer on the node port")
    assert text == "Hello from ledge! You asked for /e2e\n"
    logs = e2e_util.wait_until(
        lambda: (t := k("-n", ns, "logs", "-l", "app=hello-wasm", "--tail", "-1").stdout)
        and "GET /e2e" in t and t, "the request in the pods' logs")
    assert "GET /e2e" in logs

    k("-n", ns, "scale", "deployment/hello-wasm", "--replicas=5")
    k("-n", ns, "rollout", "status", "deployment/hello-wasm", "--timeout=90s")
    running = [p for p in pods(cluster, ns, "app=hello-wasm")
               if p["status"].get("phase") == "Running"]
    assert len(running) == 5

    k("-n", ns, "set", "image", "deployment/hello-wasm", "hello=hello-wasm:2")
    k("-n", ns, "rollout", "status", "deployment/hello-wasm", "--timeout=90s")
    images = {c["imageID"] for p in pods(cluster, ns, "app=hello-wasm")
              for c in p["status"]["containerStatuses"]}
    assert len(images) == 1 and images != set(), images
    assert http_get("http://127.0.0.1:30080/v2").startswith("Hello from ledge!")

    k("-n", ns, "rollout", "undo", "deployment/hello-wasm")
    k("-n", ns, "rollout", "status", "deployment/hello-wasm", "--timeout=90s")
    e2e_util.wait_until(
        lambda: {c["image"] for p in pods(cluster, ns, "app=hello-wasm")
                 for c in p["spec"]["containers"]} == {"hello-wasm:1"}
        and len(pods(cluster, ns, "app=hello-wasm")) == 5, "five pods of hello-wasm:1 again")

    k("-n", ns, "delete", "-f", str(REPO / "examples/hello-wasm.yaml"))
    e2e_util.wait_until(lambda: pods(cluster, ns, "app=hello-wasm") == [], "every pod gone",
                        timeout=60)
    e2e_util.wait_until(lambda: port_closed("http://127.0.0.1:8080/"),
                        "the component's port closed")
    e2e_util.wait_until(lambda: port_closed("http://127.0.0.1:30080/"), "the node port closed")
    for kind in ("deployments", "replicasets", "services", "endpointslices"):
        left = e2e_util.wait_until(
            lambda: not k.json("-n", ns, "get", kind, "-l", "app=hello-wasm")["items"]
            and not [i for i in k.json("-n", ns, "get", kind)["items"]
                     if i["metadata"]["name"].startswith("hello-wasm")],
            f"no {kind} of hello-wasm left")
        assert left


def command_pod(name, image, env=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"runtimeClassName": "wasm", "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image, "env": env or [],
                                     **spec.pop("container", {})}], **spec}}


def status(cluster, ns, name):
    return cluster.pod(ns, name)["status"].get("containerStatuses", [{}])[0]


@pytest.mark.parametrize("module", ["hello-p1.wasm", "hello-command.wasm"],
                         ids=["preview1-module", "preview2-component"])
def test_wasi_command_reads_a_volume_and_exits(cluster, ns, module):
    image = module.removesuffix(".wasm") + ":1"
    import_image(cluster, fixture(module), image)
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "data"},
         "data": {"note.txt": "read through a preopened dir\n"}},
        command_pod("reader", image, env=[{"name": "GREETING", "value": "hi"}],
                    restartPolicy="Never",
                    container={"args": ["/data/note.txt"],
                               "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    volumes=[{"name": "data", "configMap": {"name": "data"}}])))
    e2e_util.wait_until(lambda: cluster.pod(ns, "reader")["status"].get("phase") == "Succeeded",
                        "the command to succeed")
    out = cluster.kubectl("-n", ns, "logs", "reader").stdout
    assert "hello from c" in out and "warning from c" in out and "GREETING=hi" in out
    assert "argv[1]=/data/note.txt" in out and "read through a preopened dir" in out
    assert status(cluster, ns, "reader")["state"]["terminated"]["reason"] == "Completed"


def test_crashing_module_backs_off(cluster, ns):
    import_image(cluster, fixture("hello-p1.wasm"), "hello-p1:1")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("crasher", "hello-p1:1", env=[{"name": "EXIT_CODE", "value": "4"}])))
    # The back-off shown while waiting, by the restart count it was shown at: it grows.
    delays: dict[int, int] = {}

    def three_restarts():
        s = status(cluster, ns, "crasher")
        waiting = s.get("state", {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            match = re.match(r"^back-off (\d+)s restarting failed container=main pod=crasher_",
                             waiting.get("message", ""))
            assert match, waiting
            delays.setdefault(s["restartCount"], int(match.group(1)))
        return s.get("restartCount", 0) >= 3 and s
    s = e2e_util.wait_until(three_restarts, "three restarts", timeout=120, interval=0.1)
    assert s["lastState"]["terminated"]["exitCode"] == 4
    shown = [delays[c] for c in sorted(delays)]
    assert len(shown) >= 2 and shown == sorted(set(shown)), delays


def test_trap_and_bad_images_are_reported(cluster, ns, tmp_path):
    trap = tmp_path / "trap.wasm"
    trap.write_bytes(TRAP_MODULE)
    import_image(cluster, trap, "trap:1")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("trapper", "trap:1", restartPolicy="Never"),
        command_pod("missing", "nowhere:1", restartPolicy="Never"),
        command_pod("wrong-runtime", "hello-p1:1", runtimeClassName="process",
                    restartPolicy="Never")))
    import_image(cluster, fixture("hello-p1.wasm"), "hello-p1:1")
    term = e2e_util.wait_until(
        lambda: status(cluster, ns, "trapper").get("state", {}).get("terminated"), "the trap")
    assert term["reason"] == "Trap" and "unreachable" in term.get("message", ""), term
    assert cluster.pod(ns, "trapper")["status"]["phase"] == "Failed"
    waiting = e2e_util.wait_until(
        lambda: status(cluster, ns, "missing").get("state", {}).get("waiting", {})
        .get("reason") == "ErrImageNeverPull" and status(cluster, ns, "missing"), "missing image")
    assert "ledge image import" in waiting["state"]["waiting"]["message"]
    wrong = e2e_util.wait_until(
        lambda: status(cluster, ns, "wrong-runtime").get("state", {}).get("waiting", {})
        .get("reason") == "InvalidImage" and status(cluster, ns, "wrong-runtime"),
        "an InvalidImage for a Wasm module under the process runtime")
    assert "runtimeClassName: wasm" in wrong["state"]["waiting"]["message"]
    bad = subprocess.run([str(cluster.ledge_bin), "image", "import", str(REPO / "README.md"),
                          "--name", "x:1", "--data-dir", str(cluster.agent_dir)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert bad.returncode == 1 and "neither a WebAssembly module" in bad.stderr
    rejected = cluster.kubectl("-n", ns, "apply", "-f", "-", check=False, input=e2e_util.manifest(
        command_pod("nope", "hello-p1:1", runtimeClassName="no-such-class")))
    assert rejected.returncode != 0 and 'RuntimeClass "no-such-class" not found' in rejected.stderr


def test_memory_limit_ends_a_module_as_oom_killed(cluster, ns, tmp_path):
    hog = tmp_path / "hog.wasm"
    hog.write_bytes(MEMORY_HOG)
    import_image(cluster, hog, "hog:1")
    import_image(cluster, fixture("hello-p1.wasm"), "hello-p1:1")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("hog", "hog:1", restartPolicy="Never",
                    container={"resources": {"limits": {"memory": "16Mi"}}}),
        command_pod("neighbour", "hello-p1:1", restartPolicy="Never")))
    term = e2e_util.wait_until(
        lambda: status(cluster, ns, "hog").get("state", {}).get("terminated"), "the hog's end")
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137, term
    assert cluster.pod(ns, "hog")["status"]["phase"] == "Failed"
    # The node runs everything else as before.
    e2e_util.wait_until(lambda: cluster.pod(ns, "neighbour")["status"].get("phase")
                        == "Succeeded", "the neighbour to run to completion")


def test_component_of_another_world_is_refused(cluster, ns):
    import_image(cluster, fixture("hello-reactor.wasm"), "reactor:1")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("reactor", "reactor:1", restartPolicy="Never")))
    waiting = e2e_util.wait_until(
        lambda: status(cluster, ns, "reactor").get("state", {}).get("waiting", {})
        .get("message") and status(cluster, ns, "reactor")["state"]["waiting"],
        "the reactor refused")
    assert "exports neither wasi:cli/run nor wasi:http/incoming-handler" in waiting["message"], \
        waiting
    failed = cluster.kubectl.json("-n", ns, "get", "events", "--field-selector",
                                  "involvedObject.name=reactor,reason=Failed")["items"]
    assert any("wasi:cli/run" in e["message"] for e in failed), failed


def test_exec_and_exec_probes_are_refused_on_wasm(cluster, ns):
    import_image(cluster, fixture("hello-http.wasm"), "hello-wasm:1")
    port = e2e_util.free_port()
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("served", "hello-wasm:1", container={
            "ports": [{"containerPort": port}],
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}})))
    e2e_util.wait_until(lambda: "running" in status(cluster, ns, "served").get("state", {}),
                        "the component running")
    assert http_get(f"http://127.0.0.1:{port}/x").startswith("Hello from ledge!")
    out = cluster.kubectl("-n", ns, "exec", "served", "--", "true", check=False)
    assert out.returncode != 0
    assert "the wasm runtime cannot run commands" in out.stderr, out.stderr
    assert "runtimeClassName: process" in out.stderr, out.stderr
    events = e2e_util.wait_until(
        lambda: [e["message"] for e in cluster.kubectl.json(
            "-n", ns, "get", "events", "--field-selector",
            "involvedObject.name=served,reason=Unhealthy")["items"]], "a probe error event")
    assert any(m.startswith("Probe error: the wasm runtime cannot run commands")
               for m in events), events
    s = status(cluster, ns, "served")
    assert s["ready"] is False and s["restartCount"] == 0, s


def oci_archive(path: Path, wasm: bytes, tag: str, layer_type: str = "application/wasm") -> Path:
    """An OCI image layout tar holding `wasm` as the one layer of a manifest tagged `tag`, as
    `oras` or `wasm-to-oci` would lay it out."""
    import hashlib
    import io
    import json
    import tarfile

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    config = b"{}"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": digest(wasm), "size": len(wasm)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}).encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
                           (f"blobs/sha256/{digest(config)[7:]}", config),
                           (f"blobs/sha256/{digest(wasm)[7:]}", wasm),
                           (f"blobs/sha256/{digest(manifest)[7:]}", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_oci_archive_of_a_wasm_module_imports_and_runs(cluster, ns, tmp_path):
    archive = oci_archive(tmp_path / "hello.tar", fixture("hello-p1.wasm").read_bytes(), "oci")
    out = subprocess.run([str(cluster.ledge_bin), "image", "import", str(archive), "--name",
                          "hello-oci:oci", "--data-dir", str(cluster.agent_dir)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "OCI image archive, Wasm layer of manifest sha256:" in out.stdout
    listed = subprocess.run([str(cluster.ledge_bin), "image", "list", "--data-dir",
                             str(cluster.agent_dir)], capture_output=True, text=True)
    assert any(line.split()[:2] == ["hello-oci:oci", "wasm-module"]
               for line in listed.stdout.splitlines()), listed.stdout
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=e2e_util.manifest(
        command_pod("from-oci", "hello-oci:oci", restartPolicy="Never")))
    e2e_util.wait_until(lambda: cluster.pod(ns, "from-oci")["status"].get("phase") == "Succeeded",
                        "the module from the OCI archive to run")
    assert "hello from c" in cluster.kubectl("-n", ns, "logs", "from-oci").stdout
    # A container image (file-system layers) is refused, saying why.
    image = oci_archive(tmp_path / "app.tar", b"\x1f\x8b not a wasm layer", "latest",
                        "application/vnd.oci.image.layer.v1.tar+gzip")
    bad = subprocess.run([str(cluster.ledge_bin), "image", "import", str(image), "--name",
                          "app:latest", "--data-dir", str(cluster.agent_dir)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert bad.returncode == 1 and "a container image" in bad.stderr, bad.stderr
