//! Compiled code on disk, by sha256 of the artifact: a node compiles an image once, not once per
//! pod or per agent restart.
//!
//! Layout: `<cache_dir>/wasmtime-<engine hash>/<digest>.cwasm`, where the engine hash is
//! wasmtime's [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash) (wasmtime
//! version, target, and the settings that change code), so an upgraded agent does not try to
//! load what an older one wrote. Files are written under a temporary name and renamed into
//! place, never modified after. Compiling one file is serialised by a lock per file, so a pod
//! start and a background precompile of the same image compile it once.
//!
//! This is the only module of the crate with `unsafe`: loading precompiled code.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use ledge_runtime::Prepared;
use wasmtime::Engine;
use wasmtime::Module;
use wasmtime::component::Component;

/// What compiling an artifact produced.
#[derive(Clone)]
pub(crate) enum Compiled {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
}

/// Which of the two an artifact is (from its header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Module,
    Component,
}

/// Why an artifact could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Compile(wasmtime::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One lock per cache file, shared by every [`DiskCache`] of a runtime (the compile-only
/// engine's and the running engine's), held while the file is looked up or written.
#[derive(Debug, Default)]
pub(crate) struct FileLocks(Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>);

impl FileLocks {
    fn get(&self, file: &Path) -> Arc<Mutex<()>> {
        // Never pruned: one entry per image digest the node has seen.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(file.to_owned())
            .or_default()
            .clone()
    }
}

/// The on-disk cache of one engine.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    locks: Arc<FileLocks>,
}

impl DiskCache {
    /// Open (create) the cache directory for `engine` under `root`.
    pub(crate) fn open(root: &Path, engine: &Engine, locks: Arc<FileLocks>) -> io::Result<Self> {
        let dir = root.join(format!("wasmtime-{:016x}", compatibility_hash(engine)));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, locks })
    }

    fn file(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// Make sure the cache holds the compiled form of the artifact at `path` with sha256
    /// `digest`, compiling it (blocking: call from `spawn_blocking` or a plain thread) if not.
    /// Nothing is loaded: the compiled code is written, not kept in memory.
    pub(crate) fn precompile(
        &self,
        engine: &Engine,
        digest: &str,
        kind: Kind,
        path: &Path,
    ) -> Result<Prepared, LoadError> {
        let file = self.file(digest);
        let lock = self.locks.get(&file);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        // The directory is the engine's compatibility hash, so a file here that looks like
        // compiled code was written for this configuration; `load` still lets wasmtime check it.
        if matches!(Engine::detect_precompiled_file(&file), Ok(Some(_))) {
            return Ok(Prepared::AlreadyPrepared);
        }
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let started = std::time::Instant::now();
        let data = match kind {
            Kind::Module => engine.precompile_module(&bytes),
            Kind::Component => engine.precompile_component(&bytes),
        }
        .map_err(LoadError::Compile)?;
        tracing::info!(digest, bytes = bytes.len(), elapsed = ?started.elapsed(), "precompiled wasm");
        write_atomically(&file, &data).map_err(|source| LoadError::Write {
            path: file.clone(),
            source,
        })?;
        Ok(Prepared::Compiled)
    }

    /// The compiled form of the artifact at `path` with sha256 `digest`: loaded from the cache,
    /// or compiled (blocking: call from `spawn_blocking`) and stored.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        digest: &str,
        kind: Kind,
        path: &Path,
    ) -> Result<Compiled, LoadError> {
        let file = self.file(digest);
        let lock = self.locks.get(&file);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if file.exists() {
            match deserialize(engine, kind, &file) {
                Ok(compiled) => return Ok(compiled),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "discarding unusable compiled wasm");
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let started = std::time::Instant::now();
        let compiled = match kind {
            Kind::Module => {
                Compiled::Module(Module::new(engine, &bytes).map_err(LoadError::Compile)?)
            }
            Kind::Component => {
                Compiled::Component(Component::new(engine, &bytes).map_err(LoadError::Compile)?)
            }
        };
        tracing::info!(digest, bytes = bytes.len(), elapsed = ?started.elapsed(), "compiled wasm");
        let serialized = match &compiled {
            Compiled::Module(m) => m.serialize(),
            Compiled::Component(c) => c.serialize(),
        };
        match serialized {
            Ok(data) => {
                if let Err(e) = write_atomically(&file, &data) {
                    tracing::warn!(file = %file.display(), error = %e, "cannot cache compiled wasm");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize compiled wasm"),
        }
        Ok(compiled)
    }
}

/// wasmtime's hash of what makes compiled code loadable by `engine`: its version, the target
/// and CPU features, and the settings that change code (not the allocation strategy).
pub(crate) fn compatibility_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn deserialize(engine: &Engine, kind: Kind, file: &Path) -> wasmtime::Result<Compiled> {
    // SAFETY: `deserialize_file` requires the file to hold the output of `serialize` from a
    // compatible engine, and not to change while mapped. Only `DiskCache::load` writes into this
    // directory, the agent's own (root-owned) cache; it writes a new file under a temporary name
    // and renames it into place, so a mapped file is never truncated or rewritten (a replacement
    // is a new inode). wasmtime checks the header and engine compatibility itself and returns an
    // error, handled by recompiling, for a file from another version or configuration.
    unsafe {
        Ok(match kind {
            Kind::Module => Compiled::Module(Module::deserialize_file(engine, file)?),
            Kind::Component => Compiled::Component(Component::deserialize_file(engine, file)?),
        })
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    // Unique per process and per write: two processes (an import and the agent) or two threads
    // never write into one temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
