//! Benchmark driver for ledge-wasm (bench/wasm_http.sh runs it in release):
//!
//! ```text
//! wasm_bench serve FILE PORT       serve a wasi:http component on 127.0.0.1:PORT until stdin closes
//! wasm_bench starts FILE N         start-to-exit latency of a command, N times (plus cold/warm load)
//! wasm_bench cpu SECS              work done by a spinning guest under limits.cpu 250m/500m/none
//! ```
//!
//! It drives [`WasmRuntime`] directly, as the agent does, without the API server in the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ledge_runtime::log::LogWriter;
use ledge_runtime::{ContainerSpec, Limits, Port, Protocol, Runtime};
use ledge_wasm::{WasmConfig, WasmRuntime};
use tokio::io::AsyncReadExt;

fn spec(name: &str, wasm: &Path, log: Arc<LogWriter>) -> ContainerSpec {
    ContainerSpec {
        namespace: "bench".into(),
        pod_name: name.into(),
        pod_uid: name.into(),
        name: name.into(),
        image: wasm.display().to_string(),
        artifact: Some(wasm.to_owned()),
        command: vec![],
        args: vec![],
        env: vec![],
        working_dir: None,
        mounts: vec![],
        ports: vec![],
        limits: Limits::default(),
        log,
    }
}

fn runtime(cache: &Path) -> Result<WasmRuntime> {
    Ok(WasmRuntime::new(WasmConfig::new(cache))?)
}

async fn serve(wasm: PathBuf, port: u16) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(&dir.path().join("cache"))?;
    let log = Arc::new(LogWriter::create(dir.path().join("serve.log"))?);
    let mut s = spec("serve", &wasm, log);
    s.ports = vec![Port {
        name: None,
        container_port: port,
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".into()),
    }];
    let c = rt.start(s).await?;
    println!("serving {} on 127.0.0.1:{port}", wasm.display());
    // Until stdin closes (the bench script holds it open).
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    let exit = c.stop(Duration::from_secs(5)).await;
    println!("stopped: {exit:?}");
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn starts(wasm: PathBuf, n: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let log = Arc::new(LogWriter::create(dir.path().join("starts.log"))?);

    // Cold: a new runtime and an empty cache (hash + compile + pre-instantiate + run).
    let t = Instant::now();
    let rt = runtime(&cache)?;
    let exit = rt
        .start(spec("cold", &wasm, log.clone()))
        .await?
        .wait()
        .await;
    let cold = t.elapsed();
    if exit.code != 0 {
        bail!("{} exited {exit:?}", wasm.display());
    }
    drop(rt);

    // Warm: a new runtime (agent restart) with the compiled file on disk.
    let t = Instant::now();
    let rt = runtime(&cache)?;
    rt.start(spec("warm", &wasm, log.clone()))
        .await?
        .wait()
        .await;
    let warm = t.elapsed();

    // Hot: the image is loaded; each start is instantiate + run + exit.
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let c = rt
            .start(spec(&format!("hot{i}"), &wasm, log.clone()))
            .await?;
        c.wait().await;
        times.push(t.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "starts {}: cold {:.2} ms, warm (disk cache, new runtime) {:.2} ms, hot n={n} mean {:.1} µs p50 {:.1} µs p99 {:.1} µs",
        wasm.file_name().unwrap_or_default().to_string_lossy(),
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e6,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );
    Ok(())
}

/// A guest that spins forever, writing a line to stdout every 2^20 loop iterations.
const SPINNER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick\n")
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 5))
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.eqz (i32.and (local.get $i) (i32.const 0xfffff)))
        (then (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
      (br $l))))"#;

/// Iterations (in units of 2^20) a spinner completes in `secs` under each CPU limit, run one
/// at a time: the share a limit gives, relative to no limit.
async fn cpu(secs: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = runtime(&dir.path().join("cache"))?;
    let wasm = dir.path().join("spin.wasm");
    std::fs::write(&wasm, wat::parse_str(SPINNER)?)?;
    let mut unlimited = None;
    for millis in [None, Some(500), Some(250)] {
        let log_path = dir.path().join(format!("spin-{millis:?}.log"));
        let log = Arc::new(LogWriter::create(&log_path)?);
        let mut s = spec("spin", &wasm, log);
        s.limits.cpu_millis = millis;
        let c = rt.start(s).await?;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        c.stop(Duration::ZERO).await;
        let ticks = std::fs::read_to_string(&log_path)?.lines().count() as f64;
        let base = *unlimited.get_or_insert(ticks);
        println!(
            "cpu limit {:>9}: {ticks:>8.0} × 2^20 iterations in {secs} s ({:.2} of unlimited)",
            millis.map_or("none".to_owned(), |m| format!("{m}m")),
            ticks / base
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", file, port] => serve(file.into(), port.parse().context("port")?).await,
        ["starts", file, n] => starts(file.into(), n.parse().context("count")?).await,
        ["cpu", secs] => cpu(secs.parse().context("seconds")?).await,
        _ => bail!(
            "usage: wasm_bench serve FILE PORT | wasm_bench starts FILE N | wasm_bench cpu SECS"
        ),
    }
}
