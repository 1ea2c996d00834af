//! From an artifact path to a ready-to-instantiate program, once per image digest.
//!
//! A start hashes the artifact (sha256; remembered per path, size, mtime and inode so a warm
//! start reads nothing), then asks for the digest's program: the first asker loads it (the
//! [`DiskCache`] or a compile, on a blocking thread) and pre-instantiates it against the WASI
//! linkers; every concurrent or later start of the same digest shares that result, so 100 pods
//! of one image compile once.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ledge_runtime::RuntimeError;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use wasmtime::{Engine, InstancePre, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::cache::{Compiled, DiskCache, Kind, LoadError};
use crate::wasi::{P1State, P2State};

/// A loaded image.
pub(crate) struct Program {
    /// sha256 of the artifact, hex.
    pub(crate) digest: String,
    /// What it runs as.
    pub(crate) kind: ProgramKind,
}

/// The pre-instantiated forms of a program.
pub(crate) enum ProgramKind {
    /// A WASI preview 1 command module (exports `_start`).
    Module(InstancePre<P1State>),
    /// A component exporting `wasi:cli/run` and/or `wasi:http/incoming-handler`.
    Component {
        command: Option<CommandPre<P2State>>,
        proxy: Option<ProxyPre<P2State>>,
    },
}

/// The image cache of one running engine.
pub(crate) struct Images {
    engine: Engine,
    disk: DiskCache,
    p1: Linker<P1State>,
    p2: wasmtime::component::Linker<P2State>,
    programs: Mutex<HashMap<String, Arc<OnceCell<Arc<Program>>>>>,
    digests: Arc<Digests>,
}

/// The sha256 and kind of artifact files, remembered by path and file identity. Needs no
/// engine: a precompile fills it before the engine exists, and a later start reuses it.
#[derive(Default)]
pub(crate) struct Digests {
    by_path: Mutex<HashMap<PathBuf, (FileId, String, Kind)>>,
}

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
    dev: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            len: meta.len(),
            mtime: meta.modified().ok(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

impl Images {
    /// An empty cache over `disk`, with the WASI linkers every program is checked against.
    pub(crate) fn new(
        engine: Engine,
        disk: DiskCache,
        digests: Arc<Digests>,
    ) -> wasmtime::Result<Self> {
        let mut p1 = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1, |s: &mut P1State| &mut s.wasi)?;
        let mut p2 = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2)?;
        Ok(Self {
            engine,
            disk,
            p1,
            p2,
            programs: Mutex::default(),
            digests,
        })
    }

    /// The on-disk cache this engine loads from.
    pub(crate) fn disk(&self) -> &DiskCache {
        &self.disk
    }

    /// The program of the artifact at `path` (`image` names it in errors).
    ///
    /// # Errors
    /// [`RuntimeError::InvalidImage`] for a file that is not Wasm, does not compile, or is
    /// neither a command nor an HTTP handler; [`RuntimeError::ImageNotFound`] when the file is
    /// missing.
    pub(crate) async fn load(
        self: &Arc<Self>,
        image: &str,
        path: &Path,
    ) -> Result<Arc<Program>, RuntimeError> {
        let (digest, kind) = self.digests.of(image, path).await?;
        let cell = self
            .programs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest.clone())
            .or_default()
            .clone();
        let program = cell
            .get_or_try_init(|| {
                let this = self.clone();
                let (image, path) = (image.to_owned(), path.to_owned());
                async move {
                    let name = image.clone();
                    tokio::task::spawn_blocking(move || this.prepare(&image, &path, digest, kind))
                        .await
                        .map_err(|e| RuntimeError::Create(format!("compiling {name}: {e}")))?
                }
            })
            .await?;
        Ok(program.clone())
    }

    /// Compile (or load) and pre-instantiate (blocking).
    fn prepare(
        &self,
        image: &str,
        path: &Path,
        digest: String,
        kind: Kind,
    ) -> Result<Arc<Program>, RuntimeError> {
        let started = std::time::Instant::now();
        let compiled = self
            .disk
            .load(&self.engine, &digest, kind, path)
            .map_err(|e| load_error(image, e))?;
        tracing::debug!(image, elapsed = ?started.elapsed(), "loaded compiled wasm");
        let kind = match compiled {
            Compiled::Module(module) => {
                if !matches!(
                    module.get_export("_start"),
                    Some(wasmtime::ExternType::Func(_))
                ) {
                    return Err(RuntimeError::InvalidImage(format!(
                        "image {image:?} is a WebAssembly module without a _start function: \
                         the wasm runtime runs WASI commands, not libraries or reactors"
                    )));
                }
                let pre = self.p1.instantiate_pre(&module).map_err(|e| {
                    RuntimeError::InvalidImage(format!("image {image:?}: {}", first_line(&e)))
                })?;
                ProgramKind::Module(pre)
            }
            Compiled::Component(component) => {
                let exports: Vec<String> = component
                    .component_type()
                    .exports(&self.engine)
                    .map(|(name, _)| name.to_owned())
                    .collect();
                let exported = |iface: &str| {
                    exports
                        .iter()
                        .any(|e| e == iface || e.starts_with(&format!("{iface}@")))
                };
                let (run, http) = (
                    exported("wasi:cli/run"),
                    exported("wasi:http/incoming-handler"),
                );
                if !run && !http {
                    return Err(RuntimeError::InvalidImage(format!(
                        "image {image:?}: component exports neither wasi:cli/run nor \
                         wasi:http/incoming-handler (it exports: {})",
                        if exports.is_empty() {
                            "nothing".to_owned()
                        } else {
                            exports.join(", ")
                        }
                    )));
                }
                let pre = self.p2.instantiate_pre(&component).map_err(|e| {
                    RuntimeError::InvalidImage(format!("image {image:?}: {}", first_line(&e)))
                })?;
                let invalid = |e: wasmtime::Error| {
                    RuntimeError::InvalidImage(format!("image {image:?}: {}", first_line(&e)))
                };
                ProgramKind::Component {
                    command: run
                        .then(|| CommandPre::new(pre.clone()))
                        .transpose()
                        .map_err(invalid)?,
                    proxy: http
                        .then(|| ProxyPre::new(pre))
                        .transpose()
                        .map_err(invalid)?,
                }
            }
        };
        tracing::debug!(image, elapsed = ?started.elapsed(), "wasm program ready");
        Ok(Arc::new(Program { digest, kind }))
    }
}

