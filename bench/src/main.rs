//! `ledge-bench`: issue 2's benchmarks. Starts a `ledge server` and then an `etcd` baseline on
//! loopback, runs the same workload against each (memory, create/get/list throughput and
//! latency, watch fan-out, disk writes per update), prints both side by side with ratios and
//! writes `bench/RESULTS.md`. `bench/run` builds everything and calls this; run that instead.
//! `--scheduler`, `--autonomy` and `--ha` run the scheduler, edge autonomy and high
//! availability benchmarks instead.

mod autonomy;
mod etcd;
mod ha;
mod kube;
mod ledge;
mod load;
mod plan;
mod proc;
mod report;
mod scheduler;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

/// Everything but a full run is guarded by this: a hung server cannot keep the harness alive.
const OVERALL_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Benchmark ledge against an etcd baseline (see bench/README.md).
#[derive(Parser)]
#[command(name = "ledge-bench")]
struct Cli {
    /// The `ledge` binary to measure (a release build).
    #[arg(long)]
    ledge: PathBuf,
    /// The `etcd` binary of the baseline.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Scratch directory for data directories, logs and the pid file (must be on disk, not
    /// tmpfs, for the disk-write figures).
    #[arg(long)]
    work_dir: PathBuf,
    /// Write the Markdown report here.
    #[arg(long)]
    results: Option<PathBuf>,
    /// The command line to quote in the report.
    #[arg(long, default_value = "ledge-bench")]
    command: String,
    /// The ledge source revision to quote in the report.
    #[arg(long, default_value = "unknown")]
    source: String,
    #[command(flatten)]
    plan: plan::Plan,
    /// Run only the scheduler throughput benchmark (5,000 nodes, 50,000 pods; see
    /// `src/scheduler.rs`) instead of the API server against etcd.
    #[arg(long)]
    scheduler: bool,
    #[command(flatten)]
    sched: scheduler::SchedPlan,
    /// Run only issue 4's edge autonomy benchmarks (idle wire and disk bytes, reconnect bytes,
    /// offline start; see `src/autonomy/`) on the testkit's netns bed. Needs root.
    #[arg(long)]
    autonomy: bool,
    #[command(flatten)]
    auto: autonomy::AutonomyPlan,
    /// Run only issue 5's high availability benchmarks (the API on the embedded store, on etcd
    /// and raw etcd; leader hand-over on a 3-member etcd; see `src/ha/`).
    #[arg(long)]
    ha: bool,
    #[command(flatten)]
    ha_plan: ha::HaPlan,
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.work_dir)
        .with_context(|| format!("create {}", cli.work_dir.display()))?;
    if cli.scheduler {
        println!("== ledge scheduler ({})", cli.ledge.display());
        return scheduler::bench(&cli.ledge, &cli.work_dir, &cli.sched).await;
    }
    if cli.ha {
        return ha::run(ha::Inputs {
            ledge: &cli.ledge,
            etcd: &cli.etcd,
            work: &cli.work_dir,
            results: cli.results.as_deref(),
            command: &cli.command,
            source: &cli.source,
            plan: &cli.plan,
            ha: &cli.ha_plan,
        })
        .await;
    }
    let machine = proc::Machine::read();
    println!("== ledge ({})", cli.ledge.display());
    let ledge = ledge::bench(&cli.ledge, &cli.work_dir, &cli.plan, "ledge", &[]).await?;
    println!("== etcd baseline ({})", cli.etcd.display());
    let etcd = etcd::bench(
        &cli.etcd,
        &cli.work_dir,
        &cli.plan,
        ledge.update_object_bytes,
    )
    .await?;
    let report = report::Report {
        machine: &machine,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: &cli.command,
        source: &cli.source,
        plan: &cli.plan,
        ledge: &ledge,
        etcd: &etcd,
    };
    println!(
        "\n{}\n{}\n{}",
        report.table(),
        report.goals_table(),
        report.cpu_note()
    );
    if let Some(path) = &cli.results {
        // The other benchmarks' sections (below the marker) are kept as they are.
        let kept = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| {
                old.find(report::OTHER_BENCHMARKS)
                    .map(|i| old[i..].to_string())
            })
            .unwrap_or_default();
        let mut text = report.markdown();
        if !kept.is_empty() {
            text.push('\n');
            text.push_str(&kept);
        }
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.autonomy {
        // Blocking (the testkit is), longer than OVERALL_LIMIT, with its own limit and signals.
        return autonomy::main(autonomy::Inputs {
            ledge: &cli.ledge,
            work: &cli.work_dir,
            results: cli.results.as_deref(),
            command: &cli.command,
            source: &cli.source,
            plan: &cli.auto,
        });
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // Leaving `run` early (an error, Ctrl-C, SIGTERM, the overall limit) drops the servers it
    // started, which kills them.
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = run(&cli) => result,
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
            _ = tokio::time::sleep(OVERALL_LIMIT) => bail!("gave up after {OVERALL_LIMIT:?}"),
        }
    })
}
