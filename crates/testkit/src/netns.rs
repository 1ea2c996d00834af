//! The bed: hosts as Linux network namespaces on one private Ethernet segment, with helpers to
//! break and degrade their links.
//!
//! ```text
//!   <id>.hub:   br0 ─┬─ h1 ══ veth ══ eth0 10.213.S.1/24   <id>.server
//!                    ├─ h2 ══ veth ══ eth0 10.213.S.2/24   <id>.edge-1
//!                    └─ ...
//! ```
//!
//! Everything lives in namespaces the bed created: the bridge sits in a hub namespace of its own,
//! and each host's veth pair is created there with its other end moved straight into the host's
//! namespace. Nothing is created or configured in the root namespace, so two beds (in one test
//! process or in parallel ones) share nothing and may even use the same addresses. `<id>` is
//! `ledgetk-<pid>-<seq>-<prefix>`; the pid lets a later bed remove namespaces left behind by a
//! test process that died without its teardown (SIGKILL, abort).
//!
//! What does not live here: the processes themselves (`process`) and ledge (`cluster`).

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, check};
use crate::process::{Proc, Spec, file_tail};

/// Every namespace a bed creates starts with this; stale ones are recognised by it.
const FAMILY: &str = "ledgetk-";
/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// The bridge in the hub namespace.
const BRIDGE: &str = "br0";
/// A host's end of its link, inside its namespace.
const HOST_IF: &str = "eth0";
/// Lines of each process log printed when a test panics.
const PANIC_LOG_LINES: usize = 40;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A test bed: a hub namespace with a bridge, and hosts attached to it. Dropping it ends every
/// process it started and deletes every namespace it created — also while a test panics, when
/// it prints the tail of each process log and keeps its directory (logs, data dirs) for a look.
pub struct Bed {
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    hub: String,
    subnet: [u8; 3],
    dir: PathBuf,
    /// Kept until teardown, then deleted (or kept after a panic or with LEDGE_TESTKIT_KEEP=1).
    tempdir: Mutex<Option<tempfile::TempDir>>,
    /// Namespaces created, in order (hub first).
    namespaces: Mutex<Vec<String>>,
    hosts: Mutex<Vec<Link>>,
    procs: Mutex<Vec<Proc>>,
}

/// One host of the bed: a network namespace with loopback and one link (`eth0`) to the bridge.
/// Cheap to clone.
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
    link: Link,
}

/// Where a host is: its namespace, address and the hub end of its link.
#[derive(Clone)]
struct Link {
    name: String,
    ns: String,
    ip: Ipv4Addr,
    hub_if: String,
}

/// Bytes on a host's link since it was created, as the host sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkBytes {
    /// Bytes the host sent (including what a cut link dropped).
    pub sent: u64,
    /// Bytes delivered to the host.
    pub received: u64,
}

/// Packets on a host's link since it was created, as the host sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkPackets {
    /// Packets the host sent (including what a cut link dropped).
    pub sent: u64,
    /// Packets delivered to the host.
    pub received: u64,
}

/// Bytes and packets on a host's link, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCounters {
    /// Bytes (Ethernet frames, headers included).
    pub bytes: LinkBytes,
    /// Frames.
    pub packets: LinkPackets,
}

impl Bed {
    /// Creates a bed named after `prefix` (lower-case letters, digits, `-`; at most 20), after
    /// removing namespaces of earlier beds whose test process is gone.
    pub fn new(prefix: &str) -> Result<Bed> {
        Bed::new_in(&std::env::temp_dir(), prefix)
    }

