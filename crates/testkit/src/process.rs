//! `Proc`: a long-running process the bed started (a `ledge server`, an agent, a helper), with
//! its output in a log file, and the ways a test ends it: a crash (`kill`), a clean stop
//! (`stop`), and a start of the same command again (`restart`).
//!
//! Every process is the leader of its own process group, and signals go to the whole group, so a
//! `sh -c` wrapper and whatever it started die together. A group is signalled only while its
//! leader is still our unreaped child: a zombie keeps its pid, so the group id cannot have been
//! reused by an unrelated process. Whatever escaped the group (a daemonised grandchild, a pod
//! process in its own session) is still inside the bed's namespace and is ended by the bed's
//! teardown, which kills every process left in its namespaces.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::error::{Error, Result};

/// How long [`Proc::restart`] waits for a SIGTERMed process before it SIGKILLs it.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often the exit of a process is polled while waiting for it.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// A command, kept so it can be started again: program, arguments, environment changes (`None`
/// removes a variable) and working directory.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub envs: Vec<(OsString, Option<OsString>)>,
    pub cwd: Option<PathBuf>,
    /// The network namespace (`/run/netns/<name>`) the command enters: a start returns only
    /// once the process is inside it, so a test never races the `nsenter` in between.
    pub netns: Option<PathBuf>,
}

impl Spec {
    /// The command as it would be typed, for logs and error messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (key, value) in &self.envs {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// A process started by the bed: a cheap, cloneable handle (the bed keeps one to end it on
/// teardown). Its stdout and stderr go to [`Proc::log_path`], across restarts.
#[derive(Clone)]
pub struct Proc {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    log: PathBuf,
    spec: Spec,
    state: Mutex<State>,
}

struct State {
    child: Child,
    /// The child has been waited for: its pid (and so its group id) may belong to someone else.
    reaped: Option<ExitStatus>,
    starts: u32,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("name", &self.inner.name)
            .field("pid", &self.pid())
            .field("log", &self.inner.log)
            .finish()
    }
}

impl Proc {
    /// Starts `spec` with its output appended to `log`.
    pub(crate) fn start(name: &str, log: PathBuf, spec: Spec) -> Result<Proc> {
        let child = launch(&spec, &log, 1)?;
        Ok(Proc {
            inner: Arc::new(Inner {
                name: name.to_string(),
                log,
                spec,
                state: Mutex::new(State {
                    child,
                    reaped: None,
                    starts: 1,
                }),
            }),
        })
    }

    /// The name given at spawn (used in log file names and messages).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pid of the current (or last) run; also its process group id.
    pub fn pid(&self) -> u32 {
        self.state().child.id()
    }

