//! Issue 4's "Edge autonomy" benchmarks (`bench/run --autonomy`), on the testkit's netns bed: a
//! `ledge server` on one host, one `ledge agent` on another, both with ledge's defaults (Lease
//! every 10 s, 40 s grace), running the hello-wasm component as Wasm HTTP pods.
//!
//! - **idle**: bytes on the agent's link (the veth: TCP/IP/TLS included) and bytes the agent
//!   wrote towards the disk over an idle window, per hour; and what upstream's kubelet defaults
//!   would send, computed from this cluster's Lease and Node sizes.
//! - **offline**: the agent killed and restarted with its link cut; time until every pod answers
//!   HTTP again, probed from inside the agent's namespace (`probe`).
//! - **reconnect**: bytes on the link from the end of a partition until the Node and every pod
//!   are Ready again, plus 10 s of quiet.
//!
//! Needs root (network namespaces). Each scenario runs on a fresh cluster whose bed lives under
//! the work directory (on disk, so `write_bytes` means something). What does not live here: the
//! tables and `RESULTS.md` (`report`), the in-namespace HTTP probes (`probe`).

mod probe;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ledge_testkit::{Bed, Cluster, ClusterOptions, Member, pods};
use serde_json::{Value, json};

use crate::proc::{Machine, write_bytes};
use report::{Figures, Idle, LinkDelta, Offline, Reconnect, Report};

/// The agent's Node (the testkit names agents `edge-N`).
const NODE: &str = "edge-1";
/// The port of the Deployment's pods (idle and reconnect scenarios; replicas share it).
const SHARED_PORT: u16 = 8080;
/// The first port of the offline scenario's pods (one port each).
const FIRST_PORT: u16 = 9000;
/// The image name the component is imported under.
const IMAGE: &str = "hello-wasm:1";
/// How often cluster state is polled (through kubectl on the server's host: not on the
/// measured link).
const POLL: Duration = Duration::from_millis(250);
/// Bounds on waits for a working system (not measurements).
const PODS_READY: Duration = Duration::from_secs(300);
const CONVERGE: Duration = Duration::from_secs(300);
const ANSWER: Duration = Duration::from_secs(60);
/// Quiet after convergence that still counts towards the reconnect bytes (trailing writes).
const QUIET: Duration = Duration::from_secs(10);

/// How the autonomy benchmarks are sized. Defaults are the issue's.
#[derive(Debug, Clone, clap::Args)]
pub struct AutonomyPlan {
    /// Seconds of the idle measuring window (wire and disk bytes are extrapolated to an hour).
    #[arg(long, default_value_t = 300)]
    pub idle_secs: u64,
    /// Seconds the agent's link is cut in the reconnect scenario (the 10 minutes).
    #[arg(long, default_value_t = 600)]
    pub partition_secs: u64,
    /// Seconds to let a cluster settle once its pods are Ready, before measuring.
    #[arg(long, default_value_t = 30)]
    pub autonomy_settle_secs: u64,
    /// Wasm HTTP pods on the idle node.
    #[arg(long, default_value_t = 10)]
    pub idle_pods: usize,
    /// Unchanged Wasm HTTP pods on the node across the partition.
    #[arg(long, default_value_t = 100)]
    pub reconnect_pods: usize,
    /// Wasm HTTP pods (one port each) that must all answer after the offline start.
    #[arg(long, default_value_t = 50)]
    pub offline_pods: usize,
    /// Offline starts measured.
    #[arg(long, default_value_t = 3)]
    pub offline_runs: usize,
    /// Scenarios to run, comma-separated (idle, offline, reconnect). RESULTS.md is written only
    /// when all three ran.
    #[arg(long, value_delimiter = ',', default_value = "idle,offline,reconnect")]
    pub scenarios: Vec<String>,
    /// The hello-wasm component (default: `$CARGO_TARGET_DIR/wasm-fixtures/hello-http.wasm`).
    #[arg(long)]
    pub hello_wasm: Option<PathBuf>,
}

impl AutonomyPlan {
    fn settle(&self) -> Duration {
        Duration::from_secs(self.autonomy_settle_secs)
    }

    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }

    /// A bound on the whole run: the measured windows plus generous setup and waits.
    fn limit(&self) -> Duration {
        Duration::from_secs(
            self.idle_secs + self.partition_secs + 3 * self.autonomy_settle_secs + 25 * 60,
        )
    }
}

