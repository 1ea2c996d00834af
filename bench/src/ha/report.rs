//! The high-availability figures as tables and as the "High availability (issue 5)" section of
//! `bench/RESULTS.md` (the rest of the file is left as it is). Nothing here measures.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::{Api, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, Round};
use crate::load::{LoadStats, Percentiles};
use crate::plan::{Figures, Plan};
use crate::proc::Machine;
use crate::report::{ms, per_sec, ratio};

/// The heading of the section this benchmark owns in `RESULTS.md`.
const SECTION: &str = "## High availability (issue 5)";

/// Everything the section says.
pub struct Report<'a> {
    pub machine: &'a Machine,
    pub load_end: String,
    pub date: String,
    pub command: &'a str,
    pub source: &'a str,
    pub ledge_version: String,
    pub etcd_version: String,
    pub plan: &'a Plan,
    pub api: &'a Api,
    pub rounds: &'a [Round],
}

/// One row of the API table: a label and the three legs' cells, with the two ratios.
struct Row {
    what: String,
    cells: [String; 3],
    ratios: [String; 2],
}

fn rate_row(what: String, s: [&LoadStats; 3]) -> Row {
    Row {
        what,
        cells: s.map(per_sec),
        ratios: [
            ratio(s[1].per_sec(), s[0].per_sec()),
            ratio(s[1].per_sec(), s[2].per_sec()),
        ],
    }
}

fn latency_rows(what: &str, p: [&Percentiles; 3]) -> [Row; 2] {
    let row = |q: &str, d: [Duration; 3]| Row {
        what: format!("{what} {q}"),
        cells: d.map(ms),
        ratios: [
            ratio(d[1].as_secs_f64(), d[0].as_secs_f64()),
            ratio(d[1].as_secs_f64(), d[2].as_secs_f64()),
        ],
    };
    [row("p50", p.map(|p| p.p50)), row("p99", p.map(|p| p.p99))]
}

fn cpu_per_request(what: String, s: [&LoadStats; 3]) -> Row {
    Row {
        what,
        cells: s.map(|s| format!("{:.0} µs", s.server_cpu_us())),
        ratios: [
            ratio(s[1].server_cpu_us(), s[0].server_cpu_us()),
            ratio(s[1].server_cpu_us(), s[2].server_cpu_us()),
        ],
    }
}

