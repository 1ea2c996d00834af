//! Turning two runs' figures into the comparison table (printed) and `bench/RESULTS.md`:
//! figures side by side with ledge ÷ etcd ratios, issue 2's goals marked met or not, the
//! machine, the command and how every number was taken. Also how the other benchmarks put
//! their own sections into the same file ([`write_section`]).

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::load::{LoadStats, Percentiles};
use crate::plan::{Figures, Plan};
use crate::proc::{CpuUse, Machine};

/// Everything the report says.
pub struct Report<'a> {
    /// Where it ran.
    pub machine: &'a Machine,
    /// When it ran (UTC).
    pub date: String,
    /// The command that produced it.
    pub command: &'a str,
    /// Which ledge source (commit) was measured.
    pub source: &'a str,
    /// The workload.
    pub plan: &'a Plan,
    /// ledge's figures.
    pub ledge: &'a Figures,
    /// The etcd baseline's figures.
    pub etcd: &'a Figures,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Milliseconds with two decimals.
/// The `- machine: ...` line of a results section: what ran it, and how loaded the machine was
/// at the start and at the end.
pub fn machine_line(m: &Machine, load_end: &str) -> String {
    format!(
        "- machine: {} CPUs ({}), {:.1} GB RAM, Linux {}, load average {} at the start, {} at the \
         end",
        m.cpus,
        m.cpu_model,
        m.mem_bytes as f64 / 1e9,
        m.kernel,
        m.loadavg,
        load_end
    )
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn cpu(c: &CpuUse) -> String {
    format!(
        "{:.0} s / {:.1} / {:.1} / {:.1} / {:.1}",
        c.wall, c.server, c.harness, c.other, c.steal
    )
}

/// `a ÷ b` as "1.23×", or "–" when `b` is 0.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

struct Row {
    what: String,
    ledge: String,
    etcd: String,
    ratio: String,
}

fn row(what: impl Into<String>, ledge: String, etcd: String, ratio: String) -> Row {
    Row {
        what: what.into(),
        ledge,
        etcd,
        ratio,
    }
}

fn bytes_row(what: &str, l: u64, e: u64) -> Row {
    row(what, mb(l), mb(e), ratio(l as f64, e as f64))
}

fn latency_rows(what: &str, l: &Percentiles, e: &Percentiles) -> [Row; 2] {
    let r = |q: &str, a: Duration, b: Duration| {
        row(
            format!("{what} {q}"),
            ms(a),
            ms(b),
            ratio(a.as_secs_f64(), b.as_secs_f64()),
        )
    };
    [r("p50", l.p50, e.p50), r("p99", l.p99, e.p99)]
}

/// Throughput of a phase, with its failures if any.
pub fn per_sec(s: &LoadStats) -> String {
    match s.errors {
        0 => format!("{:.0}/s", s.per_sec()),
        n => format!("{:.0}/s ({n} failed)", s.per_sec()),
    }
}

fn load_rows(what: &str, l: &LoadStats, e: &LoadStats) -> Vec<Row> {
    let mut rows = vec![row(
        format!("{what} throughput"),
        per_sec(l),
        per_sec(e),
        ratio(l.per_sec(), e.per_sec()),
    )];
    rows.extend(latency_rows(
        &format!("{what} latency"),
        &l.latency,
        &e.latency,
    ));
    rows.push(row(
        format!("{what} server CPU per request"),
        format!("{:.0} µs", l.server_cpu_us()),
        format!("{:.0} µs", e.server_cpu_us()),
        ratio(l.server_cpu_us(), e.server_cpu_us()),
    ));
    rows
}

impl Report<'_> {
    fn rows(&self) -> Vec<Row> {
        let (l, e, p) = (self.ledge, self.etcd, self.plan);
        let mut rows = vec![
            bytes_row("Idle RSS (ready + settled)", l.idle_rss, e.idle_rss),
            bytes_row(
                &format!("RSS holding {} × {} B objects", p.objects, p.value_bytes),
                l.loaded_rss,
                e.loaded_rss,
            ),
            bytes_row("Peak RSS over the whole run", l.peak_rss, e.peak_rss),
            bytes_row(
                &format!("Data dir holding {} objects", p.objects),
                l.disk_bytes,
                e.disk_bytes,
            ),
        ];
        rows.extend(load_rows("create", &l.create, &e.create));
        rows.extend(load_rows("get", &l.get, &e.get));
        rows.extend(load_rows(
            &format!("list ({} items)", p.list_items),
            &l.list,
            &e.list,
        ));
        rows.push(row(
            "list answer size",
            format!("{} kB", l.list_response_bytes / 1000),
            format!("{} kB", e.list_response_bytes / 1000),
            ratio(l.list_response_bytes as f64, e.list_response_bytes as f64),
        ));
        let w = format!("watch ({} watchers) event after ack", p.watchers);
        rows.extend(latency_rows(&w, &l.watch.from_ack, &e.watch.from_ack));
        rows.extend(latency_rows(
            "watch event after send",
            &l.watch.from_send,
            &e.watch.from_send,
        ));
        rows.extend(latency_rows(
            "watch: ack → last watcher, per write",
            &l.watch.to_all,
            &e.watch.to_all,
        ));
        rows.push(row(
            "watch deliveries missed / before ack",
            format!("{} / {}", l.watch.missed, l.watch.before_ack),
            format!("{} / {}", e.watch.missed, e.watch.before_ack),
            "–".into(),
        ));
        rows.push(row(
            format!("disk writes per {} updates", p.updates),
            format!("{:.0} kB", l.update_write_bytes as f64 / 1e3),
            format!("{:.0} kB", e.update_write_bytes as f64 / 1e3),
            ratio(l.update_write_bytes as f64, e.update_write_bytes as f64),
        ));
        let per = |f: &Figures| f.update_write_bytes / f.updates.max(1) as u64;
        rows.push(row(
            "disk writes per update (object size)",
            format!("{} B ({} B)", per(l), l.update_object_bytes),
            format!("{} B ({} B)", per(e), e.update_object_bytes),
            ratio(per(l) as f64, per(e) as f64),
        ));
        rows.extend(latency_rows(
            "sequential update latency",
            &l.update_latency,
            &e.update_latency,
        ));
        rows
    }

    /// Issue 2's goals: (goal, ledge's figure, met).
    pub fn goals(&self) -> Vec<(String, String, bool)> {
        let l = self.ledge;
        let p99 = 10.0;
        let p99_goal = |what: &str, s: &LoadStats| {
            let v = s.latency.p99.as_secs_f64() * 1e3;
            (
                format!("{what} p99 ≤ {p99} ms"),
                format!("{v:.2} ms"),
                v <= p99,
            )
        };
        let watch = l.watch.from_ack.p99.as_secs_f64() * 1e3;
        vec![
            (
                "idle RSS ≤ 25 MB".into(),
                mb(l.idle_rss),
                l.idle_rss <= 25_000_000,
            ),
            (
                "≥ 5,000 creates/s".into(),
                format!("{:.0}/s", l.create.per_sec()),
                l.create.per_sec() >= 5000.0,
            ),
            (
                "≥ 50,000 gets/s".into(),
                format!("{:.0}/s", l.get.per_sec()),
                l.get.per_sec() >= 50_000.0,
            ),
            p99_goal("create", &l.create),
            p99_goal("get", &l.get),
            p99_goal(&format!("list ({} items)", self.plan.list_items), &l.list),
            (
                format!(
                    "watch event to all {} watchers p99 ≤ 50 ms",
                    self.plan.watchers
                ),
                format!("{watch:.2} ms, {} missed", l.watch.missed),
                watch <= 50.0 && l.watch.missed == 0,
            ),
        ]
    }

    /// Who used the CPUs while each server ran.
    pub fn cpu_note(&self) -> String {
        format!(
            "CPU while each server ran (wall / server CPU-s / harness CPU-s / other processes' \
             CPU-s / hypervisor steal s): ledge {}; etcd {}",
            cpu(&self.ledge.cpu),
            cpu(&self.etcd.cpu)
        )
    }

    /// The figures table as Markdown.
    pub fn table(&self) -> String {
        let mut out =
            String::from("| measure | ledge | etcd | ledge ÷ etcd |\n|---|---:|---:|---:|\n");
        for r in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.what, r.ledge, r.etcd, r.ratio
            );
        }
        out
    }

    /// The goals table as Markdown.
    pub fn goals_table(&self) -> String {
        let mut out = String::from("| goal (issue 2) | ledge | |\n|---|---:|---|\n");
        for (goal, figure, met) in self.goals() {
            let verdict = if met { "met" } else { "**not met**" };
            let _ = writeln!(out, "| {goal} | {figure} | {verdict} |");
        }
        out
    }

    /// The whole `bench/RESULTS.md`.
    pub fn markdown(&self) -> String {
        let (m, p) = (self.machine, self.plan);
        let mut out = String::new();
        let _ = write!(
            out,
            "# Benchmark results\n\n\
             Written by `bench/run` — do not edit by hand; rerun it. ledge and its baseline run one \
             after the other in the same invocation, on the same machine, with the same workload.\n\n\
             - command: `{command}`\n\
             - date: {date}\n\
             - machine: {cpus} CPUs ({model}), {mem:.1} GB RAM, Linux {kernel}, load average \
             {load} at the start\n\
             - ledge: {lv} (source {source}), release build\n\
             - baseline: {ev}, single member, plaintext gRPC on loopback\n\
             - {cpu}\n\n\
             ## Figures\n\n{table}\n\
             Ratios are ledge ÷ etcd: below 1× is better for memory, disk and latency, above 1× \
             is better for throughput.\n\n\
             ## Goals\n\n{goals}\n",
            command = self.command,
            date = self.date,
            cpus = m.cpus,
            model = m.cpu_model,
            mem = m.mem_bytes as f64 / 1e9,
            kernel = m.kernel,
            load = m.loadavg,
            lv = self.ledge.version,
            source = self.source,
            ev = self.etcd.version,
            cpu = self.cpu_note(),
            table = self.table(),
            goals = self.goals_table(),
        );
        let _ = write!(
            out,
            "## How each number is taken\n\n\
             - **Clients.** {clients} concurrent closed-loop clients (each sends its next request \
             when the previous one is answered). ledge: HTTP/2 over TLS 1.3 with the admin client \
             certificate, the {clients} clients multiplexed over {conns} connections the way \
             client-go shares one transport; etcd: the `etcd-client` crate, {conns} gRPC channels \
             (HTTP/2, no TLS). The harness runs on the same {cpus} CPUs as the server under test, \
             so its own work (TLS and JSON for ledge, protobuf for etcd) is part of every figure.\n\
             - **RSS** is `VmRSS` from `/proc/PID/status`: idle = after the server answers \
             (ledge: authenticated `/readyz`; etcd: a read) and {settle} s of rest; loaded = {settle} s \
             after the create phase put {objects} objects of {bytes} bytes of data each (ledge: \
             ConfigMaps with one {bytes}-byte value in `data`; etcd: {bytes}-byte values under \
             `/registry/configmaps/bench/`). Peak is `VmHWM` at the end. Data dir is the total \
             size of its files after the create phase (etcd's includes its preallocated 64 MB \
             WAL files).\n\
             - **create** = {objects} ConfigMap POSTs (etcd: puts) from the clients; **get** = \
             {get_s} s of GETs of random existing ConfigMaps (etcd: single-key linearizable \
             gets, the kind kube-apiserver issues); **list** = {list_s} s of full lists of a \
             namespace of {items} such ConfigMaps (etcd: a prefix range of {items} keys). \
             Throughput = successful operations ÷ wall time of the phase; latency = per \
             request, nearest-rank percentiles over all requests of the phase; server CPU per \
             request = the server process's user + system CPU time over the phase \
             (`/proc/PID/stat`) ÷ successful requests, which does not depend on how much CPU \
             the harness takes.\n\
             - **watch fan-out**: {watchers} watches on one namespace holding no other ConfigMap \
             than its `kube-root-ca.crt` (etcd: an empty prefix), spread over {wconns} connections, all live before measuring (a first, \
             unmeasured write must reach every one). Then {writes} measured creates of a \
             {bytes}-byte ConfigMap, one at a time, each after the previous one reached every \
             watcher (5 s at most, later deliveries count as missed). A delivery's time is \
             taken when the bytes carrying the event reach the watcher, before decoding. \
             \"after ack\" = from the moment the writer had the write's acknowledgement (a \
             delivery that beat the acknowledgement counts as 0; how many did is shown); \
             \"after send\" = from the moment the write was sent; percentiles over every \
             (watcher, write) pair. \"ack → last watcher\" = per write, until the slowest \
             watcher had it. The goal is judged on \"after ack\" p99 with nothing missed.\n\
             - **disk writes**: one small ConfigMap updated {updates} times in sequence (ledge: \
             a PUT of the whole object carrying the last resourceVersion; etcd: puts of a value \
             as large as the object ledge stored). Bytes = growth of `write_bytes` in \
             `/proc/PID/io` (bytes the process sent towards the block device) from {settle} s \
             after setup to {settle} s after the last acknowledged update. The data \
             directories are on the machine's disk (not tmpfs).\n",
            clients = p.clients,
            conns = p.connections,
            cpus = m.cpus,
            settle = p.settle_secs,
            objects = p.objects,
            bytes = p.value_bytes,
            get_s = p.get_secs,
            list_s = p.list_secs,
            items = p.list_items,
            watchers = p.watchers,
            wconns = p.watch_connections,
            writes = p.watch_writes,
            updates = p.updates,
        );
        out
    }
}

