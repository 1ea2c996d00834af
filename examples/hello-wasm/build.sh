#!/usr/bin/env bash
# Builds hello-wasm (hello.c) into a `wasi:http/proxy` component, from registry tools only:
#   1. C bindings for the wasi:http/proxy world, generated from the WIT shipped in the
#      wasmtime-wasi-http crate (the version ledge-wasm links, so host and guest agree);
#   2. Debian clang + wasi-libc compile a WASI preview 1 reactor module;
#   3. wasmtime's preview 1 "proxy" adapter wraps it into a component.
# Steps 1 and 3 use crates/wasm/fixtures/tool (crates.io wit-bindgen-c and wit-component).
#
# Output: $OUT/hello-http.wasm (default OUT: $CARGO_TARGET_DIR/wasm-fixtures). Rebuilt only
# when hello.c or the tool changed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ledge-target}
OUT=${OUT:-${LEDGE_WASM_FIXTURES:-$CARGO_TARGET_DIR/wasm-fixtures}}
TOOL_TARGET=$CARGO_TARGET_DIR/wasm-fixture-tool
TOOL=$TOOL_TARGET/debug/ledge-wasm-fixture-tool
TARGET=$OUT/hello-http.wasm
mkdir -p "$OUT"

cargo build --quiet --manifest-path "$REPO_ROOT/crates/wasm/fixtures/tool/Cargo.toml" --locked \
    --target-dir "$TOOL_TARGET"

if [[ -f $TARGET && ! $HERE/hello.c -nt $TARGET && ! $TOOL -nt $TARGET ]]; then
    exit 0
fi

# The WIT of the wasmtime-wasi-http version in the workspace's Cargo.lock, from cargo's registry
# (`cargo metadata` downloads it if needed).
WIT=$(cd "$REPO_ROOT" && cargo metadata --format-version 1 |
    python3 -c 'import json,sys,os
m = json.load(sys.stdin)
p = [p for p in m["packages"] if p["name"] == "wasmtime-wasi-http"][0]
print(os.path.join(os.path.dirname(p["manifest_path"]), "wit"))')

if [[ ! -f $WIT/world.wit ]]; then
    echo "error: no WIT found for wasmtime-wasi-http (looked in ${WIT:-nothing})" >&2
    exit 1
fi

GEN=$OUT/hello-http-gen
rm -rf "$GEN"
"$TOOL" bindings "$WIT" wasi:http/proxy "$GEN"
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wl,--strip-all -I "$GEN" \
    "$HERE/hello.c" "$GEN/proxy.c" "$GEN/proxy_component_type.o" -o "$OUT/hello-http-core.wasm"
"$TOOL" component proxy "$OUT/hello-http-core.wasm" "$TARGET.tmp"
mv "$TARGET.tmp" "$TARGET"
echo "built $TARGET"
