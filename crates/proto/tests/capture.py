#!/usr/bin/env python3
"""Capture the request bodies real kubectl sends, as fixtures for ledge-proto.

kubectl >= 1.32 sends its typed writes (create generators, create token, auth
can-i / whoami, certificate approve, autoscale, debug, ...) as Kubernetes
protobuf; kubectl 1.31 sends the same objects as JSON. This script starts a
fake API server on 127.0.0.1 (plain HTTP, legacy discovery, stdlib only), runs
every command in COMMANDS once with each kubectl, and writes the body of each
POST/PUT to crates/proto/tests/data/:

    <name>.json     kubectl 1.31 (JSON; the expected decoding)
    <name>.pb       kubectl 1.32 (protobuf, "k8s\\x00" + runtime.Unknown)
    <name>.133.pb   kubectl 1.33 (protobuf)

plus captures.tsv listing method, path and Content-Type of every capture.
tests/decode/fixtures.rs decodes each .pb and compares it, member order included,
with the .json. kubectl run, expose and drain still send JSON from 1.32 on:
those commands leave no fixture (captures.tsv shows what they sent).

Re-run from the repository root (needs the kubectl 1.31/1.32/1.33 binaries of
the image's Google Cloud SDK and openssl, takes about a minute):

    python3 crates/proto/tests/capture.py

Options: --out DIR (default: tests/data beside this script), --only NAME.
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SDK_BIN = os.path.dirname(os.path.realpath(shutil.which("kubectl") or "/usr/lib/google-cloud-sdk/bin/kubectl"))
KUBECTLS = [  # (binary, fixture suffix); JSON first: its body answers the protobuf runs
    (os.path.join(SDK_BIN, "kubectl.1.31"), ".json"),
    (os.path.join(SDK_BIN, "kubectl.1.32"), ".pb"),
    (os.path.join(SDK_BIN, "kubectl.1.33"), ".133.pb"),
]

# group/version -> [(resource, kind, namespaced, extra)]; extra overrides fields.
RESOURCES = {
    "v1": [
        ("pods", "Pod", True, {}),
        ("pods/eviction", "Eviction", True, {"group": "policy", "version": "v1", "verbs": ["create"]}),
        ("services", "Service", True, {}),
        ("configmaps", "ConfigMap", True, {}),
        ("secrets", "Secret", True, {}),
        ("namespaces", "Namespace", False, {}),
        ("nodes", "Node", False, {}),
        ("serviceaccounts", "ServiceAccount", True, {}),
        ("serviceaccounts/token", "TokenRequest", True,
         {"group": "authentication.k8s.io", "version": "v1", "verbs": ["create"]}),
        ("resourcequotas", "ResourceQuota", True, {}),
        ("endpoints", "Endpoints", True, {}),
        ("events", "Event", True, {}),
    ],
    "apps/v1": [
        ("deployments", "Deployment", True, {}),
        ("deployments/scale", "Scale", True, {"group": "autoscaling", "version": "v1", "verbs": ["get", "update"]}),
        ("replicasets", "ReplicaSet", True, {}),
        ("daemonsets", "DaemonSet", True, {}),
        ("statefulsets", "StatefulSet", True, {}),
    ],
    "batch/v1": [("jobs", "Job", True, {}), ("cronjobs", "CronJob", True, {})],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True, {})],
    "scheduling.k8s.io/v1": [("priorityclasses", "PriorityClass", False, {})],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True, {}),
        ("rolebindings", "RoleBinding", True, {}),
        ("clusterroles", "ClusterRole", False, {}),
        ("clusterrolebindings", "ClusterRoleBinding", False, {}),
    ],
    "networking.k8s.io/v1": [("ingresses", "Ingress", True, {})],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True, {})],
    "autoscaling/v1": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True, {})],
    "authorization.k8s.io/v1": [
        ("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, {"verbs": ["create"]}),
        ("selfsubjectrulesreviews", "SelfSubjectRulesReview", True, {"verbs": ["create"]}),
    ],
    "authentication.k8s.io/v1": [("selfsubjectreviews", "SelfSubjectReview", False, {"verbs": ["create"]})],
    "certificates.k8s.io/v1": [
        ("certificatesigningrequests", "CertificateSigningRequest", False, {}),
        ("certificatesigningrequests/approval", "CertificateSigningRequest", False, {"verbs": ["update"]}),
    ],
}

META = {"name": "x", "namespace": "default", "uid": "00000000-0000-0000-0000-000000000001",
        "resourceVersion": "1", "creationTimestamp": "2024-01-01T00:00:00Z"}


def obj(api_version, kind, name, **fields):
    meta = dict(META, name=name)
    if kind in ("Node", "CertificateSigningRequest"):
        meta.pop("namespace")
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **fields}


CSR_PEM = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIBAA==\n-----END CERTIFICATE REQUEST-----\n"
POD_SPEC = {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}]}

# Objects the fake server returns on GET (commands that read before they write).
CANNED = {
    "/api/v1/namespaces/default/pods/p": obj("v1", "Pod", "p", spec=POD_SPEC, metadata=dict(
        META, name="p", labels={"app": "x"})),
    "/apis/apps/v1/namespaces/default/deployments/web": obj("apps/v1", "Deployment", "web", spec={
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}}),
    "/apis/batch/v1/namespaces/default/cronjobs/c": obj("batch/v1", "CronJob", "c", spec={
        "schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": dict(
            POD_SPEC, restartPolicy="OnFailure")}}}}),
    "/apis/certificates.k8s.io/v1/certificatesigningrequests/csr1": obj(
        "certificates.k8s.io/v1", "CertificateSigningRequest", "csr1", spec={
            "request": __import__("base64").b64encode(CSR_PEM).decode(),
            "signerName": "kubernetes.io/kube-apiserver-client", "expirationSeconds": 3600,
            "usages": ["client auth"], "username": "alice", "uid": "u-1", "groups": ["devs"],
            "extra": {"scopes": ["a", "b"]}}, status={}),
    "/api/v1/nodes/node1": obj("v1", "Node", "node1", spec={}),
    "/api/v1/pods": {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                     "items": [obj("v1", "Pod", "dp", spec=dict(POD_SPEC, nodeName="node1"), metadata=dict(
                         META, name="dp", ownerReferences=[{
                             "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                             "uid": "00000000-0000-0000-0000-000000000002", "controller": True}]))]},
}

# Status a command needs in the response to succeed, by resource.
REPLY_STATUS = {
    "token": {"token": "fake-token", "expirationTimestamp": "2024-01-01T01:00:00Z"},
    "selfsubjectaccessreviews": {"allowed": True},
    "selfsubjectrulesreviews": {"resourceRules": [], "nonResourceRules": [], "incomplete": False},
    "selfsubjectreviews": {"userInfo": {"username": "alice"}},
}

# (fixture name, kubectl arguments). Keep names stable: they are fixture files.
COMMANDS = [
    ("configmap", ["create", "configmap", "demo", "--from-literal=a=b", "--from-literal=c=d",
                   "--from-file=bin=@BIN@"]),
    ("secret-generic", ["create", "secret", "generic", "s", "--from-literal=k=v", "--type=Opaque"]),
    ("secret-docker-registry", ["create", "secret", "docker-registry", "reg", "--docker-server=r.example",
                                "--docker-username=u", "--docker-password=p", "--docker-email=u@example.com"]),
    ("secret-tls", ["create", "secret", "tls", "tls1", "--cert=@CERT@", "--key=@KEY@"]),
    ("namespace", ["create", "namespace", "n"]),
    ("serviceaccount", ["create", "serviceaccount", "sa"]),
    ("deployment", ["create", "deployment", "web", "--image=nginx:1", "--replicas=2", "--port=80"]),
    ("deployment-multi", ["create", "deployment", "multi", "--image=nginx", "--image=redis"]),
    ("job", ["create", "job", "j", "--image=busybox", "--", "echo", "hi"]),
    ("job-from-cronjob", ["create", "job", "j2", "--from=cronjob/c"]),
    ("cronjob", ["create", "cronjob", "c", "--image=busybox", "--schedule=*/1 * * * *",
                 "--restart=OnFailure", "--", "date"]),
    ("pod", ["run", "p", "--image=busybox", "--labels=app=x,tier=y", "--env=A=B", "--port=8080",
             "--annotations=note=hi", "--restart=Never", "--image-pull-policy=IfNotPresent", "--", "sleep", "1"]),
    ("service-clusterip", ["create", "service", "clusterip", "svc", "--tcp=80:8080", "--tcp=443:https"]),
    ("service-headless", ["create", "service", "clusterip", "hl", "--clusterip=None"]),
    ("service-nodeport", ["create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"]),
    ("service-loadbalancer", ["create", "service", "loadbalancer", "lb", "--tcp=5678:8080"]),
    ("service-externalname", ["create", "service", "externalname", "en", "--external-name=example.com"]),
    ("expose-pod", ["expose", "pod", "p", "--port=80", "--target-port=8080", "--name=p-svc"]),
    ("priorityclass", ["create", "priorityclass", "pc", "--value=1000", "--description=high",
                       "--preemption-policy=Never"]),
    ("pdb-min", ["create", "poddisruptionbudget", "pdb", "--selector=app=x", "--min-available=1"]),
    ("pdb-max", ["create", "poddisruptionbudget", "pdb2", "--selector=app=x", "--max-unavailable=50%"]),
    ("quota", ["create", "quota", "q", "--hard=cpu=500m,memory=1Gi,pods=2"]),
    ("role", ["create", "role", "r", "--verb=get,list,watch", "--resource=pods,deployments.apps"]),
    ("clusterrole", ["create", "clusterrole", "cr", "--verb=get", "--non-resource-url=/healthz"]),
    ("clusterrole-aggregated", ["create", "clusterrole", "agg",
                                "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true"]),
    ("rolebinding", ["create", "rolebinding", "rb", "--clusterrole=view", "--user=alice",
                     "--serviceaccount=default:sa", "--group=devs"]),
    ("clusterrolebinding", ["create", "clusterrolebinding", "crb", "--clusterrole=view", "--user=bob"]),
    ("ingress", ["create", "ingress", "ing", "--class=nginx", "--rule=foo.com/bar*=svc:8080,tls=my-cert",
                 "--default-backend=defsvc:http", "--annotation=a=b"]),
    ("autoscale", ["autoscale", "deployment", "web", "--min=2", "--max=5", "--cpu-percent=80"]),
    ("token", ["create", "token", "sa", "--duration=1h", "--audience=api"]),
    ("can-i", ["auth", "can-i", "get", "pods", "--namespace=default"]),
    ("can-i-list", ["auth", "can-i", "--list", "--namespace=default"]),
    ("whoami", ["auth", "whoami"]),
    ("certificate-approve", ["certificate", "approve", "csr1"]),
    ("drain", ["drain", "node1", "--ignore-daemonsets", "--timeout=20s"]),
    ("debug-copy", ["debug", "p", "--image=busybox", "--copy-to=p-copy", "--container=dbg", "--attach=false",
                    "--profile=general"]),
    # The pod name has a random suffix: fixtures.rs ignores metadata.name here.
    ("debug-node", ["debug", "node/node1", "--image=busybox", "--attach=false", "--profile=general"]),
]


# kubectl 1.33.1 dereferences a nil pointer in debug's displayWarning against
# this fake server; the 1.31 and 1.32 captures of the same command suffice.
KNOWN_FAILURES = {("debug-copy", "kubectl.1.33")}


def discovery_list(gv):
    group, _, version = gv.rpartition("/")
    resources = []
    for name, kind, namespaced, extra in RESOURCES[gv]:
        r = {"name": name, "singularName": "" if "/" in name else kind.lower(), "namespaced": namespaced,
             "kind": kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
        r.update(extra)
        resources.append(r)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def api_groups():
    groups = {}
    for gv in RESOURCES:
        if "/" in gv:
            group, version = gv.split("/")
            groups.setdefault(group, []).append({"groupVersion": gv, "version": version})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": vs, "preferredVersion": vs[0]} for g, vs in groups.items()]}


class State:
    lock = threading.Lock()
    command = None  # fixture name of the running command
    start = 0  # index in captures where the running command began
    captures = []  # (name, method, path, content type, body)
    json_bodies = {}  # (name, index) -> parsed JSON body, from the JSON run


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "reason": "NotFound", "message": f"{self.path} not found", "code": 404})

    def do_GET(self):
        path = urlparse(self.path).path
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.4", "platform": "linux/amd64"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            return self.reply(200, api_groups())
        if path == "/api/v1":
            return self.reply(200, discovery_list("v1"))
        if path.startswith("/apis/") and path.count("/") == 3 and path[6:] in RESOURCES:
            return self.reply(200, discovery_list(path[6:]))
        if path in CANNED:
            return self.reply(200, CANNED[path])
        return self.not_found()

    def write(self, code):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = urlparse(self.path).path
        ctype = self.headers.get("Content-Type", "")
        with State.lock:
            name = State.command
            index = sum(1 for c in State.captures[State.start:] if c[1] in ("POST", "PUT"))
            State.captures.append((name, self.command, path, ctype, body))
        if ctype.startswith("application/json"):
            reply = json.loads(body)
            State.json_bodies[(name, index)] = copy.deepcopy(reply)
        elif self.command == "PATCH":
            reply = CANNED.get(path) or {}
        else:
            reply = copy.deepcopy(State.json_bodies.get((name, index), {}))
        status = REPLY_STATUS.get(path.rstrip("/").rsplit("/", 1)[-1])
        if status:
            reply["status"] = status
        self.reply(code, reply)

    def do_POST(self):
        self.write(201)

    def do_PUT(self):
        self.write(200)

    def do_PATCH(self):
        self.write(200)


def make_inputs(tmp):
    bin_path = os.path.join(tmp, "bin")
    with open(bin_path, "wb") as fh:
        fh.write(b"\x00\xffbinary\x80")
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", "/CN=example", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return {"@BIN@": bin_path, "@CERT@": cert, "@KEY@": key}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "data"))
    ap.add_argument("--only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(tmp)
        kubeconfig = os.path.join(tmp, "kubeconfig")
        open(kubeconfig, "w").close()
        for name, argv in COMMANDS:
            if args.only and name != args.only:
                continue
            for placeholder, path in inputs.items():
                argv = [a.replace(placeholder, path) for a in argv]
            for binary, suffix in KUBECTLS:
                with State.lock:
                    State.command = name
                    State.start = start = len(State.captures)
                cache = tempfile.mkdtemp(dir=tmp)
                env = dict(os.environ, HOME=cache, KUBECONFIG=kubeconfig)
                proc = subprocess.run([binary, "--server", url, "--cache-dir", cache, "--namespace", "default",
                                       *argv], env=env, capture_output=True, text=True, timeout=120)
                writes = [c for c in State.captures[start:] if c[1] in ("POST", "PUT")]
                if proc.returncode != 0 or not writes:
                    if (name, os.path.basename(binary)) in KNOWN_FAILURES:
                        print(f"{name:24} {os.path.basename(binary):13} known failure, skipped")
                        continue
                    failures += 1
                    print(f"FAIL {name} {os.path.basename(binary)}: rc={proc.returncode} "
                          f"writes={len(writes)}\n{proc.stderr.strip()}", file=sys.stderr)
                    continue
                # The object under test is the last write (drain cordons with a PATCH first).
                body, ctype = writes[-1][4], writes[-1][3]
                if suffix != ".json" and ctype != "application/vnd.kubernetes.protobuf":
                    # kubectl run / expose / drain still send JSON from 1.32 on.
                    print(f"{name:24} {os.path.basename(binary):13} sent {ctype}: no fixture")
                    continue
                if suffix == ".json":
                    body = (json.dumps(json.loads(body), indent=2, sort_keys=False) + "\n").encode()
                with open(os.path.join(args.out, name + suffix), "wb") as fh:
                    fh.write(body)
                print(f"{name:24} {os.path.basename(binary):13} {writes[-1][1]:4} {ctype:40} {len(body)} bytes")
            json_path = os.path.join(args.out, name + ".json")
            if os.path.exists(json_path) and not os.path.exists(os.path.join(args.out, name + ".pb")):
                os.remove(json_path)  # nothing to compare it with
    server.shutdown()
    with open(os.path.join(args.out, "captures.tsv"), "w") as fh:
        fh.write("fixture\tmethod\tpath\tcontent-type\tbytes\n")
        for name, method, path, ctype, body in State.captures:
            if method in ("POST", "PUT"):
                fh.write(f"{name}\t{method}\t{path}\t{ctype}\t{len(body)}\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