/// Where the sections of the other benchmarks (pods, Wasm HTTP, scheduler, autonomy, high
/// availability) start in `bench/RESULTS.md`; the API benchmark rewrites only what is above it.
pub const OTHER_BENCHMARKS: &str = "<!-- other benchmarks: kept by bench/run -->";

/// Replaces the section of `path` that starts with the line `heading` (up to the next `## `
/// heading or the end) with `section`, or appends it at the end, below the other benchmarks'
/// marker; everything else is kept byte for byte.
pub fn write_section(path: &Path, heading: &str, section: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = splice(&old, heading, section);
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

fn splice(old: &str, heading: &str, section: &str) -> String {
    let section = section.trim_end();
    if let Some(start) = old.find(heading) {
        let body = start + heading.len();
        let end = old[body..]
            .find("\n## ")
            .map_or(old.len(), |i| body + i + 1);
        let rest = &old[end..];
        let sep = if rest.is_empty() { "\n" } else { "\n\n" };
        return format!("{}{section}{sep}{rest}", &old[..start]);
    }
    let mut out = old.trim_end().to_string();
    if !out.contains(OTHER_BENCHMARKS) {
        out.push_str("\n\n");
        out.push_str(OTHER_BENCHMARKS);
    }
    out.push_str("\n\n");
    out.push_str(section);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: &str = "## Edge autonomy (issue 4)";

    #[test]
    fn a_section_is_appended_below_the_marker_then_replaced_in_place() {
        let file = format!("# R\n\n{OTHER_BENCHMARKS}\n\n## Workloads (issue 3)\n\nw\n");
        let once = splice(&file, SECTION, &format!("{SECTION}\n\nfirst\n"));
        assert_eq!(once, format!("{}\n{SECTION}\n\nfirst\n", file));
        let twice = splice(&once, SECTION, &format!("{SECTION}\n\nsecond\n"));
        assert_eq!(twice, format!("{}\n{SECTION}\n\nsecond\n", file));
        // A section written after ours is kept, and so are our own subsections.
        let later = format!("{twice}\n## Later\n\nl\n");
        let thrice = splice(&later, SECTION, &format!("{SECTION}\n\n### a\n\nthird\n"));
        assert_eq!(
            thrice,
            format!("{}\n{SECTION}\n\n### a\n\nthird\n\n## Later\n\nl\n", file)
        );
    }
}
