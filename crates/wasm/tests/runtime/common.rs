//! Shared helpers: a runtime per test, container specs, CRI log reading, fixtures.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ledge_runtime::log::{LogWriter, Stream, parse_line};
use ledge_runtime::{ContainerSpec, Limits, Mount, Port, Protocol};
use ledge_wasm::{WasmConfig, WasmRuntime};

/// A runtime with its own cache directory (kept in the returned tempdir).
pub fn runtime(dir: &Path) -> WasmRuntime {
    let mut config = WasmConfig::new(dir.join("cache"));
    config.max_instances = Some(64);
    WasmRuntime::new(config).expect("wasm runtime")
}

/// A container spec for the artifact at `wasm`, logging under `dir`.
pub fn spec(dir: &Path, name: &str, wasm: &Path) -> ContainerSpec {
    ContainerSpec {
        namespace: "default".into(),
        pod_name: format!("pod-{name}"),
        pod_uid: format!("uid-{name}"),
        name: name.into(),
        image: format!("{name}.wasm"),
        artifact: Some(wasm.to_owned()),
        command: vec![],
        args: vec![],
        env: vec![],
        working_dir: None,
        mounts: vec![],
        ports: vec![],
        limits: Limits::default(),
        log: Arc::new(LogWriter::create(dir.join("logs").join(format!("{name}.log"))).unwrap()),
    }
}

/// Write `wat` (text) compiled to a module under `dir`.
pub fn wat_file(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

/// The (stream, text) records of a container's log.
pub fn log_lines(spec: &ContainerSpec) -> Vec<(Stream, String)> {
    let data = std::fs::read(spec.log.path()).unwrap_or_default();
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let r = parse_line(l).expect("CRI log line");
            (r.stream, String::from_utf8_lossy(r.text).into_owned())
        })
        .collect()
}

pub fn stdout(spec: &ContainerSpec) -> Vec<String> {
    log_lines(spec)
        .into_iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, t)| t)
        .collect()
}

pub fn stderr(spec: &ContainerSpec) -> Vec<String> {
    log_lines(spec)
        .into_iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, t)| t)
        .collect()
}

/// A read-only or writable mount of `host` at `guest`.
pub fn mount(host: &Path, guest: &str, read_only: bool) -> Mount {
    Mount {
        host_path: host.to_owned(),
        container_path: guest.into(),
        read_only,
    }
}

/// A TCP port on 127.0.0.1.
pub fn local_port(port: u16) -> Port {
    Port {
        name: Some("http".into()),
        container_port: port,
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".into()),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A liveness guard: tests assert behaviour, but must fail rather than hang when it is broken.
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish"))
}

/// A fixture built by fixtures/build.sh (built on first use in this process).
pub fn fixture(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let manifest = PathBuf::from(crate::manifest_dir());
        let out = match std::env::var_os("LEDGE_WASM_FIXTURES") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let target = std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| manifest.join("../../target"));
                target.join("wasm-fixtures")
            }
        };
        let status = std::process::Command::new(manifest.join("fixtures/build.sh"))
            .env("LEDGE_WASM_FIXTURES", &out)
            .status()
            .expect("run fixtures/build.sh");
        assert!(status.success(), "fixtures/build.sh failed");
        out
    });
    let path = dir.join(name);
    assert!(path.exists(), "fixture {} missing", path.display());
    path
}
