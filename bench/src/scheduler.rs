//! Scheduler throughput (`ledge-bench --scheduler`): 5,000 Node objects (no agents), then
//! 50,000 pods, and the rate at which `ledge server`'s scheduler binds them — the shape of
//! upstream's `scheduler_perf` `SchedulingBasic/5000Nodes` test, whose published throughput is
//! 680–810 pods/s.
//!
//! Everything goes through the shipped binary over HTTPS, as a user's cluster would: the
//! scheduler runs inside `ledge server` against the in-process API (as in production), while
//! this harness creates the nodes and pods over HTTP/2 and follows the bindings with a watch.
//! Node and pod shapes are scheduler_perf's defaults (node: 4 CPU, 32 GiB, 110 pods; pod:
//! 100m CPU, 500 MiB). Two rates are reported: first to last binding (pods are created while
//! the scheduler works, as in scheduler_perf), and the drain after the last pod was created
//! (the scheduler alone, the creation rate no longer a factor).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::kube::Kube;
use crate::load::{self, Phase};
use crate::proc;

const NS: &str = "bench-sched";

/// Upstream scheduler_perf's published range for 5,000 nodes (pods/s).
const UPSTREAM: (f64, f64) = (680.0, 810.0);

/// How the scheduler benchmark is sized.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedPlan {
    /// Node objects to create.
    #[arg(long, default_value_t = 5_000)]
    pub nodes: usize,
    /// Pods to create and wait for.
    #[arg(long, default_value_t = 50_000)]
    pub pods: usize,
    /// Concurrent clients creating nodes and pods.
    #[arg(long, default_value_t = 64)]
    pub sched_clients: usize,
    /// Give up waiting for bindings after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub bind_timeout_secs: u64,
}

/// Run the scheduler benchmark against a fresh `ledge server`.
pub async fn bench(bin: &Path, work: &Path, plan: &SchedPlan) -> anyhow::Result<()> {
    let data = work.join("ledge-sched-data");
    let mut server = spawn_server(bin, work, &data)?;
    let pid = server.pid();
    let config = crate::ledge::wait_ready(&mut server, &data).await?;
    let kube = Arc::new(Kube::connect(&config, 8).await?);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    kube.expect(
        StatusCode::CREATED,
        Method::POST,
        "/api/v1/namespaces",
        Some(Bytes::from(ns.to_string())),
    )
    .await?;

    let phase = |n| Phase {
        clients: plan.sched_clients,
        max_ops: n,
        duration: None,
    };
    let k = kube.clone();
    let nodes = load::run(phase(plan.nodes), move |i| {
        let k = k.clone();
        async move { create_node(&k, i).await }
    })
    .await?;
    println!(
        "scheduler: {} nodes created at {:.0}/s",
        nodes.ok,
        nodes.per_sec()
    );

    // Follow bindings from before the first pod exists.
    let (_, list) = kube
        .call(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/pods?limit=1"),
            None,
        )
        .await?;
    let rv = serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let watcher = Kube::connect(&config, 1).await?;
    let bound = Arc::new(AtomicUsize::new(0));
    let relists = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
    let (b, t, r, want) = (bound.clone(), times.clone(), relists.clone(), plan.pods);
    let follow = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut rv = rv;
        let note = |n: usize| {
            if n == 0 {
                return;
            }
            let now = Instant::now();
            let mut times = t.lock().unwrap_or_else(|p| p.into_inner());
            times.0.get_or_insert(now);
            times.1 = Some(now);
            b.fetch_add(n, Ordering::Relaxed);
        };
        // A client-go reflector in miniature: watch from the last resourceVersion seen; a
        // watcher that falls behind the server's change stream gets "410 Expired" and the
        // stream ends, so list (bindings seen that way are stamped when the list arrives)
        // and watch again.
        while seen.len() < want {
            let path = format!("/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}");
            let Ok(mut body) = watcher.stream(0, &path).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut expired = false;
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|&c| c == b'\n') {
                    match watch_line(&buf[..end]) {
                        Line::Bound(name, at) => {
                            rv = at;
                            if seen.insert(name) {
                                note(1);
                            }
                        }
                        Line::Other(at) => rv = at,
                        Line::Expired => expired = true,
                    }
                    buf.drain(..=end);
                }
                if seen.len() >= want || expired {
                    break;
                }
            }
            if seen.len() >= want {
                return;
            }
            if expired {
                r.fetch_add(1, Ordering::Relaxed);
                let path = format!("/api/v1/namespaces/{NS}/pods");
                let Ok((_, list)) = watcher.call(Method::GET, &path, None).await else {
                    return;
                };
                let Ok(list) = serde_json::from_slice::<Value>(&list) else {
                    return;
                };
                let before = seen.len();
                for item in list["items"].as_array().into_iter().flatten() {
                    if item
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty())
                        && let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str)
                    {
                        seen.insert(name.to_string());
                    }
                }
                note(seen.len() - before);
                rv = list["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("0")
                    .to_string();
            }
        }
    });

    let cpu0 = proc::cpu_seconds(pid);
    let k = kube.clone();
    let created = load::run(phase(plan.pods), move |i| {
        let k = k.clone();
        async move { create_pod(&k, i).await }
    })
    .await?;
    let created_at = Instant::now();
    let bound_at_created = bound.load(Ordering::Relaxed);
    println!(
        "scheduler: {} pods created at {:.0}/s; {bound_at_created} bound meanwhile",
        created.ok,
        created.per_sec()
    );
    let deadline = Instant::now() + Duration::from_secs(plan.bind_timeout_secs);
    while bound.load(Ordering::Relaxed) < plan.pods && Instant::now() < deadline {
        server.check_alive()?;
        if follow.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    follow.abort();
    let cpu = proc::cpu_seconds(pid) - cpu0;
    let n = bound.load(Ordering::Relaxed);
    let (first, last) = *times.lock().unwrap_or_else(|p| p.into_inner());
    let (Some(first), Some(last)) = (first, last) else {
        bail!("no pod was bound");
    };
    if n < plan.pods {
        println!(
            "scheduler: only {n} of {} pods bound within {} s",
            plan.pods, plan.bind_timeout_secs
        );
    }
    let overall = rate(n.saturating_sub(1), last.duration_since(first));
    let drained = n.saturating_sub(bound_at_created);
    let drain = (last > created_at).then(|| rate(drained, last.duration_since(created_at)));
    let relists = relists.load(Ordering::Relaxed);
    if relists > 0 {
        println!(
            "scheduler: the binding watch fell behind and relisted {relists} time(s); bindings found by a list are timed at the list"
        );
    }
    println!();
    println!(
        "| scheduler throughput ({} nodes, {} pods) | pods/s |",
        plan.nodes, plan.pods
    );
    println!("|---|---|");
    println!("| ledge, first to last binding | {overall:.0} |");
    match drain {
        Some(d) => println!("| ledge, after the last create ({drained} pods queued) | {d:.0} |"),
        None => println!("| ledge, after the last create | (every pod was bound by then) |"),
    }
    println!(
        "| upstream kube-scheduler (scheduler_perf, published) | {:.0}–{:.0} |",
        UPSTREAM.0, UPSTREAM.1
    );
    println!(
        "\nledge ÷ upstream: {:.2}–{:.2} (first to last binding); server CPU {:.1} s, {:.0} µs per pod",
        overall / UPSTREAM.1,
        overall / UPSTREAM.0,
        cpu,
        cpu * 1e6 / n.max(1) as f64
    );
    server.check_alive()?;
    drop(kube);
    server.stop();
    Ok(())
}