/// What the run needs from the command line.
pub struct Inputs<'a> {
    pub ledge: &'a Path,
    pub work: &'a Path,
    pub results: Option<&'a Path>,
    pub command: &'a str,
    pub source: &'a str,
    pub plan: &'a AutonomyPlan,
}

/// Set on Ctrl-C, SIGTERM or the overall limit: every wait and pause of the run checks it, so
/// the run returns early and its clusters are dropped (processes ended, namespaces removed).
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the run must end.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs the autonomy benchmarks: the scenarios on a thread of their own, while this thread
/// waits for them, a signal or the overall limit.
pub fn main(inputs: Inputs<'_>) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "the autonomy benchmarks need root: they create network namespaces (run bench/run \
             --autonomy as root)"
        );
    }
    std::fs::create_dir_all(inputs.work)
        .with_context(|| format!("create {}", inputs.work.display()))?;
    let stop = Stop::default();
    let limit = inputs.plan.limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::scope(|s| {
        let worker = s.spawn(|| run(&inputs, &stop));
        let why = runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())?;
            let mut term = signal(SignalKind::terminate())?;
            let started = Instant::now();
            loop {
                tokio::select! {
                    _ = int.recv() => return anyhow::Ok(Some("interrupted".to_string())),
                    _ = term.recv() => return Ok(Some("terminated".to_string())),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if worker.is_finished() {
                            return Ok(None);
                        }
                        if started.elapsed() > limit {
                            return Ok(Some(format!("gave up after {limit:?}")));
                        }
                    }
                }
            }
        })?;
        if let Some(why) = &why {
            eprintln!("{why}: stopping the clusters");
            stop.set();
        }
        let result = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?;
        match why {
            Some(why) => bail!("{why}"),
            None => result,
        }
    })
}

fn run(inputs: &Inputs<'_>, stop: &Stop) -> anyhow::Result<()> {
    let plan = inputs.plan;
    let component = match &plan.hello_wasm {
        Some(path) => path.clone(),
        None => target_dir().join("wasm-fixtures/hello-http.wasm"),
    };
    if !component.is_file() {
        bail!(
            "{} is missing: build it with crates/wasm/fixtures/build.sh (bench/run does)",
            component.display()
        );
    }
    let machine = Machine::read();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let built = report::built_at(inputs.ledge);
    // A copy: others may rebuild the binary while this runs, and the offline scenario starts
    // the agent again from the same path.
    let ledge = inputs.work.join("ledge");
    std::fs::copy(inputs.ledge, &ledge)
        .with_context(|| format!("copy {} to {}", inputs.ledge.display(), ledge.display()))?;
    let bench = Bench {
        ledge: &ledge,
        work: inputs.work,
        component: &component,
        plan,
        stop,
    };
    println!(
        "== ledge edge autonomy ({}, built {built})",
        inputs.ledge.display()
    );
    let mut figures = Figures::default();
    if plan.runs("idle") {
        figures.idle = Some(bench.idle()?);
    }
    if plan.runs("offline") {
        figures.offline = Some(bench.offline()?);
    }
    if plan.runs("reconnect") {
        figures.reconnect = Some(bench.reconnect()?);
    }
    let report = Report {
        machine: &machine,
        load_end: Machine::read().loadavg,
        date,
        command: inputs.command,
        source: inputs.source,
        ledge: &ledge,
        built,
        plan,
        figures: &figures,
    };
    println!("\n{}", report.markdown());
    match inputs.results {
        Some(path) if figures.complete() => {
            report::write_section(path, &report.markdown())?;
            println!("wrote the edge autonomy section of {}", path.display());
        }
        Some(_) => println!("(not all scenarios ran: RESULTS.md left alone)"),
        None => {}
    }
    Ok(())
}

/// `$CARGO_TARGET_DIR`, else `~/.cache/ledge-target` (as bench/run and test.sh).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ledge-target")
        })
}

struct Bench<'a> {
    ledge: &'a Path,
    work: &'a Path,
    component: &'a Path,
    plan: &'a AutonomyPlan,
    stop: &'a Stop,
}

