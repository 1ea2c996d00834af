#!/usr/bin/env bash
# ledge's one test command: everything CI runs, runnable on a fresh Debian 12 machine with no stdin.
#
#   ./test.sh                      deps → fmt → clippy → unit/integration tests → release build → e2e
#                                  (e2e: the netns bed of crates/testkit as root, then pytest)
#   ./test.sh -k watch             the same, passing `-k watch` to pytest (tests/e2e)
#   ./test.sh --e2e-only -k watch  skip fmt/clippy/cargo tests: deps → release build → e2e
#
# Knobs (environment):
#   LEDGE_TEST_STAGES  comma-separated subset of: deps,fmt,clippy,test,build,e2e (default: all).
#                      e.g. LEDGE_TEST_STAGES=deps installs the Debian packages and the venv only.
#   CARGO_TARGET_DIR   where cargo builds; defaults to $HOME/.cache/ledge-target, OUTSIDE the clone, so
#                      that CI (a fresh clone per run on the same machine) reuses earlier builds.
#   LEDGE_BIN          the binary the e2e tests start (default: $CARGO_TARGET_DIR/release/ledge).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
REPO_ROOT=$(pwd)

# Debian packages the build and the tests need. Later work adds its own here (runc, mosquitto,
# ...). python3-venv is added below only when the venv module is unusable.
DEBIAN_PACKAGES=(protobuf-compiler iproute2
    # The etcd datastore: the store suite, the HA tests and the bench baseline run real etcd.
    etcd-server
    # Wasm fixtures and examples/hello-wasm: C → WASI with clang + wasi-libc (crates/wasm/fixtures).
    clang lld wasi-libc libclang-rt-14-dev-wasm32
    busybox-static
    # The netns bed: HTTP checks from inside a host's namespace.
    curl)

ALL_STAGES=deps,fmt,clippy,test,build,e2e
STAGES=${LEDGE_TEST_STAGES:-$ALL_STAGES}
if [[ ${1:-} == --e2e-only ]]; then
    shift
    STAGES=${LEDGE_TEST_STAGES:-deps,build,e2e}
fi
PYTEST_ARGS=("$@")

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ledge-target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi

VENV=$REPO_ROOT/.venv
REQUIREMENTS=$REPO_ROOT/tests/e2e/requirements.txt

stage_enabled() { [[ ",$STAGES," == *",$1,"* ]]; }

STAGE_NAME=""
STAGE_START=$SECONDS
stage() {
    end_stage
    STAGE_NAME=$1
    STAGE_START=$SECONDS
    echo "==> $*"
}
end_stage() {
    if [[ -n $STAGE_NAME ]]; then
        echo "    ($STAGE_NAME took $((SECONDS - STAGE_START))s)"
    fi
    STAGE_NAME=""
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        echo "error: need root (or passwordless sudo) to run: $*" >&2
        return 1
    fi
}

package_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

install_debian_packages() {
    local wanted=("${DEBIAN_PACKAGES[@]}") missing=() pkg
    # The venv module (and ensurepip, which creates the venv's pip) is a separate Debian package.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        wanted+=(python3-venv)
    fi
    for pkg in "${wanted[@]}"; do
        package_installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        echo "    debian packages present: ${wanted[*]}"
        return
    fi
    echo "    installing debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null
    # Debian starts the packaged etcd service on install; the tests run their own members.
    if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
        as_root systemctl stop etcd || true
    fi
}

# (Re)create .venv when it is missing or broken, and reinstall the requirements only when they (or
# the interpreter) changed, so a warm machine runs the suite without touching PyPI.
setup_venv() {
    if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    local stamp=$VENV/.ledge-requirements.sha256 want
    want="$(sha256sum <"$REQUIREMENTS") $("$VENV/bin/python" -c 'import sys; print(sys.version)')"
    if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
        echo "    venv up to date: $VENV"
        return
    fi
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
    echo "    venv ready: $VENV"
}

if stage_enabled deps; then
    stage deps
    install_debian_packages
    setup_venv
    # Wasm test fixtures and the hello-wasm component, under $CARGO_TARGET_DIR/wasm-fixtures
    # (ledge-wasm's tests also build them on first use; this makes them ready for e2e).
    "$REPO_ROOT/crates/wasm/fixtures/build.sh"
fi

if stage_enabled fmt; then
    stage fmt
    cargo fmt --all -- --check
fi

if stage_enabled clippy; then
    stage clippy
    cargo clippy --workspace --all-targets -- -D warnings
fi

if stage_enabled test; then
    if cargo nextest --version >/dev/null 2>&1; then
        stage "test (cargo nextest)"
        cargo nextest run --workspace --no-tests=warn
        # nextest does not run doctests.
        stage "test (doctests)"
        cargo test --workspace --doc
    else
        stage "test (cargo test)"
        cargo test --workspace
    fi
fi

if stage_enabled build; then
    stage build
    cargo build --release -p ledge
fi

if stage_enabled e2e; then
    stage "e2e (netns bed: ledge-testkit)"
    export LEDGE_BIN=${LEDGE_BIN:-$CARGO_TARGET_DIR/release/ledge}
    if [[ ! -x $VENV/bin/python ]]; then
        echo "error: $VENV is missing; run with the deps stage first" >&2
        exit 1
    fi
    # The multi-host bed (crates/testkit): a server and agents in their own network namespaces,
    # links cut and restored. Root only (it creates namespaces); its tests are #[ignore]d so the
    # test stage, which may run unprivileged, skips them.
    if [[ $(id -u) -ne 0 ]]; then
        echo "    SKIPPED: the netns bed needs root (ip netns); run ./test.sh as root to include it"
    elif cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run -p ledge-testkit --run-ignored ignored-only
    else
        cargo test -p ledge-testkit -- --ignored
    fi
    stage "e2e (pytest)"
    # exec: pytest's summary must be the last line printed (CI reads it), and its exit code is ours.
    exec "$VENV/bin/python" -m pytest "$REPO_ROOT/tests/e2e" "${PYTEST_ARGS[@]}"
fi
end_stage
