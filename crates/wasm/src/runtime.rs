//! [`WasmRuntime`]: the `wasm` RuntimeClass handler, tying the engine, the image cache, commands
//! and HTTP listeners together.

use std::sync::Arc;
use std::time::Duration;

use ledge_runtime::{BoxFuture, Container, ContainerSpec, Protocol, Runtime, RuntimeError};
use wasmtime::Engine;

use crate::cache::DiskCache;
use crate::command::{self, Entry};
use crate::config::WasmConfig;
use crate::engine::{self, Ticker};
use crate::http::{self, Registry};
use crate::image::{Images, ProgramKind};
use crate::wasi::Guest;

/// Why the runtime could not be created.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// wasmtime refused the configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The cache directory cannot be created.
    #[error("cannot create the wasm cache in {path}: {source}")]
    CacheDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The epoch thread cannot be started.
    #[error("cannot start the wasm epoch thread: {0}")]
    Ticker(#[source] std::io::Error),
}

/// Runs containers whose image is a `.wasm` file: WASI preview 1 commands, preview 2 command
/// components and `wasi:http` proxy components. One per agent; cheap to share (`Arc`).
pub struct WasmRuntime {
    engine: Engine,
    images: Arc<Images>,
    registry: Arc<Registry>,
    tick: Duration,
    _ticker: Ticker,
}

impl WasmRuntime {
    /// Create the engine (with its instance pool), open the compiled-code cache and start the
    /// epoch ticker thread. Needs no tokio context; `start` must run inside a multi- or
    /// current-thread tokio runtime (guests and listeners are tokio tasks).
    ///
    /// # Errors
    /// [`InitError`] when wasmtime, the cache directory or the ticker thread cannot be set up.
    pub fn new(config: WasmConfig) -> Result<Self, InitError> {
        let max_instances = config.resolved_max_instances();
        let engine =
            engine::build(max_instances).map_err(|e| InitError::Engine(format!("{e:#}")))?;
        let disk =
            DiskCache::open(&config.cache_dir, &engine).map_err(|source| InitError::CacheDir {
                path: config.cache_dir.clone(),
                source,
            })?;
        let images =
            Images::new(engine.clone(), disk).map_err(|e| InitError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine, config.epoch_tick).map_err(InitError::Ticker)?;
        tracing::info!(max_instances, cache = %config.cache_dir.display(), "wasm runtime ready");
        Ok(Self {
            engine,
            images: Arc::new(images),
            registry: Arc::default(),
            tick: config.epoch_tick,
            _ticker: ticker,
        })
    }

    async fn start_container(
        &self,
        spec: ContainerSpec,
    ) -> Result<Box<dyn Container>, RuntimeError> {
        // The agent resolves the image to a file in the node's image store; no file: not here.
        let artifact = spec
            .artifact
            .as_deref()
            .ok_or_else(|| RuntimeError::ImageNotFound(spec.image.clone()))?;
        let program = self.images.load(&spec.image, artifact).await?;
        let guest = Guest::from_spec(&spec)?;
        let wants_ports = spec.ports.iter().any(|p| p.protocol == Protocol::Tcp);
        match &program.kind {
            ProgramKind::Module(pre) => {
                command::start(
                    &self.engine,
                    &Entry::P1(pre.clone()),
                    guest,
                    spec.limits,
                    self.tick,
                )
                .await
            }
            // A component exporting both worlds serves HTTP when the container declares a port.
            ProgramKind::Component {
                proxy: Some(pre), ..
            } if wants_ports => {
                http::start(
                    &self.registry,
                    &self.engine,
                    pre.clone(),
                    &program.digest,
                    &spec,
                    guest,
                    self.tick,
                )
                .await
            }
            ProgramKind::Component {
                command: Some(pre), ..
            } => {
                command::start(
                    &self.engine,
                    &Entry::P2(pre.clone()),
                    guest,
                    spec.limits,
                    self.tick,
                )
                .await
            }
            ProgramKind::Component {
                proxy: Some(pre), ..
            } => {
                http::start(
                    &self.registry,
                    &self.engine,
                    pre.clone(),
                    &program.digest,
                    &spec,
                    guest,
                    self.tick,
                )
                .await
            }
            ProgramKind::Component { .. } => Err(RuntimeError::InvalidImage(format!(
                "image {:?}: component exports neither wasi:cli/run nor wasi:http/incoming-handler",
                spec.image
            ))),
        }
    }
}

impl Runtime for WasmRuntime {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn start(
        &self,
        spec: ContainerSpec,
    ) -> BoxFuture<'_, Result<Box<dyn Container>, RuntimeError>> {
        Box::pin(self.start_container(spec))
    }
}
