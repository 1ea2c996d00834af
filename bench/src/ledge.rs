//! The ledge side: start a `ledge server` on a fresh data directory and drive it through the
//! Kubernetes API (ConfigMaps over HTTPS with the admin client certificate).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::kube::{Kube, KubeConfig};
use crate::load::{self, Percentiles, Phase, Receipt};
use crate::plan::{Figures, Plan};
use crate::proc::{self, Server};

const NS: &str = "bench";
const LIST_NS: &str = "bench-list";
const WATCH_NS: &str = "bench-watch";

fn configmap(name: &str, data: Value) -> Bytes {
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    });
    Bytes::from(body.to_string())
}

/// Start `ledge server` from `bin` on loopback `port` with its data in `data`, its output in
/// `work/<log>` and `extra` flags (e.g. `--datastore-endpoint`).
pub fn spawn_server(
    bin: &Path,
    work: &Path,
    data: &Path,
    log: &str,
    port: u16,
    extra: &[String],
) -> anyhow::Result<Server> {
    let mut cmd = Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data)
        .args(["--https-listen-port", &port.to_string()])
        .args(["--bind-address", "127.0.0.1"])
        .args(extra)
        .env("LEDGE_LOG", "warn");
    Server::spawn("ledge server", cmd, &work.join(log), &work.join("pids"))
}

/// Run every scenario against a fresh `ledge server` started from `bin` with `extra` flags;
/// `name` names its data directory (`work/<name>-data`), its log (`work/<name>.log`) and its
/// progress lines.
pub async fn bench(
    bin: &Path,
    work: &Path,
    plan: &Plan,
    name: &str,
    extra: &[String],
) -> anyhow::Result<Figures> {
    let data = work.join(format!("{name}-data"));
    let log = format!("{name}.log");
    let mut server = spawn_server(bin, work, &data, &log, proc::free_port()?, extra)?;
    let pid = server.pid();
    let cpu = proc::CpuSample::take(pid);
    let mut fig = Figures {
        version: proc::version_line(bin),
        ..Default::default()
    };

    let config = wait_ready(&mut server, &data).await?;
    tokio::time::sleep(plan.settle()).await;
    fig.idle_rss = proc::rss_bytes(pid)?;
    println!("{name}: idle RSS {} kB", fig.idle_rss / 1024);

    let kube = Arc::new(Kube::connect(&config, plan.connections).await?);
    for ns in [NS, LIST_NS, WATCH_NS] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        kube.expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/v1/namespaces",
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    }
    // Warm the connections (TLS, HTTP/2 windows) outside any measurement.
    let k = kube.clone();
    load::run(phase(plan, 500, None), move |_| {
        let k = k.clone();
        async move {
            k.expect(
                StatusCode::OK,
                Method::GET,
                "/api/v1/namespaces/default",
                None,
            )
            .await
            .map(drop)
        }
    })
    .await?;

    let cpu0 = proc::cpu_seconds(pid);

    fig.create = create_many(&kube, plan, NS, plan.objects).await?;
    fig.create.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("{name}: create {:.0}/s", fig.create.per_sec());
    tokio::time::sleep(plan.settle()).await;
    fig.loaded_rss = proc::rss_bytes(pid)?;
    fig.disk_bytes = proc::dir_size(&data);

    let (k, n) = (kube.clone(), plan.objects);
    let get = phase(plan, usize::MAX, Some(plan.get_secs));
    let cpu0 = proc::cpu_seconds(pid);
    fig.get = load::run(get, move |i| {
        let k = k.clone();
        async move {
            let path = format!(
                "/api/v1/namespaces/{NS}/configmaps/cm-{:05}",
                load::spread(i, n)
            );
            k.expect(StatusCode::OK, Method::GET, &path, None)
                .await
                .map(drop)
        }
    })
    .await?;
    fig.get.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("{name}: get {:.0}/s", fig.get.per_sec());

    // Every namespace already holds the `kube-root-ca.crt` ConfigMap; fill it up to the plan's
    // item count so the list answers exactly that many items.
    let list_path = format!("/api/v1/namespaces/{LIST_NS}/configmaps");
    let count = |body: &[u8]| -> anyhow::Result<usize> {
        Ok(serde_json::from_slice::<Value>(body)?["items"]
            .as_array()
            .map_or(0, Vec::len))
    };
    let present = count(
        &kube
            .expect(StatusCode::OK, Method::GET, &list_path, None)
            .await?,
    )?;
    create_many(
        &kube,
        plan,
        LIST_NS,
        plan.list_items.saturating_sub(present),
    )
    .await?;
    let first = kube
        .expect(StatusCode::OK, Method::GET, &list_path, None)
        .await?;
    let items = count(&first)?;
    if items != plan.list_items {
        bail!("list returned {items} items, want {}", plan.list_items);
    }
    fig.list_response_bytes = first.len();
    let k = kube.clone();
    let cpu0 = proc::cpu_seconds(pid);
    fig.list = load::run(phase(plan, usize::MAX, Some(plan.list_secs)), move |_| {
        let (k, path) = (k.clone(), list_path.clone());
        async move {
            k.expect(StatusCode::OK, Method::GET, &path, None)
                .await
                .map(drop)
        }
    })
    .await?;
    fig.list.server_cpu = proc::cpu_seconds(pid) - cpu0;
    println!("{name}: list {:.0}/s", fig.list.per_sec());

    fig.watch = watch_fan_out(&config, &kube, plan).await?;
    println!("{name}: watch p99 {:?}", fig.watch.from_ack.p99);

    updates(&kube, plan, pid, &mut fig).await?;
    fig.peak_rss = proc::peak_rss_bytes(pid)?;
    fig.cpu = cpu.since(pid);
    server.check_alive()?;
    drop(kube);
    server.stop();
    Ok(fig)
}

