//! What the autonomy scenarios measured, the goals, upstream's computed figure, and the
//! "Edge autonomy (issue 4)" section of `bench/RESULTS.md` (the rest of the file is left as it
//! is). Nothing here measures.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use ledge_testkit::LinkCounters;

use super::AutonomyPlan;
use crate::proc::Machine;

/// Issue 4's goals.
const WIRE_GOAL: f64 = 100_000.0; // bytes per idle node per hour
const DISK_GOAL: f64 = 1_000_000.0; // bytes written per idle hour
const RECONNECT_GOAL: u64 = 50_000; // bytes
const OFFLINE_GOAL: Duration = Duration::from_secs(2);

/// kubelet's defaults: a Lease update every `nodeLeaseDurationSeconds / 4` = 10 s, a status
/// report every `nodeStatusReportFrequency` = 5 min when nothing changed.
const LEASE_UPDATES_PER_HOUR: u64 = 3600 / 10;
const STATUS_REPORTS_PER_HOUR: u64 = 3600 / 300;

/// The heading of the section this benchmark owns in `RESULTS.md`.
const SECTION: &str = "## Edge autonomy (issue 4)";

/// Bytes and packets on the agent's link between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkDelta {
    pub sent: u64,
    pub received: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
}

impl LinkDelta {
    /// From `a` to `b`.
    pub fn between(a: &LinkCounters, b: &LinkCounters) -> Self {
        Self {
            sent: b.bytes.sent.saturating_sub(a.bytes.sent),
            received: b.bytes.received.saturating_sub(a.bytes.received),
            packets_sent: b.packets.sent.saturating_sub(a.packets.sent),
            packets_received: b.packets.received.saturating_sub(a.packets.received),
        }
    }

    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.sent + self.received
    }

    /// Packets both ways.
    pub fn packets(&self) -> u64 {
        self.packets_sent + self.packets_received
    }
}

/// The idle scenario.
#[derive(Debug)]
pub struct Idle {
    pub pods: usize,
    pub window: Duration,
    pub link: LinkDelta,
    pub disk_bytes: u64,
    /// The node's Lease, compact JSON.
    pub lease_bytes: u64,
    /// The Node, compact JSON.
    pub node_bytes: u64,
    /// `{"status": <the Node's status>}`, compact JSON.
    pub status_patch_bytes: u64,
}

impl Idle {
    fn per_hour(&self, v: u64) -> f64 {
        v as f64 * 3600.0 / self.window.as_secs_f64().max(1e-9)
    }

    fn wire_per_hour(&self) -> f64 {
        self.per_hour(self.link.bytes())
    }

    fn disk_per_hour(&self) -> f64 {
        self.per_hour(self.disk_bytes)
    }

    /// kubelet's payload per hour with its defaults: each Lease update is a PUT of the whole
    /// Lease answered with the whole Lease; each status report a PATCH about the size of the
    /// status answered with the whole Node.
    fn upstream_per_hour(&self) -> u64 {
        LEASE_UPDATES_PER_HOUR * 2 * self.lease_bytes
            + STATUS_REPORTS_PER_HOUR * (self.status_patch_bytes + self.node_bytes)
    }
}

/// One offline start.
#[derive(Debug)]
pub struct OfflineRun {
    /// Until the first pod answered.
    pub first: Option<Duration>,
    /// Until the last pod answered (`None`: not all did in time).
    pub all: Option<Duration>,
    /// Pods that answered in time.
    pub answered: usize,
}

/// The offline start scenario.
#[derive(Debug)]
pub struct Offline {
    pub pods: usize,
    pub runs: Vec<OfflineRun>,
}

impl Offline {
    /// The slowest run (`None` if one did not finish).
    fn slowest(&self) -> Option<Duration> {
        self.runs
            .iter()
            .map(|r| r.all)
            .collect::<Option<Vec<_>>>()
            .and_then(|all| all.into_iter().max())
    }
}

/// The reconnect scenario.
#[derive(Debug)]
pub struct Reconnect {
    pub pods: usize,
    pub partition: Duration,
    /// The Node was seen `Ready=Unknown` during the partition (the server noticed it).
    pub node_seen_unknown: bool,
    /// From the restore until the Node and every pod were Ready (`None`: not in time).
    pub converge: Option<Duration>,
    /// Link bytes from the restore until convergence.
    pub link_converged: LinkDelta,
    /// Link bytes from the restore until convergence plus the quiet period.
    pub link: LinkDelta,
    /// Same uids, nodes, restart counts and start times as before the partition.
    pub unchanged: bool,
}

/// Whatever scenarios ran.
#[derive(Debug, Default)]
pub struct Figures {
    pub idle: Option<Idle>,
    pub offline: Option<Offline>,
    pub reconnect: Option<Reconnect>,
}