    /// Like [`Bed::new`], with the bed's directory (logs, data dirs) created under `parent`
    /// instead of the system's temporary directory — for measurements that need the data dirs
    /// on a real disk when `/tmp` is a tmpfs.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Bed> {
        check_label("bed prefix", prefix, 20)?;
        remove_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{FAMILY}{pid}-{seq}-{prefix}");
        let tempdir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir_in(parent)
            .map_err(|source| Error::Io {
                what: "cannot create a temporary directory in",
                path: parent.to_path_buf(),
                source,
            })?;
        let bed = Bed {
            shared: Arc::new(Shared {
                hub: format!("{id}.hub"),
                id,
                // Beds never share a segment, so this only keeps addresses distinct in logs.
                subnet: [10, 213, (seq % 256) as u8],
                dir: tempdir.path().to_path_buf(),
                tempdir: Mutex::new(Some(tempdir)),
                namespaces: Mutex::new(Vec::new()),
                hosts: Mutex::new(Vec::new()),
                procs: Mutex::new(Vec::new()),
            }),
        };
        // From here on a failure drops `bed`, which removes what was created so far.
        let hub = bed.shared.hub.clone();
        bed.create_namespace(&hub)?;
        ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        Ok(bed)
    }

    /// Adds a host `name` (lower-case letters, digits, `-`): a namespace `<id>.<name>` with
    /// loopback up and `eth0` at the next address of the bed's /24, linked to the bridge.
    pub fn add_host(&self, name: &str) -> Result<Host> {
        check_label("host name", name, 40)?;
        let mut hosts = lock(&self.shared.hosts);
        if hosts.iter().any(|h| h.name == name) {
            return Err(Error::Setup(format!("the bed already has a host {name}")));
        }
        let index = hosts.len() + 1;
        if index > 254 {
            return Err(Error::Setup("a bed holds at most 254 hosts".into()));
        }
        let [a, b, c] = self.shared.subnet;
        let link = Link {
            name: name.to_string(),
            ns: format!("{}.{name}", self.shared.id),
            ip: Ipv4Addr::new(a, b, c, index as u8),
            hub_if: format!("h{index}"),
        };
        let (hub, ns, hub_if) = (&self.shared.hub, &link.ns, &link.hub_if);
        self.create_namespace(ns)?;
        // Created in the hub, the peer moved straight into the host: never in the root namespace.
        ip(&[
            "-n", hub, "link", "add", hub_if, "type", "veth", "peer", "name", HOST_IF, "netns", ns,
        ])?;
        ip(&["-n", hub, "link", "set", hub_if, "master", BRIDGE])?;
        ip(&["-n", hub, "link", "set", hub_if, "up"])?;
        let cidr = format!("{}/24", link.ip);
        ip(&["-n", ns, "addr", "add", &cidr, "dev", HOST_IF])?;
        ip(&["-n", ns, "link", "set", HOST_IF, "up"])?;
        hosts.push(link.clone());
        Ok(self.to_host(link))
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<Host> {
        let link = lock(&self.shared.hosts)
            .iter()
            .find(|h| h.name == name)
            .cloned()?;
        Some(self.to_host(link))
    }

    /// The hosts, in the order they were added.
    pub fn hosts(&self) -> Vec<Host> {
        let links = lock(&self.shared.hosts).clone();
        links.into_iter().map(|l| self.to_host(l)).collect()
    }

    fn to_host(&self, link: Link) -> Host {
        Host {
            shared: self.shared.clone(),
            link,
        }
    }

    /// The bed's unique name (`ledgetk-<pid>-<seq>-<prefix>`), the prefix of its namespaces.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The namespaces this bed created (hub first).
    pub fn namespaces(&self) -> Vec<String> {
        lock(&self.shared.namespaces).clone()
    }

    /// The bed's directory: process logs (`logs/`) and whatever the test keeps there.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The processes started on the bed's hosts.
    pub fn procs(&self) -> Vec<Proc> {
        lock(&self.shared.procs).clone()
    }

    /// Whether `tc netem` works on this kernel, probed on the hub's loopback.
    pub fn netem_available(&self) -> bool {
        let hub = &self.shared.hub;
        let probe = tc(&[
            "-n", hub, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ]);
        let _ = tc(&["-n", hub, "qdisc", "del", "dev", "lo", "root"]);
        probe.is_ok()
    }

    fn create_namespace(&self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        lock(&self.shared.namespaces).push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let procs = lock(&self.shared.procs).clone();
        for proc in &procs {
            if let Err(e) = proc.kill() {
                eprintln!("ledge-testkit: {e}");
            }
        }
        if panicking {
            for proc in &procs {
                eprintln!(
                    "---- {} (last {PANIC_LOG_LINES} lines of {})\n{}",
                    proc.name(),
                    proc.log_path().display(),
                    proc.log_tail(PANIC_LOG_LINES)
                );
            }
        }
        let namespaces = std::mem::take(&mut *lock(&self.shared.namespaces));
        for ns in namespaces.iter().rev() {
            if let Err(e) = delete_namespace(ns) {
                eprintln!("ledge-testkit: cannot delete namespace {ns}: {e}");
            }
        }
        if let Some(dir) = lock(&self.shared.tempdir).take()
            && (panicking || std::env::var_os("LEDGE_TESTKIT_KEEP").is_some())
        {
            eprintln!("ledge-testkit: kept {}", dir.keep().display());
        }
    }
}

