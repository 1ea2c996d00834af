//! Scheduler throughput (`ledge-bench --scheduler`): 5,000 Node objects (no agents) and
//! 50,000 pods, and the rate at which `ledge server`'s scheduler binds them — the shape of
//! upstream's `scheduler_perf` `SchedulingBasic/5000Nodes` test, whose published throughput is
//! 680–810 pods/s.
//!
//! Everything goes through the shipped binary over HTTPS, as a user's cluster would: the
//! scheduler runs inside `ledge server` against the in-process API (as in production), while
//! this harness creates the nodes and pods over HTTP/2 and follows the bindings with a watch.
//! Node and pod shapes are scheduler_perf's defaults (node: 4 CPU, 32 GiB, 110 pods; pod:
//! 100m CPU, 500 MiB). Two scenarios, each on a fresh server:
//!
//! - **pods created meanwhile** (scheduler_perf's shape): the rate first to last binding, which
//!   the harness's creation rate bounds, and the drain after the last pod was created;
//! - **pending at start** (the issue's "50,000 pending pods"): the pods are created on a server
//!   running with `--disable-scheduler`, which is then restarted without it; the rate first to
//!   last binding is the scheduler's alone (cycle, binding, Scheduled event).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::kube::{Kube, KubeConfig};
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
    /// Run only this scenario: `concurrent` (pods created meanwhile) or `backlog` (pending at
    /// start); both by default.
    #[arg(long)]
    pub sched_only: Option<Scenario>,
}

/// One of the two scheduler scenarios.
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Scenario {
    /// Pods created while the scheduler works.
    Concurrent,
    /// Every pod pending when the scheduler starts.
    Backlog,
}

/// Run both scenarios against fresh `ledge server`s: pods created while the scheduler works
/// (scheduler_perf's shape), then a backlog of pending pods the scheduler finds at start.
pub async fn bench(bin: &Path, work: &Path, plan: &SchedPlan) -> anyhow::Result<()> {
    let run = |s| plan.sched_only.is_none_or(|only| only == s);
    let concurrent = match run(Scenario::Concurrent) {
        true => Some(concurrent(bin, work, plan).await?),
        false => None,
    };
    let backlog = match run(Scenario::Backlog) {
        true => Some(backlog(bin, work, plan).await?),
        false => None,
    };
    println!();
    println!(
        "| scheduler throughput ({} nodes, {} pods) | pods/s | server CPU per pod | ledge ÷ upstream |",
        plan.nodes, plan.pods
    );
    println!("|---|---:|---:|---:|");
    let ratio = |r: f64| format!("{:.2}–{:.2}", r / UPSTREAM.1, r / UPSTREAM.0);
    if let Some(c) = concurrent {
        println!(
            "| ledge, pods created meanwhile: first to last binding | {:.0} | {:.0} µs (with the creates) | {} |",
            c.overall,
            c.cpu_per_pod_us,
            ratio(c.overall)
        );
        match c.drain {
            Some((queued, rate)) => println!(
                "| ledge, pods created meanwhile: after the last create ({queued} queued) | {rate:.0} | | |"
            ),
            None => println!(
                "| ledge, pods created meanwhile: after the last create | (all bound by then) | | |"
            ),
        }
    }
    if let Some(b) = backlog {
        println!(
            "| ledge, {} pending at start: first to last binding | {:.0} | {:.0} µs | {} |",
            plan.pods,
            b.overall,
            b.cpu_per_pod_us,
            ratio(b.overall)
        );
    }
    println!(
        "| upstream kube-scheduler (scheduler_perf, published) | {:.0}–{:.0} | | 1 |",
        UPSTREAM.0, UPSTREAM.1
    );
    Ok(())
}

/// What one scenario measured.
struct Outcome {
    /// Pods bound per second, first to last binding.
    overall: f64,
    /// Pods still pending when creation ended, and the rate they were bound at after it.
    drain: Option<(usize, f64)>,
    /// Server CPU per bound pod over the measured span (µs).
    cpu_per_pod_us: f64,
}