impl Figures {
    /// All three scenarios ran.
    pub fn complete(&self) -> bool {
        self.idle.is_some() && self.offline.is_some() && self.reconnect.is_some()
    }
}

/// The report of one run.
pub struct Report<'a> {
    pub machine: &'a Machine,
    pub load_end: String,
    pub date: String,
    pub command: &'a str,
    pub source: &'a str,
    /// The binary measured (a copy of the build).
    pub ledge: &'a Path,
    /// When the build was made.
    pub built: String,
    pub plan: &'a AutonomyPlan,
    pub figures: &'a Figures,
}

impl Report<'_> {
    /// The `RESULTS.md` section (also printed at the end of a run).
    pub fn markdown(&self) -> String {
        let m = self.machine;
        let plan = self.plan;
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION}\n");
        let _ = writeln!(s, "### Edge autonomy — `bench/run --autonomy`\n");
        let _ = writeln!(
            s,
            "Written by `bench/run --autonomy` (this section only); rerun it rather than editing.\n"
        );
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- date: {}", self.date);
        let _ = writeln!(s, "{}", crate::report::machine_line(m, &self.load_end));
        let _ = writeln!(
            s,
            "- ledge: {} (source {}), release binary built {}; agent and server with their \
             defaults (`--lease-interval 10s`, `--node-monitor-grace-period 40s`)",
            crate::proc::version_line(self.ledge),
            self.source,
            self.built
        );
        let _ = writeln!(
            s,
            "- durations: idle window {} s after {} s of settling; partition {} s; {} offline \
             starts\n",
            plan.idle_secs, plan.autonomy_settle_secs, plan.partition_secs, plan.offline_runs
        );
        s.push_str(&self.table());
        s.push('\n');
        if let Some(idle) = &self.figures.idle {
            let _ = writeln!(
                s,
                "Upstream, computed: {LEASE_UPDATES_PER_HOUR} Lease updates/h × (PUT {} B + \
                 response {} B) + {STATUS_REPORTS_PER_HOUR} status PATCHes/h × (request {} B + \
                 response, the Node, {} B) = {} per hour — **JSON payload only**: no HTTP \
                 headers, no TLS records, no TCP/IP/Ethernet headers, no ACKs, no watches, \
                 whereas ledge's figure is every byte on the veth. It flatters upstream (a real \
                 kubelet's Node also lists its images, making each status exchange larger; \
                 kubelet does send protobuf, smaller than JSON, but over the same overheads).\n",
                idle.lease_bytes,
                idle.lease_bytes,
                idle.status_patch_bytes,
                idle.node_bytes,
                kb(idle.upstream_per_hour() as f64),
            );
        }
        s.push_str(HOW);
        s
    }

    /// The figures against the goals.
    fn table(&self) -> String {
        let mut s = String::from("| measure | ledge | goal (issue 4) | |\n|---|---:|---:|---|\n");
        let f = self.figures;
        match &f.idle {
            Some(idle) => {
                let wire = idle.wire_per_hour();
                let upstream = idle.upstream_per_hour() as f64;
                let _ = writeln!(
                    s,
                    "| bytes on the wire per idle node per hour ({} Wasm pods) | {}/h ({:.1} B/s; \
                     sent {} / received {}; {:.0} packets/h) | ≤ 100 kB/h | {} |",
                    idle.pods,
                    kb(wire),
                    wire / 3600.0,
                    kb(idle.per_hour(idle.link.sent)),
                    kb(idle.per_hour(idle.link.received)),
                    idle.per_hour(idle.link.packets()),
                    met(wire <= WIRE_GOAL)
                );
                let _ = writeln!(
                    s,
                    "| — upstream kubelet defaults, computed JSON payload only | {}/h | – | \
                     ledge ÷ upstream = {:.2}× |",
                    kb(upstream),
                    wire / upstream.max(1.0)
                );
                let disk = idle.disk_per_hour();
                let _ = writeln!(
                    s,
                    "| agent bytes written to disk per idle hour | {}/h | ≤ 1 MB/h | {} |",
                    kb(disk),
                    met(disk <= DISK_GOAL)
                );
            }
            None => s.push_str("| idle wire and disk bytes | not run | | |\n"),
        }
        match &f.reconnect {
            Some(r) => {
                let _ = writeln!(
                    s,
                    "| bytes exchanged on reconnect after a {} s partition, {} unchanged pods | {} \
                     (sent {} / received {}; {} packets; {} until converged) | ≤ 50 kB | {} |",
                    r.partition.as_secs(),
                    r.pods,
                    kb(r.link.bytes() as f64),
                    kb(r.link.sent as f64),
                    kb(r.link.received as f64),
                    r.link.packets(),
                    kb(r.link_converged.bytes() as f64),
                    met(r.link.bytes() <= RECONNECT_GOAL && r.converge.is_some())
                );
                let _ = writeln!(
                    s,
                    "| — time from the restore until the Node and every pod were Ready | {} | – | \
                     pods unchanged: {}; Node seen Unknown while cut: {} |",
                    match r.converge {
                        Some(d) => secs(d),
                        None => format!("**not within {CONVERGE_NOTE}**"),
                    },
                    yes(r.unchanged),
                    yes(r.node_seen_unknown)
                );
            }
            None => s.push_str("| reconnect bytes | not run | | |\n"),
        }
        match &f.offline {
            Some(o) => {
                let runs: Vec<String> = o
                    .runs
                    .iter()
                    .map(|r| match r.all {
                        Some(d) => secs(d),
                        None => format!("{} of {} answered", r.answered, o.pods),
                    })
                    .collect();
                let firsts: Vec<String> = o.runs.iter().map(|r| secs_opt(r.first)).collect();
                let slowest = o.slowest();
                let _ = writeln!(
                    s,
                    "| offline agent start → all {} Wasm HTTP pods answering ({} runs) | {} \
                     (first pod: {}) | ≤ 2 s | {} |",
                    o.pods,
                    o.runs.len(),
                    runs.join(" / "),
                    firsts.join(" / "),
                    met(slowest.is_some_and(|d| d <= OFFLINE_GOAL))
                        + if slowest.is_some() {
                            " (slowest run)"
                        } else {
                            ""
                        }
                );
            }
            None => s.push_str("| offline start | not run | | |\n"),
        }
        s
    }
}

