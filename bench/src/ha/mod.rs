//! Issue 5's "High availability on etcd" benchmarks (`bench/run --ha`), in one invocation:
//!
//! - **API on etcd**: issue 2's workload (the shared `Plan` flags, sized down by the `--ha-*`
//!   flags) against three legs, one after the other: `ledge server` on its embedded store,
//!   `ledge server` on a fresh single-member etcd (`--datastore-endpoint`), and a fresh etcd
//!   driven raw through `etcd-client` — the ceiling the etcd backend can approach.
//! - **hand-over** (`handover`): two servers on a 3-member etcd; the holder of the controller
//!   Lease is SIGKILLed, the Deployment scaled through the survivor, and the time taken until the
//!   survivor, now leading, has scaled the ReplicaSet.
//!
//! Not here: the drivers (`crate::ledge`, `crate::etcd`), the tables and the `RESULTS.md`
//! section (`report`).

mod handover;
mod report;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::plan::{Figures, Plan};
use crate::proc::{self, Machine};
use crate::{etcd, ledge};
pub use handover::Round;
use report::Report;

/// ledge's leader-election timing (`crates/controller/src/leader.rs`): the reference the
/// hand-over is read against, and the cycle its kills are spread over.
const LEASE_DURATION: Duration = Duration::from_secs(10);
const RENEW_DEADLINE: Duration = Duration::from_secs(7);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How the high-availability benchmarks are sized. Clients, connections, object and list sizes
/// are the shared flags (`--clients`, `--value-bytes`, `--list-items`, ...).
#[derive(Debug, Clone, clap::Args)]
pub struct HaPlan {
    /// ConfigMaps each leg of the API comparison creates (issue 2's run uses `--objects`).
    #[arg(long, default_value_t = 2000)]
    pub ha_objects: usize,
    /// Seconds of each leg's get phase and of its list phase.
    #[arg(long, default_value_t = 3)]
    pub ha_secs: u64,
    /// Watches in each leg's watch fan-out phase.
    #[arg(long, default_value_t = 100)]
    pub ha_watchers: usize,
    /// Sequential updates in each leg's update phase.
    #[arg(long, default_value_t = 200)]
    pub ha_updates: usize,
    /// Leader kills in the hand-over scenario.
    #[arg(long, default_value_t = 5)]
    pub ha_rounds: usize,
}

impl HaPlan {
    /// Issue 2's plan with this benchmark's sizes.
    fn api_plan(&self, base: &Plan) -> Plan {
        Plan {
            objects: self.ha_objects,
            get_secs: self.ha_secs,
            list_secs: self.ha_secs,
            watchers: self.ha_watchers,
            watch_connections: base.watch_connections.min(self.ha_watchers.max(1)),
            updates: self.ha_updates,
            ..base.clone()
        }
    }
}

/// What the run needs from the command line.
pub struct Inputs<'a> {
    pub ledge: &'a Path,
    pub etcd: &'a Path,
    pub work: &'a Path,
    pub results: Option<&'a Path>,
    pub command: &'a str,
    pub source: &'a str,
    pub plan: &'a Plan,
    pub ha: &'a HaPlan,
}

/// The three legs of the API comparison.
pub struct Api {
    /// `ledge server` on its embedded store.
    pub embedded: Figures,
    /// `ledge server` on a single-member etcd.
    pub on_etcd: Figures,
    /// CPU seconds the etcd under `on_etcd` used over that leg.
    pub backend_cpu: f64,
    /// Raw etcd through `etcd-client`.
    pub raw: Figures,
}

/// Run both benchmarks, print the tables and write the section of `RESULTS.md`.
pub async fn run(inputs: Inputs<'_>) -> anyhow::Result<()> {
    let machine = Machine::read();
    let plan = inputs.ha.api_plan(inputs.plan);
    println!(
        "== ledge on its embedded store ({})",
        inputs.ledge.display()
    );
    let embedded = ledge::bench(inputs.ledge, inputs.work, &plan, "ledge-embedded", &[]).await?;
    println!("== ledge on etcd ({})", inputs.etcd.display());
    let (on_etcd, backend_cpu) = ledge_on_etcd(&inputs, &plan).await?;
    println!("== raw etcd ({})", inputs.etcd.display());
    let raw = etcd::bench(inputs.etcd, inputs.work, &plan, on_etcd.update_object_bytes).await?;
    let api = Api {
        embedded,
        on_etcd,
        backend_cpu,
        raw,
    };
    println!("== leader hand-over ({} rounds)", inputs.ha.ha_rounds);
    let rounds = handover::run(inputs.ledge, inputs.etcd, inputs.work, inputs.ha.ha_rounds).await?;

    let report = Report {
        machine: &machine,
        load_end: Machine::read().loadavg,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: inputs.command,
        source: inputs.source,
        ledge_version: proc::version_line(inputs.ledge),
        etcd_version: proc::version_line(inputs.etcd),
        plan: &plan,
        api: &api,
        rounds: &rounds,
    };
    let section = report.markdown();
    println!("\n{section}");
    if let Some(path) = inputs.results {
        report::write_section(path, &section)?;
        println!("wrote the high availability section of {}", path.display());
    }
    Ok(())
}

/// The middle leg: a fresh single-member etcd, and `ledge server` on it driven exactly as the
/// embedded leg was. Returns ledge's figures and the CPU seconds etcd used meanwhile.
async fn ledge_on_etcd(inputs: &Inputs<'_>, plan: &Plan) -> anyhow::Result<(Figures, f64)> {
    let (mut backend, url) = etcd::spawn_cluster(inputs.etcd, inputs.work, "backend-etcd", 1)?
        .pop()
        .context("no etcd member started")?;
    etcd::wait_ready(&mut backend, &url).await?;
    let endpoint = format!("etcd://{}", url.trim_start_matches("http://"));
    let cpu0 = proc::cpu_seconds(backend.pid());
    let extra = ["--datastore-endpoint".to_string(), endpoint];
    let figures = ledge::bench(inputs.ledge, inputs.work, plan, "ledge-on-etcd", &extra).await?;
    let backend_cpu = proc::cpu_seconds(backend.pid()) - cpu0;
    backend.check_alive()?;
    backend.stop();
    Ok((figures, backend_cpu))
}