impl Bench<'_> {
    /// A fresh server and agent with ledge's default intervals, the component imported on the
    /// agent.
    fn cluster(&self, prefix: &str) -> anyhow::Result<Cluster> {
        let opts = ClusterOptions {
            lease_interval: Duration::from_secs(10),
            node_monitor_grace_period: Duration::from_secs(40),
            bin: Some(self.ledge.to_path_buf()),
            ..ClusterOptions::default()
        };
        let bed = Bed::new_in(self.work, prefix)?;
        let cluster = Cluster::start(bed, 1, opts)?;
        let agent = agent(&cluster)?;
        let out = Command::new(self.ledge)
            .args(["image", "import"])
            .arg(self.component)
            .args(["--name", IMAGE, "--data-dir"])
            .arg(agent.data_dir())
            .output()
            .context("run ledge image import")?;
        if !out.status.success() {
            bail!(
                "ledge image import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(cluster)
    }

    fn idle(&self) -> anyhow::Result<Idle> {
        let plan = self.plan;
        println!(
            "-- idle: {} pods, {} s settle, {} s window",
            plan.idle_pods, plan.autonomy_settle_secs, plan.idle_secs
        );
        let cluster = self.cluster("idle")?;
        apply(&cluster, &deployment(plan.idle_pods, false))?;
        self.wait_pods_ready(&cluster, plan.idle_pods)?;
        self.check_answering(&cluster, &[SHARED_PORT])?;
        pause(self.stop, plan.settle())?;

        let agent = agent(&cluster)?;
        let pid = agent_pid(agent)?;
        let link0 = agent.host().link_counters()?;
        let disk0 = write_bytes(pid)?;
        let t0 = Instant::now();
        let window = Duration::from_secs(plan.idle_secs);
        while t0.elapsed() < window {
            pause(
                self.stop,
                window
                    .saturating_sub(t0.elapsed())
                    .min(Duration::from_secs(60)),
            )?;
            let so_far = LinkDelta::between(&link0, &agent.host().link_counters()?);
            println!(
                "   {:>4.0} s: {} B on the link, {} B written",
                t0.elapsed().as_secs_f64(),
                so_far.bytes(),
                write_bytes(pid)?.saturating_sub(disk0)
            );
        }
        let link = LinkDelta::between(&link0, &agent.host().link_counters()?);
        let disk = write_bytes(pid)?.saturating_sub(disk0);
        let elapsed = t0.elapsed();
        if !agent.proc().is_running() || agent_pid(agent)? != pid {
            bail!("the agent restarted during the idle window");
        }
        if cluster.node_ready(NODE)?.as_deref() != Some("True") {
            bail!("{NODE} is not Ready after the idle window: the figure would mean nothing");
        }
        // What upstream's kubelet would send, from this cluster's objects (compact JSON).
        let lease = cluster.kubectl_json(&["get", "lease", "-n", "kube-node-lease", NODE])?;
        let node = cluster.kubectl_json(&["get", "node", NODE])?;
        let status_patch = json!({"status": node["status"]});
        Ok(Idle {
            pods: plan.idle_pods,
            window: elapsed,
            link,
            disk_bytes: disk,
            lease_bytes: json_len(&lease),
            node_bytes: json_len(&node),
            status_patch_bytes: json_len(&status_patch),
        })
    }

    fn offline(&self) -> anyhow::Result<Offline> {
        let plan = self.plan;
        println!(
            "-- offline start: {} pods on ports {FIRST_PORT}–{}, {} runs",
            plan.offline_pods,
            FIRST_PORT as usize + plan.offline_pods - 1,
            plan.offline_runs
        );
        let ports: Vec<u16> = (0..plan.offline_pods)
            .map(|i| FIRST_PORT + i as u16)
            .collect();
        let cluster = self.cluster("offline")?;
        let pods: Vec<Value> = ports.iter().map(|&p| bare_pod(p)).collect();
        apply(
            &cluster,
            &json!({"apiVersion": "v1", "kind": "List", "items": pods}),
        )?;
        self.wait_pods_ready(&cluster, plan.offline_pods)?;
        self.check_answering(&cluster, &ports)?;
        pause(self.stop, plan.settle())?;

        let agent = agent(&cluster)?;
        let netns = probe::netns_path(agent.host().netns());
        let ip = agent.host().ip().into();
        agent.host().cut()?;
        let mut runs = Vec::new();
        for run in 1..=plan.offline_runs {
            // The reboot: the agent and every pod it ran (in-process Wasm) die at once.
            agent.proc().kill()?;
            let alive = probe::answering(&netns, ip, &ports)?;
            if let Some(i) = alive.iter().position(|a| *a) {
                bail!("port {} still answers with the agent dead", ports[i]);
            }
            let times = probe::time_to_answer(&netns, ip, &ports, ANSWER, self.stop, || {
                let t0 = Instant::now();
                agent.proc().restart()?;
                Ok(t0)
            })?;
            self.check_stop()?;
            let all = times
                .iter()
                .copied()
                .collect::<Option<Vec<_>>>()
                .and_then(|t| t.into_iter().max());
            let first = times.iter().flatten().min().copied();
            let answered = times.iter().flatten().count();
            println!(
                "   run {run}: first pod answered after {}, all {} after {}",
                report::secs_opt(first),
                ports.len(),
                match all {
                    Some(d) => report::secs(d),
                    None => format!("— only {answered} answered within {ANSWER:?}"),
                }
            );
            runs.push(report::OfflineRun {
                first,
                all,
                answered,
            });
            // Let the restarted agent finish its start (store writes) before the next crash.
            pause(self.stop, Duration::from_secs(3))?;
        }
        agent.host().restore()?;
        Ok(Offline {
            pods: plan.offline_pods,
            runs,
        })
    }

    fn reconnect(&self) -> anyhow::Result<Reconnect> {
        let plan = self.plan;
        println!(
            "-- reconnect: {} pods, {} s partition",
            plan.reconnect_pods, plan.partition_secs
        );
        let cluster = self.cluster("reconnect")?;
        apply(&cluster, &deployment(plan.reconnect_pods, true))?;
        let before = fingerprints(&self.wait_pods_ready(&cluster, plan.reconnect_pods)?);
        pause(self.stop, plan.settle())?;

        let agent = agent(&cluster)?;
        let host = agent.host();
        host.cut()?;
        let cut = Instant::now();
        let partition = Duration::from_secs(plan.partition_secs);
        let mut node_seen_unknown = false;
        while cut.elapsed() < partition {
            pause(
                self.stop,
                partition
                    .saturating_sub(cut.elapsed())
                    .min(Duration::from_secs(30)),
            )?;
            let ready = cluster.node_ready(NODE)?;
            node_seen_unknown |= ready.as_deref() == Some("Unknown");
            println!(
                "   {:>4.0} s cut: Node Ready={}",
                cut.elapsed().as_secs_f64(),
                ready.as_deref().unwrap_or("?")
            );
        }

        let link0 = host.link_counters()?;
        host.restore()?;
        let back = Instant::now();
        let n = plan.reconnect_pods;
        let converged = self.wait("the Node and every pod Ready again", CONVERGE, || {
            if cluster.node_ready(NODE)?.as_deref() != Some("True") {
                return Ok(None);
            }
            let pods = hello_pods(&cluster)?;
            let ok = pods.len() == n
                && pods
                    .iter()
                    .all(|p| pods::is_ready(p) && !pods::is_terminating(p));
            Ok(ok.then_some(pods))
        });
        let (converge, after) = match converged {
            Ok(pods) => (Some(back.elapsed()), pods),
            Err(e) if !self.stop.is_set() => {
                println!("   not converged: {e:#}");
                (None, hello_pods(&cluster)?)
            }
            Err(e) => return Err(e),
        };
        let link_converged = LinkDelta::between(&link0, &host.link_counters()?);
        pause(self.stop, QUIET)?;
        let link = LinkDelta::between(&link0, &host.link_counters()?);
        let unchanged = fingerprints(&after) == before;
        println!(
            "   converged after {}, {} B until then, {} B with {QUIET:?} of quiet; pods unchanged: {unchanged}",
            report::secs_opt(converge),
            link_converged.bytes(),
            link.bytes()
        );
        Ok(Reconnect {
            pods: n,
            partition: cut.elapsed().saturating_sub(back.elapsed()),
            node_seen_unknown,
            converge,
            link_converged,
            link,
            unchanged,
        })
    }

    /// Waits until exactly `n` pods exist, all Ready, none terminating; returns them.
    fn wait_pods_ready(&self, cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Value>> {
        let what = format!("{n} pods Ready");
        self.wait(&what, PODS_READY, || {
            let pods = hello_pods(cluster)?;
            let ok = pods.len() == n
                && pods
                    .iter()
                    .all(|p| pods::is_ready(p) && !pods::is_terminating(p));
            Ok(ok.then_some(pods))
        })
    }

    /// Fails unless every port answers HTTP 200 from inside the agent's namespace (soon).
    fn check_answering(&self, cluster: &Cluster, ports: &[u16]) -> anyhow::Result<()> {
        let host = agent(cluster)?.host();
        let netns = probe::netns_path(host.netns());
        self.wait("every port to answer", ANSWER, || {
            let up = probe::answering(&netns, host.ip().into(), ports)?;
            Ok(up.iter().all(|u| *u).then_some(()))
        })
    }

    /// Polls `check` until it returns `Some`, `timeout` passes, or the run is stopped. An error
    /// from `check` means "not yet" (and is quoted if the wait times out).
    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            self.check_stop()?;
            match check() {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(e) => last = format!("; last error: {e:#}"),
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}{last}");
            }
            std::thread::sleep(POLL);
        }
    }

    fn check_stop(&self) -> anyhow::Result<()> {
        if self.stop.is_set() {
            bail!("stopped");
        }
        Ok(())
    }
}