impl Host {
    /// The host's name in the bed.
    pub fn name(&self) -> &str {
        &self.link.name
    }

    /// The host's address on the bed's segment.
    pub fn ip(&self) -> Ipv4Addr {
        self.link.ip
    }

    /// The host's network namespace (`ip netns` name).
    pub fn netns(&self) -> &str {
        &self.link.ns
    }

    /// A directory for this host's files (data dirs), under the bed's directory.
    pub fn dir(&self) -> Result<PathBuf> {
        let dir = self.shared.dir.join("hosts").join(&self.link.name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Partitions the host: its link is taken off the bridge, so every frame it sends is
    /// dropped and none reach it. The host's own link stays up (no carrier loss, nothing for
    /// its kernel to report), as when the uplink fails somewhere past the device: connections
    /// hang until their timeouts, exactly as on a real edge site.
    pub fn cut(&self) -> Result<()> {
        ip(&[
            "-n",
            &self.shared.hub,
            "link",
            "set",
            &self.link.hub_if,
            "nomaster",
        ])?;
        Ok(())
    }

    /// Heals a [`Host::cut`]: the link is put back on the bridge.
    pub fn restore(&self) -> Result<()> {
        ip(&[
            "-n",
            &self.shared.hub,
            "link",
            "set",
            &self.link.hub_if,
            "master",
            BRIDGE,
        ])?;
        Ok(())
    }

    /// Degrades the link with `tc netem` parameters (e.g. `"delay 50ms loss 5%"`), applied in
    /// both directions: a 50 ms delay adds 100 ms to a round trip. Replaces earlier ones.
    ///
    /// # Errors
    ///
    /// [`Error::NetemUnavailable`] when the kernel has no netem (it is never faked).
    pub fn netem(&self, params: &str) -> Result<()> {
        let params: Vec<&str> = params.split_whitespace().collect();
        for (ns, dev) in self.both_ends() {
            let mut args = vec!["-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"];
            args.extend(&params);
            tc(&args)?;
        }
        Ok(())
    }

    /// Removes what [`Host::netem`] set (nothing to remove is fine).
    pub fn clear_netem(&self) -> Result<()> {
        for (ns, dev) in self.both_ends() {
            let out = run(Command::new("tc").args(["-n", ns, "qdisc", "show", "dev", dev]))?;
            if String::from_utf8_lossy(&out.stdout).contains("qdisc netem") {
                tc(&["-n", ns, "qdisc", "del", "dev", dev, "root"])?;
            }
        }
        Ok(())
    }

    /// Bytes on the host's link so far, from the hub end's counters (for bandwidth use).
    pub fn link_bytes(&self) -> Result<LinkBytes> {
        Ok(self.link_counters()?.bytes)
    }

    /// Bytes and packets on the host's link so far, read together from the hub end's counters.
    pub fn link_counters(&self) -> Result<LinkCounters> {
        let (hub, dev) = (&self.shared.hub, &self.link.hub_if);
        let out = ip(&["-j", "-s", "-n", hub, "link", "show", "dev", dev])?;
        let bad = |detail: String| Error::Output {
            cmd: format!("ip -j -s -n {hub} link show dev {dev}"),
            detail,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| bad(e.to_string()))?;
        let stats = &json[0]["stats64"];
        let get = |dir: &str, what: &str| {
            stats[dir][what]
                .as_u64()
                .ok_or_else(|| bad(format!("no stats64.{dir}.{what} in {json}")))
        };
        // The hub end receives what the host sends.
        Ok(LinkCounters {
            bytes: LinkBytes {
                sent: get("rx", "bytes")?,
                received: get("tx", "bytes")?,
            },
            packets: LinkPackets {
                sent: get("rx", "packets")?,
                received: get("tx", "packets")?,
            },
        })
    }

    /// Starts `cmd` inside the host's namespace as a [`Proc`] named `<host>-<name>`, returning
    /// once it is in the namespace; its output goes to `logs/<host>-<name>.log` in the bed's
    /// directory. The command's program, arguments, environment changes and working directory
    /// are kept for [`Proc::restart`].
    pub fn spawn(&self, name: &str, cmd: &Command) -> Result<Proc> {
        let full = format!("{}-{name}", self.link.name);
        let logs = self.shared.dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|source| Error::Io {
            what: "cannot create",
            path: logs.clone(),
            source,
        })?;
        let mut procs = lock(&self.shared.procs);
        if procs.iter().any(|p| p.name() == full) {
            return Err(Error::Setup(format!("a process {full} already exists")));
        }
        let proc = Proc::start(&full, logs.join(format!("{full}.log")), self.spec(cmd))?;
        procs.push(proc.clone());
        Ok(proc)
    }

    /// Runs `cmd` to completion inside the host's namespace (stdin empty) and returns its output,
    /// successful or not.
    pub fn exec(&self, cmd: &Command) -> Result<Output> {
        self.exec_with_input(cmd, &[])
    }

    /// Like [`Host::exec`], with `input` as the command's stdin.
    pub fn exec_with_input(&self, cmd: &Command, input: &[u8]) -> Result<Output> {
        let spec = self.spec(cmd);
        let spawn_err = |source| Error::Spawn {
            cmd: spec.display(),
            source,
        };
        let mut wrapped = spec.command();
        wrapped
            .stdin(if input.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = wrapped.spawn().map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A writer thread: a large input must not deadlock against a full stdout pipe.
            let input = input.to_vec();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let _ = stdin.write_all(&input);
            });
        }
        child.wait_with_output().map_err(spawn_err)
    }

    /// Like [`Host::exec`], but a failed command is an [`Error::Command`].
    pub fn exec_ok(&self, cmd: &Command) -> Result<Output> {
        let out = self.exec(cmd)?;
        check(self.spec(cmd).display(), out)
    }

    /// `cmd` entered into the host's network namespace with `nsenter`: only the network
    /// namespace changes, so the process sees the machine's mounts (cgroups, /run) as an edge
    /// device sees its own.
    fn spec(&self, cmd: &Command) -> Spec {
        let mut args = vec![
            format!("--net={NETNS_DIR}/{}", self.link.ns).into(),
            "--".into(),
            cmd.get_program().to_os_string(),
        ];
        args.extend(cmd.get_args().map(OsStr::to_os_string));
        Spec {
            program: "nsenter".into(),
            args,
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_os_string(), v.map(OsStr::to_os_string)))
                .collect(),
            cwd: cmd.get_current_dir().map(Path::to_path_buf),
            netns: Some(PathBuf::from(format!("{NETNS_DIR}/{}", self.link.ns))),
        }
    }

    fn both_ends(&self) -> [(&str, &str); 2] {
        [
            (self.shared.hub.as_str(), self.link.hub_if.as_str()),
            (self.link.ns.as_str(), HOST_IF),
        ]
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.link.name)
            .field("ip", &self.link.ip)
            .field("netns", &self.link.ns)
            .finish()
    }
}

