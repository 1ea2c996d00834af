//! The runtime interface: what a pod worker (in `ledge-agent`) asks of the thing that executes a
//! container. A [`Runtime`] turns a [`ContainerSpec`] into a running [`Container`]; the worker
//! waits for its [`Exit`], stops it with a grace period, and never needs to know whether it was
//! a Wasm instance, a native process or an OCI container.
//!
//! What lives here: the spec, the exit record, the error kinds (named after the upstream
//! `waiting.reason`s a user sees in `kubectl get pods`), and the container log writer
//! ([`log::LogWriter`]) every runtime uses so `kubectl logs` reads one format.
//! What does not: image stores, pod state machines, anything with wasmtime or hyper in it.

pub mod log;
mod spec;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

pub use spec::{ContainerSpec, Limits, Mount, Port, Protocol};

/// A boxed future, so runtimes stay object-safe (`Arc<dyn Runtime>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a container could not be created or started. The variant names the upstream
/// `containerStatuses[].state.waiting.reason` the worker reports.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image reference is not in the node's image store (`ErrImageNeverPull`, as ledge
    /// does not pull from registries yet).
    #[error(
        "image {0:?} is not present on this node: import it with `ledge image import FILE --name {0}`"
    )]
    ImageNotFound(String),
    /// The image exists but this runtime cannot run it (`InvalidImageName`/`ErrImagePull`
    /// upstream; a file that is not Wasm, a component without the expected world).
    #[error("{0}")]
    InvalidImage(String),
    /// The container could not be created from a valid image (`CreateContainerError`).
    #[error("{0}")]
    Create(String),
    /// The spec asks for something the runtime does not support (`CreateContainerConfigError`).
    #[error("{0}")]
    Config(String),
}

impl RuntimeError {
    /// The `waiting.reason` shown for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            RuntimeError::ImageNotFound(_) => "ErrImageNeverPull",
            RuntimeError::InvalidImage(_) => "InvalidImage",
            RuntimeError::Create(_) => "CreateContainerError",
            RuntimeError::Config(_) => "CreateContainerConfigError",
        }
    }
}

/// How a container ended; becomes `state.terminated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (128 + signal for a process killed by a signal, as upstream reports).
    pub code: i32,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// `Completed` (code 0), `Error`, `OOMKilled`, `Trap`, `DeadlineExceeded`, ...
    pub reason: String,
    /// A one-line explanation (the trap message, the last error), if there is one.
    pub message: Option<String>,
}

impl Exit {
    /// A plain exit with `code`: reason `Completed` for 0, `Error` otherwise.
    pub fn code(code: i32) -> Self {
        Self {
            code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
        }
    }

    /// An exit with an explicit reason and message.
    pub fn with_reason(code: i32, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            signal: None,
            reason: reason.into(),
            message: Some(message.into()),
        }
    }
}

/// A thing that runs containers: `wasm`, `process`, `oci`. One instance per agent, shared by
/// every pod worker.
pub trait Runtime: Send + Sync + 'static {
    /// The RuntimeClass handler this runtime serves (`wasm`, `process`).
    fn name(&self) -> &'static str;

    /// Start the container. Returns once it is running (for a Wasm HTTP component: once its
    /// port is being served), so the worker can report `state.running.startedAt`.
    ///
    /// # Errors
    /// A [`RuntimeError`] whose [`reason`](RuntimeError::reason) becomes the waiting reason.
    fn start(&self, spec: ContainerSpec)
    -> BoxFuture<'_, Result<Box<dyn Container>, RuntimeError>>;

    /// Make the image whose content is at `artifact` ready to start fast, ahead of any pod that
    /// uses it (for `wasm`: compile it into the node's compiled-code cache). The agent calls it
    /// in the background for every stored image this runtime can run; calling it again for a
    /// prepared image is cheap. `image` names the image in errors.
    ///
    /// The default: nothing to prepare.
    ///
    /// # Errors
    /// A [`RuntimeError`], as [`start`](Runtime::start) would report it for this image.
    fn prepare<'a>(
        &'a self,
        image: &'a str,
        artifact: &'a Path,
    ) -> BoxFuture<'a, Result<Prepared, RuntimeError>> {
        let _ = (image, artifact);
        Box::pin(async { Ok(Prepared::NotNeeded) })
    }

    /// Run a command inside a running container (`kubectl exec`); runtimes that cannot say so.
    fn supports_exec(&self) -> bool {
        false
    }
}

/// What [`Runtime::prepare`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The runtime has nothing to prepare for its images.
    NotNeeded,
    /// The image was prepared before (its compiled code is cached).
    AlreadyPrepared,
    /// The image was prepared now (compiled and cached).
    Compiled,
}

/// A running container.
pub trait Container: Send + Sync {
    /// Wait until the container ends. Called repeatedly, it returns the same [`Exit`].
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses nothing; the exit is kept for the next call.
    fn wait(&self) -> BoxFuture<'_, Exit>;

    /// Ask the container to stop (SIGTERM for a process, stop accepting requests for an HTTP
    /// component), then end it by force after `grace`. Returns when it has ended.
    fn stop(&self, grace: Duration) -> BoxFuture<'_, Exit>;

    /// The host process id, if the container is one (for probes and exec).
    fn pid(&self) -> Option<u32> {
        None
    }
}
