//! [`WasmRuntime`]: the `wasm` RuntimeClass handler, tying the engine, the image cache, commands
//! and HTTP listeners together.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ledge_runtime::{
    BoxFuture, Container, ContainerSpec, Prepared, Protocol, Runtime, RuntimeError,
};
use wasmtime::Engine;

use crate::cache::{DiskCache, FileLocks};
use crate::command::{self, Entry};
use crate::config::WasmConfig;
use crate::engine::{self, Ticker};
use crate::http::{self, Registry};
use crate::image::{Digests, Images, ProgramKind, load_error};
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
///
/// Creating one costs nothing but a directory: the engine, its instance pool, the WASI linkers
/// and the epoch ticker are made by the first Wasm pod, so a node that runs no Wasm (or none
/// yet) does not pay for them in memory or in the ticker's wake-ups.
pub struct WasmRuntime {
    shared: Arc<Shared>,
}

struct Shared {
    config: WasmConfig,
    digests: Arc<Digests>,
    locks: Arc<FileLocks>,
    running: Mutex<Option<Arc<Running>>>,
}

/// What the first Wasm pod starts.
struct Running {
    engine: Engine,
    images: Arc<Images>,
    registry: Arc<Registry>,
    _ticker: Ticker,
}

impl WasmRuntime {
    /// A runtime caching compiled code under `config.cache_dir` (created here). The engine is
    /// made on first use: `start` must run inside a multi- or current-thread tokio runtime
    /// (guests and listeners are tokio tasks); [`precompile`](Self::precompile) needs none.
    ///
    /// # Errors
    /// [`InitError::CacheDir`] when the cache directory cannot be created.
    pub fn new(config: WasmConfig) -> Result<Self, InitError> {
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| InitError::CacheDir {
            path: config.cache_dir.clone(),
            source,
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                digests: Arc::default(),
                locks: Arc::default(),
                running: Mutex::default(),
            }),
        })
    }

    /// Compile the Wasm module or component at `artifact` into the compiled-code cache unless it
    /// is there already, so no pod start pays for compiling it. Blocking (seconds for a large
    /// component): call it from a plain or a `spawn_blocking` thread. Without a running engine
    /// it uses a compile-only one, dropped on return. `image` names the image in errors.
    ///
    /// # Errors
    /// As [`Runtime::start`] would report them: [`RuntimeError::InvalidImage`] for a file that
    /// is not Wasm or does not compile, [`RuntimeError::ImageNotFound`] for a missing file.
    pub fn precompile(&self, image: &str, artifact: &Path) -> Result<Prepared, RuntimeError> {
        self.shared.precompile(image, artifact)
    }

    /// Whether the engine has been created (by a pod start).
    pub fn engine_started(&self) -> bool {
        self.shared.lock_running().is_some()
    }

    /// The running engine, created on first call.
    async fn running(&self) -> Result<Arc<Running>, RuntimeError> {
        if let Some(running) = self.shared.lock_running().clone() {
            return Ok(running);
        }
        // Reserving the pool and building the linkers takes a few milliseconds, once.
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.start_engine())
            .await
            .map_err(|e| RuntimeError::Create(format!("starting the wasm engine: {e}")))?
            .map_err(|e| RuntimeError::Create(e.to_string()))
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
        let running = self.running().await?;
        let program = running.images.load(&spec.image, artifact).await?;
        let tick = self.shared.config.epoch_tick;
        let (engine, registry) = (&running.engine, &running.registry);
        let guest = Guest::from_spec(&spec)?;
        let wants_ports = spec.ports.iter().any(|p| p.protocol == Protocol::Tcp);
        match &program.kind {
            ProgramKind::Module(pre) => {
                command::start(engine, &Entry::P1(pre.clone()), guest, spec.limits, tick).await
            }
            // A component exporting both worlds serves HTTP when the container declares a port.
            ProgramKind::Component {
                proxy: Some(pre), ..
            } if wants_ports => {
                http::start(
                    registry,
                    engine,
                    pre.clone(),
                    &program.digest,
                    &spec,
                    guest,
                    tick,
                )
                .await
            }
            ProgramKind::Component {
                command: Some(pre), ..
            } => command::start(engine, &Entry::P2(pre.clone()), guest, spec.limits, tick).await,
            ProgramKind::Component {
                proxy: Some(pre), ..
            } => {
                http::start(
                    registry,
                    engine,
                    pre.clone(),
                    &program.digest,
                    &spec,
                    guest,
                    tick,
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

impl Shared {
    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<Arc<Running>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Create the engine, its pool, the linkers and the ticker, unless another start did
    /// (blocking).
    fn start_engine(&self) -> Result<Arc<Running>, InitError> {
        let mut slot = self.lock_running();
        if let Some(running) = &*slot {
            return Ok(running.clone());
        }
        let config = &self.config;
        let started = std::time::Instant::now();
        let max_instances = config.resolved_max_instances();
        let engine =
            engine::build(max_instances).map_err(|e| InitError::Engine(format!("{e:#}")))?;
        let disk =
            DiskCache::open(&config.cache_dir, &engine, self.locks.clone()).map_err(|source| {
                InitError::CacheDir {
                    path: config.cache_dir.clone(),
                    source,
                }
            })?;
        let images = Images::new(engine.clone(), disk, self.digests.clone())
            .map_err(|e| InitError::Engine(format!("{e:#}")))?;
        let ticker = Ticker::start(&engine, config.epoch_tick).map_err(InitError::Ticker)?;
        tracing::info!(
            max_instances,
            cache = %config.cache_dir.display(),
            elapsed = ?started.elapsed(),
            "wasm engine started"
        );
        let running = Arc::new(Running {
            engine,
            images: Arc::new(images),
            registry: Arc::default(),
            _ticker: ticker,
        });
        *slot = Some(running.clone());
        Ok(running)
    }

    fn precompile(&self, image: &str, artifact: &Path) -> Result<Prepared, RuntimeError> {
        let (digest, kind) = self.digests.identify(image, artifact)?;
        let running = self.lock_running().clone();
        let result = match running {
            Some(running) => {
                running
                    .images
                    .disk()
                    .precompile(&running.engine, &digest, kind, artifact)
            }
            None => {
                let engine = engine::compiler().map_err(|e| {
                    RuntimeError::Create(format!("cannot create the wasm compiler: {e:#}"))
                })?;
                let disk = DiskCache::open(&self.config.cache_dir, &engine, self.locks.clone())
                    .map_err(|e| {
                        RuntimeError::Create(format!(
                            "cannot create the wasm cache in {}: {e}",
                            self.config.cache_dir.display()
                        ))
                    })?;
                disk.precompile(&engine, &digest, kind, artifact)
            }
        };
        result.map_err(|e| load_error(image, e))
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

    fn prepare<'a>(
        &'a self,
        image: &'a str,
        artifact: &'a Path,
    ) -> BoxFuture<'a, Result<Prepared, RuntimeError>> {
        let shared = self.shared.clone();
        let (image, artifact) = (image.to_owned(), artifact.to_owned());
        Box::pin(async move {
            let name = image.clone();
            tokio::task::spawn_blocking(move || shared.precompile(&image, &artifact))
                .await
                .map_err(|e| RuntimeError::Create(format!("compiling {name}: {e}")))?
        })
    }
}