/// The bed namespaces that exist now (every test process's), from `/run/netns`.
pub fn bed_namespaces() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(FAMILY))
        .collect();
    names.sort();
    names
}

/// Deletes the namespaces of beds whose test process has died (it cannot have run its
/// teardown). A live pid — even a reused one — keeps its namespaces.
fn remove_stale() {
    let me = std::process::id();
    for ns in bed_namespaces() {
        let Some(pid) = ns[FAMILY.len()..]
            .split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match delete_namespace(&ns) {
            Ok(()) => eprintln!("ledge-testkit: removed stale namespace {ns} (pid {pid} is gone)"),
            Err(e) => eprintln!("ledge-testkit: cannot remove stale namespace {ns}: {e}"),
        }
    }
}

/// Kills every process still inside `ns` (all of them descend from the bed that created it),
/// then deletes it.
fn delete_namespace(ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = ip(&["netns", "pids", ns])?;
        let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ip(&["netns", "del", ns])?;
    Ok(())
}

fn check_label(what: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{what} {value:?}: use 1 to {max} lower-case letters, digits or '-'"
        )))
    }
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

/// `tc`, with a missing netem qdisc reported as [`Error::NetemUnavailable`].
fn tc(args: &[&str]) -> Result<Output> {
    run(Command::new("tc").args(args)).map_err(|e| match e {
        Error::Command { stderr, .. }
            if args.contains(&"netem") && stderr.contains("qdisc kind is unknown") =>
        {
            Error::NetemUnavailable { detail: stderr }
        }
        e => e,
    })
}

fn run(cmd: &mut Command) -> Result<Output> {
    let display = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: display.clone(),
            source,
        })?;
    check(display, out)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Teardown runs after panics; the guarded lists are valid whatever panicked.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The tail of every process log of `bed`, for failure messages.
pub fn log_tails(bed: &Bed, lines: usize) -> String {
    bed.procs()
        .iter()
        .map(|p| {
            format!(
                "---- {} ({})\n{}",
                p.name(),
                p.log_path().display(),
                file_tail(p.log_path(), lines)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