impl Digests {
    /// The digest and kind of the artifact at `path` (`image` names it in errors).
    ///
    /// # Errors
    /// As [`Images::load`].
    pub(crate) async fn of(
        self: &Arc<Self>,
        image: &str,
        path: &Path,
    ) -> Result<(String, Kind), RuntimeError> {
        // A known file is recognised by one stat, done here: the artifact is in the agent's
        // local image store, and a thread hop would cost more than the stat (it doubled the
        // start latency of a small command). Anything else (hashing) goes to a blocking thread.
        let known = std::fs::metadata(path)
            .ok()
            .and_then(|meta| self.known(path, &meta));
        match known {
            Some(known) => Ok(known),
            None => {
                let this = self.clone();
                let (image_owned, path_owned) = (image.to_owned(), path.to_owned());
                tokio::task::spawn_blocking(move || this.identify(&image_owned, &path_owned))
                    .await
                    .map_err(|e| RuntimeError::Create(format!("hashing {image}: {e}")))?
            }
        }
    }

    /// The digest and kind of the file (blocking).
    pub(crate) fn identify(
        &self,
        image: &str,
        path: &Path,
    ) -> Result<(String, Kind), RuntimeError> {
        let not_found = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RuntimeError::ImageNotFound(image.to_owned())
            } else {
                RuntimeError::Create(format!("cannot read {}: {e}", path.display()))
            }
        };
        let meta = std::fs::metadata(path).map_err(not_found)?;
        if let Some(known) = self.known(path, &meta) {
            return Ok(known);
        }
        let id = FileId::of(&meta);
        let mut file = std::fs::File::open(path).map_err(not_found)?;
        let mut header = [0u8; 8];
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut read = 0usize;
        loop {
            let n = file.read(&mut buf).map_err(not_found)?;
            if n == 0 {
                break;
            }
            if read < header.len() {
                let take = (header.len() - read).min(n);
                header[read..read + take].copy_from_slice(&buf[..take]);
            }
            read += n;
            hasher.update(&buf[..n]);
        }
        let kind = kind_of(&header[..read.min(8)]).map_err(|why| {
            RuntimeError::InvalidImage(format!(
                "image {image:?} ({}) is not a WebAssembly module or component: {why}",
                path.display()
            ))
        })?;
        let digest = hex(&hasher.finalize());
        self.by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.to_owned(), (id, digest.clone(), kind));
        Ok((digest, kind))
    }

    /// The digest and kind of `path` if it was hashed before and has not changed since.
    fn known(&self, path: &Path, meta: &std::fs::Metadata) -> Option<(String, Kind)> {
        let digests = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        let (id, digest, kind) = digests.get(path)?;
        (*id == FileId::of(meta)).then(|| (digest.clone(), *kind))
    }
}

/// Core module or component, from the 8-byte preamble: `\0asm`, then a 16-bit version and a
/// 16-bit layer (0: core module, 1: component).
pub(crate) fn kind_of(header: &[u8]) -> Result<Kind, String> {
    if header.len() < 8 || &header[..4] != b"\0asm" {
        return Err("it does not start with the \\0asm magic number".into());
    }
    match u16::from_le_bytes([header[6], header[7]]) {
        0 => Ok(Kind::Module),
        1 => Ok(Kind::Component),
        layer => Err(format!("unknown binary layer {layer}")),
    }
}

/// A cache error as a start reports it: code that does not compile is the image's fault.
pub(crate) fn load_error(image: &str, e: LoadError) -> RuntimeError {
    match e {
        LoadError::Compile(e) => RuntimeError::InvalidImage(format!(
            "image {image:?} does not compile: {}",
            first_line(&e)
        )),
        LoadError::Read { .. } | LoadError::Write { .. } => RuntimeError::Create(e.to_string()),
    }
}

/// The first line of an error and its causes (`{:#}` joins them with ": ").
pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tells_module_from_component() {
        assert_eq!(kind_of(b"\0asm\x01\0\0\0").unwrap(), Kind::Module);
        assert_eq!(kind_of(b"\0asm\x0d\0\x01\0").unwrap(), Kind::Component);
        assert!(kind_of(b"#!/bin/sh\n").unwrap_err().contains("magic"));
        assert!(kind_of(b"\0asm").is_err());
        assert!(
            kind_of(b"\0asm\x01\0\x07\0")
                .unwrap_err()
                .contains("layer 7")
        );
    }
}