    /// The file holding the process's stdout and stderr, each run headed by its command line.
    pub fn log_path(&self) -> &Path {
        &self.inner.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.inner.log, lines)
    }

    /// Whether the current run has not exited yet.
    pub fn is_running(&self) -> bool {
        let state = self.state();
        state.reaped.is_none() && !exited(&state.child)
    }

    /// How the last run ended, once it has been reaped by `kill`, `stop` or `wait_exit`.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.state().reaped
    }

    /// Sends SIGTERM to the process group without waiting: a clean shutdown of several
    /// processes at once is SIGTERM to all of them, then [`Proc::stop`] on each.
    pub fn terminate(&self) -> Result<()> {
        let state = self.state();
        if state.reaped.is_some() {
            return Ok(());
        }
        signal_group(&state.child, Signal::TERM)
    }

    /// A crash: SIGKILL to the whole process group, then reaps the process.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut state = self.state();
        reap(&mut state)
    }

    /// A clean stop: SIGTERM to the process group, then SIGKILL if it has not exited within
    /// `grace`. Returns how it ended (a SIGKILL shows as a signal, not an exit code).
    pub fn stop(&self, grace: Duration) -> Result<ExitStatus> {
        let mut state = self.state();
        if let Some(status) = state.reaped {
            return Ok(status);
        }
        signal_group(&state.child, Signal::TERM)?;
        let deadline = Instant::now() + grace;
        while !exited(&state.child) && Instant::now() < deadline {
            std::thread::sleep(EXIT_POLL);
        }
        reap(&mut state)
    }

    /// Waits up to `timeout` for the process to exit on its own, and reaps it (killing what is
    /// left of its group). Fails with [`Error::Timeout`] if it is still running.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let mut state = self.state();
        let deadline = Instant::now() + timeout;
        while state.reaped.is_none() && !exited(&state.child) {
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} to exit", self.inner.name),
                    secs: timeout.as_secs_f64(),
                    last: String::new(),
                });
            }
            std::thread::sleep(EXIT_POLL);
        }
        reap(&mut state)
    }

    /// Starts the same command again (same environment, same log file). A process still
    /// running is stopped first ([`STOP_GRACE`]); to restart after a crash, `kill` it first.
    pub fn restart(&self) -> Result<()> {
        let mut state = self.state();
        if state.reaped.is_none() {
            signal_group(&state.child, Signal::TERM)?;
            let deadline = Instant::now() + STOP_GRACE;
            while !exited(&state.child) && Instant::now() < deadline {
                std::thread::sleep(EXIT_POLL);
            }
            reap(&mut state)?;
        }
        let starts = state.starts + 1;
        state.child = launch(&self.inner.spec, &self.inner.log, starts)?;
        state.reaped = None;
        state.starts = starts;
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every field is written
        // after the syscall it reflects), so a poisoned lock is still usable — and teardown
        // must work after a panic.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn launch(spec: &Spec, log: &Path, run: u32) -> Result<Child> {
    let io_err = |what| {
        move |source| Error::Io {
            what,
            path: log.to_path_buf(),
            source,
        }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("cannot open log"))?;
    writeln!(file, "==> run {run}: $ {}", spec.display()).map_err(io_err("cannot write log"))?;
    let stderr: File = file.try_clone().map_err(io_err("cannot open log"))?;
    let mut cmd = spec.command();
    cmd.stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        cmd: spec.display(),
        source,
    })?;
    if let Some(netns) = &spec.netns {
        wait_entered(&mut child, netns);
    }
    Ok(child)
}

/// Waits (briefly) until `child` is inside `netns`, or has exited (its log says why).
fn wait_entered(child: &mut Child, netns: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(target) = std::fs::metadata(netns).map(|m| (m.dev(), m.ino())) else {
        return;
    };
    let own = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !exited(child) {
        match std::fs::metadata(&own) {
            Ok(m) if (m.dev(), m.ino()) == target => return,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Whether the (unreaped) child has exited, without reaping it (`WNOWAIT`): the zombie keeps
/// the pid, so the process group id stays ours until [`reap`].
fn exited(child: &Child) -> bool {
    let pid = Pid::from_child(child);
    match rustix::process::waitid(
        WaitId::Pid(pid),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
    ) {
        Ok(status) => status.is_some(),
        // ECHILD: not our child any more — treat as gone.
        Err(_) => true,
    }
}

fn signal_group(child: &Child, signal: Signal) -> Result<()> {
    let pid = Pid::from_child(child);
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(Error::Process {
            what: "cannot signal the group of",
            pid: child.id(),
            source: e.into(),
        }),
    }
}

/// SIGKILLs what is left of the group (the leader is unreaped, so the group id is still ours),
/// then reaps the leader.
fn reap(state: &mut State) -> Result<ExitStatus> {
    if let Some(status) = state.reaped {
        return Ok(status);
    }
    signal_group(&state.child, Signal::KILL)?;
    let status = state.child.wait().map_err(|source| Error::Process {
        what: "cannot wait for",
        pid: state.child.id(),
        source,
    })?;
    state.reaped = Some(status);
    Ok(status)
}

/// The last `lines` lines of a file (a note if it cannot be read).
pub(crate) fn file_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}