/// Pods are created while the scheduler works, as in scheduler_perf; the rate is bounded by
/// how fast the harness can create them.
async fn concurrent(bin: &Path, work: &Path, plan: &SchedPlan) -> anyhow::Result<Outcome> {
    println!("scheduler: pods created while the scheduler works");
    let data = work.join("ledge-sched-data");
    let mut server = spawn_server(bin, work, &data, &[])?;
    let pid = server.pid();
    let config = crate::ledge::wait_ready(&mut server, &data).await?;
    let kube = Arc::new(Kube::connect(&config, 8).await?);
    create_nodes(&kube, plan).await?;
    let rv = list_revision(&kube).await?;
    let follower = Follower::start(&config, rv, plan.pods).await?;
    let cpu0 = proc::cpu_seconds(pid);
    create_pods(&kube, plan).await?;
    let created_at = Instant::now();
    let bound_at_created = follower.bound();
    println!("scheduler: {bound_at_created} bound while the pods were being created");
    follower.wait(&mut server, plan).await?;
    let cpu = proc::cpu_seconds(pid) - cpu0;
    let (n, first, last) = follower.finish()?;
    server.check_alive()?;
    drop(kube);
    server.stop();
    let drained = n.saturating_sub(bound_at_created);
    Ok(Outcome {
        overall: rate(n.saturating_sub(1), last.duration_since(first)),
        drain: (last > created_at)
            .then(|| (drained, rate(drained, last.duration_since(created_at)))),
        cpu_per_pod_us: cpu * 1e6 / n.max(1) as f64,
    })
}

/// The issue's shape exactly: 5,000 nodes and 50,000 pending pods. A server started with
/// `--disable-scheduler` takes the nodes and pods; it is stopped and started again on the same
/// data without the flag, and its scheduler finds every pod pending at once. The creation rate
/// is no factor here: the figure is the scheduler's (cycle, binding, Scheduled event).
async fn backlog(bin: &Path, work: &Path, plan: &SchedPlan) -> anyhow::Result<Outcome> {
    println!(
        "scheduler: {} pods pending before the scheduler starts",
        plan.pods
    );
    let data = work.join("ledge-sched-backlog");
    let mut server = spawn_server(bin, work, &data, &["--disable-scheduler"])?;
    let config = crate::ledge::wait_ready(&mut server, &data).await?;
    let kube = Arc::new(Kube::connect(&config, 8).await?);
    create_nodes(&kube, plan).await?;
    create_pods(&kube, plan).await?;
    drop(kube);
    server.stop();
    // The watch starts from a list once the server answers: pods the scheduler bound before
    // that are reported and left out of the rate.
    let mut server = spawn_server(bin, work, &data, &[])?;
    let pid = server.pid();
    let started = Instant::now();
    let config = crate::ledge::wait_ready(&mut server, &data).await?;
    let cpu0 = proc::cpu_seconds(pid);
    let follower = Follower::start_from_list(&config, plan.pods).await?;
    follower.wait(&mut server, plan).await?;
    let cpu = proc::cpu_seconds(pid) - cpu0;
    let (n, first, last) = follower.finish()?;
    println!(
        "scheduler: restart to first binding {:.1} s, to the last {:.1} s",
        first.duration_since(started).as_secs_f64(),
        last.duration_since(started).as_secs_f64()
    );
    // The event queue drains after the last binding.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kube = Kube::connect(&config, 1).await?;
    println!(
        "scheduler: {} Scheduled events recorded for {n} bindings (a burst beyond the event queue drops events, as upstream's broadcaster does)",
        scheduled_events(&kube).await?
    );
    server.check_alive()?;
    server.stop();
    Ok(Outcome {
        overall: rate(n.saturating_sub(1), last.duration_since(first)),
        drain: None,
        cpu_per_pod_us: cpu * 1e6 / n.max(1) as f64,
    })
}

fn phase(plan: &SchedPlan, n: usize) -> Phase {
    Phase {
        clients: plan.sched_clients,
        max_ops: n,
        duration: None,
    }
}

/// The benchmark namespace and the Node objects.
async fn create_nodes(kube: &Arc<Kube>, plan: &SchedPlan) -> anyhow::Result<()> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    kube.expect(
        StatusCode::CREATED,
        Method::POST,
        "/api/v1/namespaces",
        Some(Bytes::from(ns.to_string())),
    )
    .await?;
    let k = kube.clone();
    let nodes = load::run(phase(plan, plan.nodes), move |i| {
        let k = k.clone();
        async move { create_node(&k, i).await }
    })
    .await?;
    println!(
        "scheduler: {} nodes created at {:.0}/s",
        nodes.ok,
        nodes.per_sec()
    );
    Ok(())
}

async fn create_pods(kube: &Arc<Kube>, plan: &SchedPlan) -> anyhow::Result<()> {
    let k = kube.clone();
    let created = load::run(phase(plan, plan.pods), move |i| {
        let k = k.clone();
        async move { create_pod(&k, i).await }
    })
    .await?;
    println!(
        "scheduler: {} pods created at {:.0}/s",
        created.ok,
        created.per_sec()
    );
    Ok(())
}