fn phase(plan: &Plan, max_ops: usize, secs: Option<u64>) -> Phase {
    Phase {
        clients: plan.clients,
        max_ops,
        duration: secs.map(Duration::from_secs),
    }
}

/// Wait (at most 60 s) for the kubeconfig and an authenticated `/readyz`.
pub async fn wait_ready(server: &mut Server, data: &Path) -> anyhow::Result<KubeConfig> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_error = String::new();
    while Instant::now() < deadline {
        server.check_alive()?;
        if let Ok(text) = std::fs::read_to_string(data.join("admin.kubeconfig")) {
            let config = KubeConfig::parse(&text)?;
            match Kube::connect(&config, 1).await {
                Ok(probe) => match probe.call(Method::GET, "/readyz", None).await {
                    Ok((StatusCode::OK, _)) => return Ok(config),
                    Ok((s, _)) => last_error = format!("/readyz: {s}"),
                    Err(e) => last_error = format!("{e:#}"),
                },
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "ledge server not ready in 60 s ({last_error}); log:\n{}",
        server.log_tail()
    )
}

/// Create `count` 1 KB ConfigMaps in `ns` from the plan's concurrent clients.
async fn create_many(
    kube: &Arc<Kube>,
    plan: &Plan,
    ns: &'static str,
    count: usize,
) -> anyhow::Result<load::LoadStats> {
    let (k, bytes) = (kube.clone(), plan.value_bytes);
    load::run(phase(plan, count, None), move |i| {
        let k = k.clone();
        async move {
            let body = configmap(
                &format!("cm-{i:05}"),
                json!({"payload": load::filler(bytes, i)}),
            );
            let path = format!("/api/v1/namespaces/{ns}/configmaps");
            k.expect(StatusCode::CREATED, Method::POST, &path, Some(body))
                .await
                .map(drop)
        }
    })
    .await
}

#[derive(Deserialize)]
struct Event {
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    metadata: EventMeta,
}

#[derive(Deserialize)]
struct EventMeta {
    name: String,
}

/// The write number in a watch event line for ConfigMap `w-<k>`.
fn write_index(line: &[u8]) -> Option<usize> {
    let event: Event = serde_json::from_slice(line).ok()?;
    event.object.metadata.name.strip_prefix("w-")?.parse().ok()
}

async fn watch_fan_out(
    config: &KubeConfig,
    kube: &Arc<Kube>,
    plan: &Plan,
) -> anyhow::Result<load::WatchStats> {
    let pool = Arc::new(Kube::connect(config, plan.watch_connections).await?);
    let (tx, rx) = mpsc::unbounded_channel();
    let path = format!("/api/v1/namespaces/{WATCH_NS}/configmaps?watch=true");
    let mut opening = Vec::with_capacity(plan.watchers);
    for w in 0..plan.watchers {
        let (pool, path) = (pool.clone(), path.clone());
        opening.push(tokio::spawn(async move { pool.stream(w, &path).await }));
    }
    let mut tasks = Vec::with_capacity(plan.watchers);
    for open in opening {
        let mut body = open.await??;
        let tx: mpsc::UnboundedSender<Receipt> = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let at = Instant::now();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    if let Some(write) = write_index(&buf[..end]) {
                        let _ = tx.send(Receipt { write, at });
                    }
                    buf.drain(..=end);
                }
            }
        }));
    }
    drop(tx);
    let bytes = plan.value_bytes;
    let stats = load::fan_out(plan.watchers, plan.watch_writes, rx, |k| {
        let kube = kube.clone();
        async move {
            let body = configmap(
                &format!("w-{k}"),
                json!({"payload": load::filler(bytes, k)}),
            );
            let path = format!("/api/v1/namespaces/{WATCH_NS}/configmaps");
            kube.expect(StatusCode::CREATED, Method::POST, &path, Some(body))
                .await
                .map(drop)
        }
    })
    .await;
    for t in &tasks {
        t.abort();
    }
    stats
}

/// Sequential updates of one small ConfigMap (each a full PUT with the last resourceVersion),
/// counting the bytes the server wrote to disk meanwhile.
async fn updates(kube: &Kube, plan: &Plan, pid: u32, fig: &mut Figures) -> anyhow::Result<()> {
    let path = "/api/v1/namespaces/default/configmaps/wear";
    let created = kube
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(configmap("wear", json!({"counter": "0"}))),
        )
        .await?;
    let mut object: Value = serde_json::from_slice(&created)?;
    tokio::time::sleep(plan.settle()).await;
    let before = proc::write_bytes(pid)?;
    let mut samples = Vec::with_capacity(plan.updates);
    for i in 1..=plan.updates {
        object["data"]["counter"] = json!(i.to_string());
        let t0 = Instant::now();
        let body = Bytes::from(object.to_string());
        let stored = kube
            .expect(StatusCode::OK, Method::PUT, path, Some(body))
            .await?;
        samples.push(t0.elapsed());
        fig.update_object_bytes = stored.len();
        object = serde_json::from_slice(&stored)?;
    }
    tokio::time::sleep(plan.settle()).await;
    fig.update_write_bytes = proc::write_bytes(pid)?.saturating_sub(before);
    fig.updates = plan.updates;
    fig.update_latency = Percentiles::of(&mut samples);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_write_in_an_event_line() {
        let line = br#"{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"w-17"}}}"#;
        assert_eq!(write_index(line), Some(17));
        assert_eq!(write_index(br#"{"type":"BOOKMARK","object":{}}"#), None);
    }
}
