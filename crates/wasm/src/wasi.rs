//! The WASI side of a guest: store state for preview 1 modules and preview 2 components, the
//! container's argv/env/mounts as a [`WasiCtxBuilder`], and stdout/stderr into its CRI log.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ledge_runtime::log::{LogWriter, Stream};
use ledge_runtime::{ContainerSpec, Mount, RuntimeError};
use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::{HasLimiter, Limiter};

/// Store state of a preview 1 core module.
pub(crate) struct P1State {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
}

impl HasLimiter for P1State {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
}

/// Store state of a preview 2 component (command or HTTP handler).
pub(crate) struct P2State {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
}

impl P2State {
    pub(crate) fn new(wasi: WasiCtx, limiter: Limiter) -> Self {
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limiter,
        }
    }
}

impl HasLimiter for P2State {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for P2State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// Everything of a container that goes into each of its WASI contexts (a command has one; an
/// HTTP component one per request).
#[derive(Clone, Debug)]
pub(crate) struct Guest {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<Mount>,
    log: Arc<LogWriter>,
}

impl Guest {
    /// The guest view of `spec`.
    ///
    /// `argv[0]` is `command[0]` when the pod sets `command` (the program name a process would
    /// see) and the container's name otherwise, as `wasmtime run` passes the module's name;
    /// `args` follow.
    ///
    /// # Errors
    /// [`RuntimeError::Config`] for a mount the runtime cannot give a guest: WASI preopens are
    /// directories, so a file (`subPath` of a file) cannot be mounted.
    pub(crate) fn from_spec(spec: &ContainerSpec) -> Result<Self, RuntimeError> {
        let mut argv = if spec.command.is_empty() {
            vec![spec.name.clone()]
        } else {
            spec.command.clone()
        };
        argv.extend(spec.args.iter().cloned());
        for m in &spec.mounts {
            if !m.host_path.is_dir() {
                return Err(RuntimeError::Config(format!(
                    "volume mount {}: {} is not a directory; the wasm runtime can only mount directories",
                    m.container_path,
                    m.host_path.display()
                )));
            }
        }
        Ok(Self {
            argv,
            env: spec.env.clone(),
            mounts: spec.mounts.clone(),
            log: spec.log.clone(),
        })
    }

    /// The container's log.
    pub(crate) fn log(&self) -> &Arc<LogWriter> {
        &self.log
    }

    /// A fresh WASI context: argv, env, mounts as preopened directories (`readOnly` honoured),
    /// stdout/stderr into the log, stdin closed, the node's network (pods of this runtime share
    /// it, as `hostNetwork` pods do).
    ///
    /// # Errors
    /// A mount's directory cannot be opened (it was removed since the container started).
    pub(crate) fn builder(&self) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.argv)
            .envs(&self.env)
            .stdout(LogStream::new(self.log.clone(), Stream::Stdout))
            .stderr(LogStream::new(self.log.clone(), Stream::Stderr))
            .inherit_network()
            .allow_ip_name_lookup(true);
        for m in &self.mounts {
            let perms = if m.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            preopen(&mut b, &m.host_path, &m.container_path, perms)?;
        }
        Ok(b)
    }
}

fn preopen(
    b: &mut WasiCtxBuilder,
    host: &Path,
    guest: &str,
    perms: FsPerms,
) -> Result<(), RuntimeError> {
    b.preopened_dir(host, guest, perms)
        .map(|_| ())
        .map_err(|e| {
            RuntimeError::Create(format!("cannot mount {} at {guest}: {e}", host.display()))
        })
}

/// One stream of a container's log as a WASI output stream. Writes go straight to the
/// [`LogWriter`] (a buffered append to a local file), so the stream is always ready.
#[derive(Clone)]
pub(crate) struct LogStream {
    log: Arc<LogWriter>,
    stream: Stream,
}

impl LogStream {
    pub(crate) fn new(log: Arc<LogWriter>, stream: Stream) -> Self {
        Self { log, stream }
    }
}

/// The largest write a guest may hand over at once.
const WRITE_BUDGET: usize = 64 * 1024;

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