/// Sleeps `d`, returning early with an error when the run is stopped.
fn pause(stop: &Stop, d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.is_set() {
            bail!("stopped");
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    Ok(())
}

fn agent(cluster: &Cluster) -> anyhow::Result<&Member> {
    cluster
        .agent(NODE)
        .context("the cluster has no agent edge-1")
}

/// The pid of the `ledge agent` itself: the testkit starts it through `nsenter`, which execs it
/// (same pid), but a wrapper that forked would hide it, so this checks.
fn agent_pid(agent: &Member) -> anyhow::Result<u32> {
    let pid = agent.proc().pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "ledge" {
        bail!("process {pid} is {comm:?}, not the ledge agent: cannot read its disk writes");
    }
    Ok(pid)
}

fn apply(cluster: &Cluster, manifest: &Value) -> anyhow::Result<()> {
    let out = cluster.kubectl_with_input(&["apply", "-f", "-"], &manifest.to_string())?;
    if !out.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The Wasm HTTP container on `port`, with a readiness probe at kubelet's default period
/// when `probe`. The hello component logs every request it answers, so a probed pod writes a
/// container log line per probe — workload output, which the idle figure leaves out.
fn container(port: u16, probe: bool) -> Value {
    let mut c = json!({
        "name": "hello",
        "image": IMAGE,
        "ports": [{"containerPort": port}],
    });
    if probe {
        c["readinessProbe"] = json!({"httpGet": {"path": "/", "port": port}});
    }
    c
}

/// `replicas` hello pods sharing [`SHARED_PORT`] (replicas share one listener per port).
fn deployment(replicas: usize, probe: bool) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hello", "namespace": "default", "labels": {"app": "hello"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "hello"}},
            "template": {
                "metadata": {"labels": {"app": "hello"}},
                "spec": {"containers": [container(SHARED_PORT, probe)]},
            },
        },
    })
}

/// A bare hello Pod of its own on `port`.
fn bare_pod(port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("hello-{port}"),
            "namespace": "default",
            "labels": {"app": "hello"},
        },
        "spec": {"containers": [container(port, true)]},
    })
}

fn hello_pods(cluster: &Cluster) -> anyhow::Result<Vec<Value>> {
    Ok(pods::list(cluster, "app=hello")?)
}

/// What must not change for a pod that was not restarted.
fn fingerprints(pods: &[Value]) -> std::collections::BTreeSet<pods::Fingerprint> {
    pods.iter().map(pods::fingerprint).collect()
}

/// Size of an object as compact JSON (what a client sends or receives without whitespace).
fn json_len(v: &Value) -> u64 {
    serde_json::to_vec(v).map_or(0, |b| b.len() as u64)
}
