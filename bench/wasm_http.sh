#!/usr/bin/env bash
# ledge-wasm against `wasmtime serve` (the reference runtime, same wasmtime release 48):
#
#   bench/wasm_http.sh                    # defaults: 10 s per run, 1 wrk thread, 16 connections
#   DURATION=5 CONNECTIONS=32 bench/wasm_http.sh
#
# 1. builds the hello component (examples/hello-wasm) and the C preview 1 hello;
# 2. HTTP: serves hello-http.wasm with ledge-wasm (the `wasm_bench` example driving WasmRuntime
#    directly, release build), with `wasmtime serve`, and through ledge as a user runs it
#    (`ledge up`, the image imported, a one-replica Deployment and a NodePort Service applied
#    with kubectl: the pod's containerPort, then the agent's NodePort proxy in front), each on
#    free loopback ports, and measures all with the same load generator (Debian `wrk`,
#    keep-alive HTTP/1.1): requests/s and latency percentiles;
# 3. CPU limits: how much a spinning guest gets done under limits.cpu 500m and 250m, relative
#    to none (epoch duty cycle, crates/wasm/src/limits.rs);
# 4. starts: cold (compile), warm (disk cache, new runtime) and hot (instantiate + run + exit)
#    start latency of hello-p1.wasm in ledge-wasm; `wasmtime run` of the precompiled module, a
#    process per start, as the reference.
#
# Installs what is missing: `wrk` (apt), wasmtime-cli 48.0.8 (`cargo install`, into
# $LEDGE_TOOLS, default ~/.cache/ledge-tools, outside the repo; it takes a while, once).
# Every process it starts is killed on exit; all traffic is to 127.0.0.1.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ledge-target}
LEDGE_TOOLS=${LEDGE_TOOLS:-$HOME/.cache/ledge-tools}
WASMTIME=$LEDGE_TOOLS/bin/wasmtime
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
STARTS=${STARTS:-2000}
FIXTURES=$CARGO_TARGET_DIR/wasm-fixtures

PIDS=()
SCRATCH=$(mktemp -d)
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if ! command -v wrk >/dev/null; then
    apt-get install -y -qq wrk </dev/null || { apt-get update -qq && apt-get install -y -qq wrk </dev/null; }
fi
if [[ ! -x $WASMTIME ]] || [[ $("$WASMTIME" --version) != "wasmtime 48.0.8"* ]]; then
    echo "==> installing wasmtime-cli 48.0.8 into $LEDGE_TOOLS (once; slow)"
    nice -n 19 cargo install wasmtime-cli --version 48.0.8 --locked --root "$LEDGE_TOOLS"
fi

echo "==> building fixtures and the release driver"
"$REPO_ROOT/crates/wasm/fixtures/build.sh"
cargo build --quiet --release -p ledge-wasm --example wasm_bench -p ledge
DRIVER=$CARGO_TARGET_DIR/release/examples/wasm_bench
LEDGE=$CARGO_TARGET_DIR/release/ledge

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {
    local port=$1
    for _ in $(seq 1 600); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null ||
            python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: nothing answers on port $port" >&2
    return 1
}

# run_wrk NAME PORT: prints "NAME req/s p50 p99".
run_wrk() {
    local name=$1 port=$2 out
    # Warm-up (the first requests pay for lazy initialisation on both sides).
    wrk -t1 -c4 -d2s "http://127.0.0.1:$port/" >/dev/null
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/")
    echo "$out" >"$SCRATCH/$name.wrk"
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
    printf '%-16s %12s req/s   p50 %8s   p99 %8s %s\n' "$name" "$rps" "$p50" "$p99" "$errors"
    echo "$rps" >"$SCRATCH/$name.rps"
}

echo "==> HTTP: hello-http.wasm, wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s (keep-alive)"
# ledge-wasm
PORT=$(free_port)
mkfifo "$SCRATCH/stdin"
"$DRIVER" serve "$FIXTURES/hello-http.wasm" "$PORT" <"$SCRATCH/stdin" >"$SCRATCH/ledge.out" 2>&1 &
PIDS+=($!)
exec 8>"$SCRATCH/stdin" # holds the driver's stdin open; closed on exit
wait_http "$PORT"
run_wrk ledge-wasm "$PORT"
kill "${PIDS[-1]}"

# wasmtime serve (same component, its default pooling allocator and per-request instances)
PORT=$(free_port)
"$WASMTIME" serve --addr "127.0.0.1:$PORT" "$FIXTURES/hello-http.wasm" >"$SCRATCH/wasmtime.out" 2>&1 &
PIDS+=($!)
wait_http "$PORT"
run_wrk "wasmtime serve" "$PORT"
kill "${PIDS[-1]}"