/// `ledge server` as [`crate::ledge::spawn_server`] starts it, but with node health checks
/// pushed past the run: the Node objects here have no agent renewing their Leases, and after
/// the default 40 s grace the node lifecycle controller would taint them all `unreachable`
/// (`NoSchedule`), so every pod still pending then becomes unschedulable. Upstream's
/// scheduler_perf runs no node lifecycle controller at all.
fn spawn_server(bin: &Path, work: &Path, data: &Path) -> anyhow::Result<proc::Server> {
    let port = proc::free_port()?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data)
        .args(["--https-listen-port", &port.to_string()])
        .args(["--bind-address", "127.0.0.1"])
        .args(["--node-monitor-grace-period", "86400"])
        .env("LEDGE_LOG", "warn");
    proc::Server::spawn(
        "ledge server",
        cmd,
        &work.join("ledge-sched.log"),
        &work.join("pids"),
    )
}

fn rate(n: usize, over: Duration) -> f64 {
    n as f64 / over.as_secs_f64().max(1e-9)
}

/// What one watch event line says.
#[derive(Debug, PartialEq)]
enum Line {
    /// A pod bound to a node: its name, and the event's resourceVersion.
    Bound(String, String),
    /// Any other change, with its resourceVersion.
    Other(String),
    /// The watch fell behind ("410 Expired"): list again.
    Expired,
}

fn watch_line(line: &[u8]) -> Line {
    let Ok(event) = serde_json::from_slice::<Value>(line) else {
        return Line::Expired;
    };
    let object = &event["object"];
    if event["type"] == "ERROR" {
        return Line::Expired;
    }
    let rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    let node = object.pointer("/spec/nodeName").and_then(Value::as_str);
    match (
        node,
        object.pointer("/metadata/name").and_then(Value::as_str),
    ) {
        (Some(n), Some(name)) if !n.is_empty() && event["type"] != "DELETED" => {
            Line::Bound(name.to_string(), rv)
        }
        _ => Line::Other(rv),
    }
}

/// One fake node: scheduler_perf's `node-default.yaml` capacity, ten zones, the wasm runtime.
async fn create_node(kube: &Kube, i: usize) -> anyhow::Result<()> {
    let name = format!("bench-node-{i:05}");
    let body = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10),
            "node.ledge.dev/runtime.wasm": "true"}},
    });
    let created = kube
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/v1/nodes",
            Some(Bytes::from(body.to_string())),
        )
        .await?;
    let mut node: Value = serde_json::from_slice(&created).context("node")?;
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    node["status"] = json!({"capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True"}]});
    kube.expect(
        StatusCode::OK,
        Method::PUT,
        &format!("/api/v1/nodes/{name}/status"),
        Some(Bytes::from(node.to_string())),
    )
    .await
    .map(drop)
}

/// One pod: scheduler_perf's `pod-default.yaml` requests.
async fn create_pod(kube: &Kube, i: usize) -> anyhow::Result<()> {
    let body = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:05}")},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]},
    });
    kube.expect(
        StatusCode::CREATED,
        Method::POST,
        &format!("/api/v1/namespaces/{NS}/pods"),
        Some(Bytes::from(body.to_string())),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_bindings_in_watch_lines() {
        let bound = br#"{"type":"MODIFIED","object":{"metadata":{"name":"pod-1","resourceVersion":"7"},"spec":{"nodeName":"n"}}}"#;
        assert_eq!(watch_line(bound), Line::Bound("pod-1".into(), "7".into()));
        let pending = br#"{"type":"ADDED","object":{"metadata":{"name":"pod-1","resourceVersion":"6"},"spec":{}}}"#;
        assert_eq!(watch_line(pending), Line::Other("6".into()));
        let expired = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert_eq!(watch_line(expired), Line::Expired);
    }
}
