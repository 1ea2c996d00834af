//! Child processes under test (a `ledge server`, an `etcd`) and what the kernel tells about
//! them: resident memory from `/proc/PID/status`, bytes sent to the block layer from
//! `/proc/PID/io`. Also the machine description for the report. Nothing here talks to a server.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A process this harness started. Dropping it kills the process, so every exit path of the
/// harness (error, panic unwinding, Ctrl-C) stops what it started.
pub struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Start `cmd` with stdout and stderr sent to `log`, and append its pid to `pid_file` so the
    /// calling script can stop it even if this harness is killed outright.
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        pid_file: &Path,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let mut pids = OpenOptions::new()
            .create(true)
            .append(true)
            .open(pid_file)
            .with_context(|| format!("open {}", pid_file.display()))?;
        writeln!(pids, "{}", child.id())?;
        Ok(Self {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fail with the end of the log if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kill at once (SIGKILL, as a crash would) and reap the process; returns when the signal
    /// was sent, so the caller can take the time of the crash before the reaping.
    pub fn kill(mut self) -> Instant {
        let _ = self.child.kill();
        let at = Instant::now();
        let _ = self.child.wait();
        at
    }

    /// Stop gracefully (SIGTERM, up to 10 s), then by force.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback port that was free a moment ago (the kernel picks it from its ephemeral range).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn status_field_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    Ok(status_field_kib(pid, "VmRSS:")? * 1024)
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    Ok(status_field_kib(pid, "VmHWM:")? * 1024)
}

/// Bytes this process caused to be sent to the storage layer (`write_bytes` in `/proc/PID/io`,
/// counted when a page is dirtied or a direct write is submitted).
pub fn write_bytes(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("read /proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no write_bytes in /proc/{pid}/io"))
}

/// Clock ticks per second in `/proc` CPU times (USER_HZ, fixed at 100 in the kernel's ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// (user + nice + system, steal) ticks of the whole machine. Interrupt time is left out (it
/// is mostly our own loopback traffic); steal is time the hypervisor gave to other guests.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    (at(0) + at(1) + at(2), at(7))
}

fn process_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    process_ticks(&pid.to_string()) as f64 / TICKS_PER_SEC
}

/// CPU time counters at one moment, to tell how much CPU the rest of the machine took while a
/// server was being measured (a busy machine skews every figure).
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    busy: u64,
    steal: u64,
    harness: u64,
    server: u64,
}

impl CpuSample {
    /// Take a sample; `server` is the process under test.
    pub fn take(server: u32) -> Self {
        let (busy, steal) = machine_ticks();
        Self {
            at: Instant::now(),
            busy,
            steal,
            harness: process_ticks("self"),
            server: process_ticks(&server.to_string()),
        }
    }

    /// CPU use since `self`.
    pub fn since(&self, server: u32) -> CpuUse {
        let now = Self::take(server);
        let server = now.server.saturating_sub(self.server);
        let harness = now.harness.saturating_sub(self.harness);
        let other = now
            .busy
            .saturating_sub(self.busy)
            .saturating_sub(server + harness);
        CpuUse {
            wall: now.at.duration_since(self.at).as_secs_f64(),
            server: server as f64 / TICKS_PER_SEC,
            harness: harness as f64 / TICKS_PER_SEC,
            other: other as f64 / TICKS_PER_SEC,
            steal: now.steal.saturating_sub(self.steal) as f64 / TICKS_PER_SEC,
        }
    }
}

/// CPU seconds used over a run, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// Wall-clock seconds.
    pub wall: f64,
    /// CPU seconds of the server under test.
    pub server: f64,
    /// CPU seconds of this harness (the clients).
    pub harness: f64,
    /// CPU seconds of every other process (should be near 0).
    pub other: f64,
    /// Seconds the hypervisor took the machine's CPUs away (steal).
    pub steal: f64,
}

/// Total size of the regular files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// The machine the figures were taken on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// Total memory in bytes.
    pub mem_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run started (other work on the
    /// machine skews every figure).
    pub loadavg: String,
}

impl Machine {
    /// Read the machine description from `/proc`.
    pub fn read() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_default();
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            cpus,
            mem_bytes: mem_kib * 1024,
            kernel,
            cpu_model,
            loadavg,
        }
    }
}

/// The first line a program prints for `--version`, or "unknown".
pub fn version_line(program: &Path) -> String {
    Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}