const CONVERGE_NOTE: &str = "300 s";

const HOW: &str = "\
How each is taken. **Bed**: `ledge-testkit`'s network namespaces — the server on one host, one \
agent on another, linked through a bridge in a hub namespace; each scenario on a fresh cluster \
whose data dirs are under `$CARGO_TARGET_DIR` (on disk); the hello-wasm component imported with \
`ledge image import`; cluster state read with the real `kubectl` from the server's namespace \
(never over the agent's link). **Wire bytes**: the agent host's veth counters (`ip -s link`, hub \
end), both directions, so Ethernet/IP/TCP/TLS/HTTP overhead, ARP and retransmissions all count; \
read after the pods were Ready, answered and the cluster had settled, then again at the end of \
the window, extrapolated to an hour. **Disk bytes**: growth of `write_bytes` in the agent's \
`/proc/PID/io` (bytes it caused to be sent to the block layer: page-cache dirtying and direct \
writes, all threads) over the same window, extrapolated to an hour. **Reconnect**: a Deployment \
of unchanged replicas sharing one port, settled; the link taken off the bridge for the \
partition, put back, and the veth counters read from just before the restore until the Node is \
`Ready=True` and every pod is Ready (polled every 250 ms) plus 10 s of quiet, so trailing writes \
count; the pods' uid, node, restart count and start time compared with before. **Offline \
start**: bare Pods, one port each, all answering; the link cut; per run the agent SIGKILLed with \
its process group (the Wasm pods are in-process and die with it — checked: no port answers), \
then started again with the same command while still cut; measured from just before the restart \
(the `nsenter` exec included) until each port first answered `GET /` with 200. The probe is one \
thread per port inside the agent's namespace (`setns` of the thread, plain TCP, a new connection \
every 20 ms while refused), so no process is spawned per probe and one slow port cannot delay \
another; 3 s pause between runs. Goals are judged in decimal units (kB = 1,000 B).\n";

/// The binary's modification time, as a UTC date ("unknown" if unreadable).
pub fn built_at(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// Replaces the "Edge autonomy (issue 4)" section of `path` with `section`, or appends it
/// below the other benchmarks' marker; everything else is kept byte for byte.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    crate::report::write_section(path, SECTION, section)
}

/// Decimal kilobytes or megabytes.
fn kb(bytes: f64) -> String {
    if bytes < 1000.0 {
        format!("{bytes:.0} B")
    } else if bytes < 1e6 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{:.2} MB", bytes / 1e6)
    }
}

/// Seconds with two decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// [`secs`], or "—".
pub fn secs_opt(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), secs)
}

fn met(ok: bool) -> String {
    if ok { "met" } else { "**not met**" }.to_string()
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_is_lease_round_trips_every_10_s_and_status_every_5_min() {
        let idle = Idle {
            pods: 10,
            window: Duration::from_secs(300),
            link: LinkDelta {
                sent: 1000,
                received: 500,
                ..LinkDelta::default()
            },
            disk_bytes: 0,
            lease_bytes: 400,
            node_bytes: 3000,
            status_patch_bytes: 2000,
        };
        assert_eq!(idle.upstream_per_hour(), 360 * 800 + 12 * 5000);
        assert_eq!(idle.wire_per_hour(), 1500.0 * 12.0);
    }
}