# wasmtime serve with ledge-wasm's pool settings (128 KiB of each slot reset in place rather than
# decommitted, crates/wasm/src/engine.rs): what is left is the two hosts' own per-request work.
PORT=$(free_port)
KEEP=131072
"$WASMTIME" serve -O pooling-allocator=y -O pooling-memory-keep-resident=$KEEP \
    -O pooling-table-keep-resident=$KEEP -O pooling-async-stack-keep-resident=$KEEP \
    --addr "127.0.0.1:$PORT" "$FIXTURES/hello-http.wasm" >"$SCRATCH/wasmtime-tuned.out" 2>&1 &
PIDS+=($!)
wait_http "$PORT"
run_wrk "wasmtime (tuned)" "$PORT"
kill "${PIDS[-1]}"

# Through ledge: `ledge up` (server + agent in one process), the component as a pod of a
# Deployment, a NodePort Service in front; no CPU or memory limits, so the pod gets what the
# runtimes above got.
API_PORT=$(free_port)
POD_PORT=$(free_port)
NODE_PORT=$(python3 -c 'import random, socket
while True:
    p = random.randint(30000, 32767); s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass')
"$LEDGE" up --data-dir "$SCRATCH/up" --https-listen-port "$API_PORT" --bind-address 127.0.0.1 \
    --node-name bench >"$SCRATCH/up.log" 2>&1 &
PIDS+=($!)
export KUBECONFIG=$SCRATCH/up/server/admin.kubeconfig
for _ in $(seq 1 600); do
    kubectl get --raw /readyz >/dev/null 2>&1 && kubectl get node bench >/dev/null 2>&1 && break
    sleep 0.1
done
"$LEDGE" image import "$FIXTURES/hello-http.wasm" --name hello-wasm:bench \
    --data-dir "$SCRATCH/up/agent" >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello-wasm}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello-wasm}}
  template:
    metadata: {labels: {app: hello-wasm}}
    spec:
      runtimeClassName: wasm
      containers:
      - name: hello
        image: hello-wasm:bench
        ports: [{name: http, containerPort: $POD_PORT}]
---
apiVersion: v1
kind: Service
metadata: {name: hello-wasm}
spec:
  type: NodePort
  selector: {app: hello-wasm}
  ports: [{name: http, port: 80, targetPort: http, nodePort: $NODE_PORT}]
YAML
kubectl rollout status deployment/hello-wasm --timeout=120s >/dev/null
wait_http "$POD_PORT"
run_wrk "ledge pod" "$POD_PORT"
wait_http "$NODE_PORT"
run_wrk "ledge NodePort" "$NODE_PORT"
kill "${PIDS[-1]}"

python3 - "$SCRATCH/ledge-wasm.rps" "$SCRATCH/wasmtime serve.rps" "$SCRATCH/wasmtime (tuned).rps" \
    "$SCRATCH/ledge pod.rps" "$SCRATCH/ledge NodePort.rps" <<'PY'
import sys
ours, ref, tuned, pod, nodeport = (float(open(p).read()) for p in sys.argv[1:6])
print(f"ledge-wasm / wasmtime serve throughput: {ours / ref:.2f} (defaults), {ours / tuned:.2f} (same pool settings)")
print(f"through ledge / wasmtime serve (defaults): pod port {pod / ref:.2f}, NodePort {nodeport / ref:.2f}")
PY

echo "==> CPU limits: a spinning guest, 3 s each"
"$DRIVER" cpu 3

echo "==> starts: hello-p1.wasm (C, WASI preview 1)"
"$DRIVER" starts "$FIXTURES/hello-p1.wasm" "$STARTS"
"$WASMTIME" compile "$FIXTURES/hello-p1.wasm" -o "$SCRATCH/hello-p1.cwasm"
python3 - "$WASMTIME" "$SCRATCH/hello-p1.cwasm" <<'PY'
import subprocess, sys, time
wasmtime, cwasm = sys.argv[1:3]
times = []
for _ in range(50):
    t = time.perf_counter()
    subprocess.run([wasmtime, "run", "--allow-precompiled", cwasm], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    times.append(time.perf_counter() - t)
times.sort()
print(f"wasmtime run (precompiled, a process per start) n=50: p50 {times[25]*1e3:.2f} ms p99 {times[49]*1e3:.2f} ms")
PY