/// (min, median, max); the median of an even count is the lower middle.
pub fn spread(values: &[Duration]) -> Option<(Duration, Duration, Duration)> {
    let mut v = values.to_vec();
    v.sort_unstable();
    let median = *v.get(v.len().checked_sub(1)? / 2)?;
    Some((*v.first()?, median, *v.last()?))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

impl Report<'_> {
    fn legs(&self) -> [&Figures; 3] {
        [&self.api.embedded, &self.api.on_etcd, &self.api.raw]
    }

    fn api_rows(&self) -> Vec<Row> {
        let f = self.legs();
        let mut rows = Vec::new();
        let list = format!("list ({} items)", self.plan.list_items);
        let phases = [
            ("create", f.map(|f| &f.create)),
            ("get", f.map(|f| &f.get)),
            (list.as_str(), f.map(|f| &f.list)),
        ];
        for (name, s) in phases {
            rows.push(rate_row(format!("{name} throughput"), s));
            rows.extend(latency_rows(
                &format!("{name} latency"),
                s.map(|s| &s.latency),
            ));
            rows.push(cpu_per_request(
                format!("{name} server CPU per request ¹"),
                s,
            ));
        }
        // Only the p99: most deliveries beat the writer's acknowledgement, so every p50 is 0.
        let [_, watch_p99] = latency_rows(
            &format!("watch ({} watchers) event after ack", self.plan.watchers),
            f.map(|f| &f.watch.from_ack),
        );
        rows.push(watch_p99);
        rows.extend(latency_rows(
            "sequential update latency",
            f.map(|f| &f.update_latency),
        ));
        rows
    }

    /// The API comparison as Markdown.
    pub fn api_table(&self) -> String {
        let mut out = String::from(
            "| measure | ledge, embedded store | ledge on etcd | raw etcd | on etcd ÷ embedded | \
             on etcd ÷ raw etcd |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for r in self.api_rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                r.what, r.cells[0], r.cells[1], r.cells[2], r.ratios[0], r.ratios[1]
            );
        }
        out
    }

    /// The hand-over rounds and their spread as Markdown.
    pub fn handover_tables(&self) -> String {
        let mut out = String::from(
            "| round | killed | scaled to | scale accepted by the survivor | Lease names the \
             survivor | ReplicaSet scaled (first reconcile) |\n|---:|---|---:|---:|---:|---:|\n",
        );
        for (i, r) in self.rounds.iter().enumerate() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} ms | {} | {} |",
                i + 1,
                r.killed,
                r.replicas,
                r.scale_accepted.as_secs_f64() * 1e3,
                secs(r.lease_moved),
                secs(r.reconciled)
            );
        }
        out.push_str(
            "\n| from the SIGKILL until | min | median | max | median ÷ lease duration (10 s) \
             |\n|---|---:|---:|---:|---:|\n",
        );
        let series = [
            (
                "the Lease names the survivor",
                self.rounds
                    .iter()
                    .map(|r| r.lease_moved)
                    .collect::<Vec<_>>(),
            ),
            (
                "**the new leader's first reconcile** (ReplicaSet scaled)",
                self.rounds.iter().map(|r| r.reconciled).collect(),
            ),
        ];
        for (what, values) in series {
            if let Some((min, median, max)) = spread(&values) {
                let _ = writeln!(
                    out,
                    "| {what} | {} | {} | {} | {} |",
                    secs(min),
                    secs(median),
                    secs(max),
                    ratio(median.as_secs_f64(), LEASE_DURATION.as_secs_f64())
                );
            }
        }
        out
    }

    fn cpu_note(&self) -> String {
        let [e, o, r] = self.legs().map(|f| f.cpu);
        format!(
            "CPU over each leg (wall s: server CPU-s / harness CPU-s / other processes' CPU-s): \
             embedded {:.0} s: {:.1} / {:.1} / {:.1}; on etcd {:.0} s: ledge {:.1} + its etcd \
             {:.1} / {:.1} / {:.1} (other includes that etcd); raw etcd {:.0} s: {:.1} / {:.1} / \
             {:.1}; hypervisor steal {:.1} / {:.1} / {:.1} s",
            e.wall,
            e.server,
            e.harness,
            e.other,
            o.wall,
            o.server,
            self.api.backend_cpu,
            o.harness,
            o.other,
            r.wall,
            r.server,
            r.harness,
            r.other,
            e.steal,
            o.steal,
            r.steal
        )
    }

    /// The `RESULTS.md` section (also printed at the end of a run).
    pub fn markdown(&self) -> String {
        let (m, p) = (self.machine, self.plan);
        let mut s = String::new();
        let _ = writeln!(s, "{SECTION}\n");
        let _ = writeln!(
            s,
            "### etcd backend and leader hand-over — `bench/run --ha`\n"
        );
        let _ = writeln!(
            s,
            "Written by `bench/run --ha` (this section only); rerun it rather than editing. The \
             three API legs and the hand-over run one after the other in one invocation, on the \
             same machine, with the same workload.\n"
        );
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- date: {}", self.date);
        let _ = writeln!(s, "{}", crate::report::machine_line(m, &self.load_end));
        let _ = writeln!(
            s,
            "- ledge: {} (source {}), release build; etcd: {}, plaintext gRPC on loopback, \
             etcd's default timings",
            self.ledge_version, self.source, self.etcd_version
        );
        let _ = writeln!(
            s,
            "- workload per leg: {} clients over {} connections; {} creates of {} B ConfigMaps; \
             {} s of gets; {} s of lists of {} items; {} watches, {} writes; {} sequential \
             updates\n",
            p.clients,
            p.connections,
            p.objects,
            p.value_bytes,
            p.get_secs,
            p.list_secs,
            p.list_items,
            p.watchers,
            p.watch_writes,
            p.updates
        );
        let _ = writeln!(s, "#### API throughput and latency\n");
        s.push_str(&self.api_table());
        let _ = writeln!(
            s,
            "\nRatios: above 1× is better for throughput, below 1× for latency and CPU. \
             ¹ ledge's process only: on etcd, the etcd's own CPU is not in the row (it is in the \
             line below). ledge answers gets and lists from its watch cache, on etcd too (after \
             the cache caught up with the newest revision this server has seen), so they do not \
             reach etcd; raw etcd's gets are linearizable reads (a quorum round per read) — \
             which is why ledge on etcd can out-read raw etcd.\n\n{}\n",
            self.cpu_note()
        );
        let _ = writeln!(s, "#### Leader hand-over\n");
        s.push_str(&self.handover_tables());
        let _ = writeln!(
            s,
            "\nReference, not a baseline: ledge's election uses a {} s lease, {} s renew \
             deadline and {} s retry period; upstream kube-controller-manager's defaults are \
             15 s lease + 10 s renew deadline + 2 s retry period. As in client-go, a standby \
             counts the lease from the moment it *saw* the last renewal and tries again every \
             retry period, so after a crash it takes over between about lease − retry and \
             lease + 2 × retry after the kill ({}–{} s here; {}–{} s with upstream's \
             defaults).\n",
            LEASE_DURATION.as_secs(),
            RENEW_DEADLINE.as_secs(),
            RETRY_PERIOD.as_secs(),
            (LEASE_DURATION - RETRY_PERIOD).as_secs(),
            (LEASE_DURATION + 2 * RETRY_PERIOD).as_secs(),
            15 - RETRY_PERIOD.as_secs(),
            15 + 2 * RETRY_PERIOD.as_secs(),
        );
        s.push_str(HOW);
        s
    }
}

