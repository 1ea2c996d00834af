//! The one error type of the test bed. Tests usually just `?` or `unwrap` it; the variants exist
//! so a test can tell "this machine cannot do that" (`NetemUnavailable`) from a real failure.

use std::path::PathBuf;
use std::process::Output;

/// What went wrong while building, driving or tearing down a bed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started (not installed, not executable).
    #[error("cannot run {cmd}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// The kernel has no `netem` queueing discipline (module `sch_netem` missing), so delay and
    /// loss cannot be emulated here. Never faked.
    #[error("tc netem is not available on this kernel (module sch_netem missing?): {detail}")]
    NetemUnavailable { detail: String },
    /// A file or directory operation failed.
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A signal or wait on a spawned process failed.
    #[error("{what} process {pid}")]
    Process {
        what: &'static str,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    /// A condition did not hold within its timeout.
    #[error("timed out after {secs:.0}s waiting for {what}{last}")]
    Timeout {
        what: String,
        secs: f64,
        /// The last observation or error, prefixed with "; " (empty when there was none).
        last: String,
    },
    /// A process the bed needs exited.
    #[error("{what} exited; last lines of {log}:\n{tail}")]
    Exited {
        what: String,
        log: PathBuf,
        tail: String,
    },
    /// A command printed something that is not what it should print (e.g. bad JSON).
    #[error("unexpected output of {cmd}: {detail}")]
    Output { cmd: String, detail: String },
    /// The bed was asked for something it cannot do (bad name, no such host, missing binary).
    #[error("{0}")]
    Setup(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok(output)` when the command succeeded, else [`Error::Command`] with its stderr.
pub(crate) fn check(cmd: String, output: Output) -> Result<Output> {
    if output.status.success() {
        return Ok(output);
    }
    Err(Error::Command {
        cmd,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