/// How many `Scheduled` events the benchmark namespace holds.
async fn scheduled_events(kube: &Kube) -> anyhow::Result<usize> {
    let (_, list) = kube
        .call(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/events?fieldSelector=reason%3DScheduled"),
            None,
        )
        .await?;
    let list: Value = serde_json::from_slice(&list).context("event list")?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

/// The resourceVersion of the pod collection now.
async fn list_revision(kube: &Kube) -> anyhow::Result<String> {
    let (_, list) = kube
        .call(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/pods?limit=1"),
            None,
        )
        .await?;
    Ok(
        serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string(),
    )
}

/// Follows bindings with a watch of the benchmark namespace's pods, timing the first and last.
struct Follower {
    bound: Arc<AtomicUsize>,
    relists: Arc<AtomicUsize>,
    times: Arc<std::sync::Mutex<(Option<Instant>, Option<Instant>)>>,
    /// Pods already bound when the watch began.
    before: usize,
    want: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Watch from `rv` until `want` distinct pods were seen bound.
    async fn start(config: &KubeConfig, rv: String, want: usize) -> anyhow::Result<Self> {
        Self::follow(config, rv, Default::default(), want).await
    }

    /// List the pods first and watch from the list: pods bound before it are counted as bound
    /// but left out of the timing (their binding times are unknown).
    async fn start_from_list(config: &KubeConfig, want: usize) -> anyhow::Result<Self> {
        let lister = Kube::connect(config, 1).await?;
        let (_, list) = lister
            .call(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"), None)
            .await?;
        let list: Value = serde_json::from_slice(&list).context("pod list")?;
        let seen = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
            })
            .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("0")
            .to_string();
        Self::follow(config, rv, seen, want).await
    }

    async fn follow(
        config: &KubeConfig,
        rv: String,
        seen: std::collections::HashSet<String>,
        want: usize,
    ) -> anyhow::Result<Self> {
        let before = seen.len();
        let watcher = Kube::connect(config, 1).await?;
        let bound = Arc::new(AtomicUsize::new(0));
        let relists = Arc::new(AtomicUsize::new(0));
        let times = Arc::new(std::sync::Mutex::new((None::<Instant>, None::<Instant>)));
        let (b, t, r) = (bound.clone(), times.clone(), relists.clone());
        let task = tokio::spawn(async move {
            let mut seen = seen;
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
                            && let Some(name) =
                                item.pointer("/metadata/name").and_then(Value::as_str)
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
        Ok(Self {
            bound,
            relists,
            times,
            before,
            want,
            task,
        })
    }

    /// Pods seen bound so far, after the watch began.
    fn bound(&self) -> usize {
        self.bound.load(Ordering::Relaxed)
    }

    /// Until every pod is bound, the watch ends, or the plan's patience runs out.
    async fn wait(&self, server: &mut proc::Server, plan: &SchedPlan) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(plan.bind_timeout_secs);
        while self.before + self.bound() < self.want && Instant::now() < deadline {
            server.check_alive()?;
            if self.task.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Pods seen bound by the watch, and the times of the first and last binding.
    fn finish(self) -> anyhow::Result<(usize, Instant, Instant)> {
        self.task.abort();
        let n = self.bound();
        if self.before + n < self.want {
            println!(
                "scheduler: only {} of {} pods bound",
                self.before + n,
                self.want
            );
        }
        if self.before > 0 {
            println!(
                "scheduler: {} pods were bound before the watch began (left out of the rate)",
                self.before
            );
        }
        let relists = self.relists.load(Ordering::Relaxed);
        if relists > 0 {
            println!(
                "scheduler: the binding watch fell behind and relisted {relists} time(s); bindings found by a list are timed at the list"
            );
        }
        let (first, last) = *self.times.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(first), Some(last)) = (first, last) else {
            bail!("no pod was bound");
        };
        Ok((n, first, last))
    }
}

/// `ledge server` as [`crate::ledge::spawn_server`] starts it, but with node health checks
/// pushed past the run: the Node objects here have no agent renewing their Leases, and after
/// the default 40 s grace the node lifecycle controller would taint them all `unreachable`
/// (`NoSchedule`), so every pod still pending then becomes unschedulable. Upstream's
/// scheduler_perf runs no node lifecycle controller at all.
fn spawn_server(
    bin: &Path,
    work: &Path,
    data: &Path,
    extra: &[&str],
) -> anyhow::Result<proc::Server> {
    let port = proc::free_port()?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(data)
        .args(["--https-listen-port", &port.to_string()])
        .args(["--bind-address", "127.0.0.1"])
        .args(["--node-monitor-grace-period", "86400"])
        // History for every change of the run, so the harness's watch, on the same two cores
        // as the server, can fall behind without being cut off ("410 Expired") and relisting,
        // which would time a whole batch of bindings at the list.
        .args(["--watch-history", "250000"])
        .args(extra)
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