/// How each number is taken (static text).
const HOW: &str = "#### How each number is taken\n\n\
- **API legs.** Issue 2's driver (`src/ledge.rs`, `src/etcd.rs`) with the sizes above, three \
times: `ledge server` on a fresh data dir (embedded store); `ledge server` with \
`--datastore-endpoint etcd://…` on a fresh single-member etcd (its own data dir and free loopback \
ports); and a fresh single-member etcd driven raw through `etcd-client` (puts, linearizable \
gets, prefix ranges, prefix watches, under kube-apiserver's key layout). ledge is reached over \
HTTPS + HTTP/2 with the admin client certificate, etcd over plaintext gRPC. Throughput = \
successful operations ÷ wall time of the phase; latency = per request, nearest-rank \
percentiles; watch = from the writer's acknowledgement to the event's bytes reaching each \
watcher; sequential update = one PUT (etcd: put) at a time, each after the previous answer. The \
harness shares the CPUs with what it measures.\n\
- **Hand-over.** A 3-member etcd on loopback (etcd's default 100 ms heartbeat, 1 s election \
timeout); server *a* starts on it, server *b* joins with *a*'s cluster token (`--token`); both \
bind 127.0.0.1. A Deployment of one replica is created and its ReplicaSet awaited (no agents: \
its pods stay Pending). Each round reads the Lease \
`kube-system/ledge-controller-manager`, SIGKILLs the server whose `<data dir>/identity` it names, \
and at once scales the Deployment to one more replica than before through the survivor (GET + \
PUT, retried until accepted). From the moment the signal was sent, the survivor's API is polled \
every 25 ms for the Lease's `spec.holderIdentity` and the Deployment's ReplicaSet's \
`spec.replicas`: a time is taken when the poll that first saw the change was answered. The \
killed server is then restarted on the same data dir, port and flags; the next round kills \
whichever server leads, 5 s + i/n × 2 s after the restarted one is ready (`/readyz`) — round i \
of n — so that it campaigns as the standby and the kills fall at different points of the 2 s \
renew cycle (without the spread, every round hit the same point and measured the same time).\n";

/// Replaces the "High availability (issue 5)" section of `path` with `section`, or appends it
/// below the other benchmarks' marker; everything else is kept byte for byte.
pub fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    crate::report::write_section(path, SECTION, section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_lower_median_max() {
        let s = |v: &[u64]| {
            spread(
                &v.iter()
                    .map(|&x| Duration::from_secs(x))
                    .collect::<Vec<_>>(),
            )
            .map(|(a, b, c)| (a.as_secs(), b.as_secs(), c.as_secs()))
        };
        assert_eq!(s(&[9, 3, 5, 12, 7]), Some((3, 7, 12)));
        assert_eq!(s(&[4, 2]), Some((2, 2, 4)));
        assert_eq!(s(&[]), None);
    }
}
