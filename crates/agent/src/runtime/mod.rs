//! The runtimes this agent offers, by RuntimeClass handler. The `process` runtime lives here;
//! `wasm` is in `ledge-wasm` (the one crate that builds wasmtime) and is handed in by
//! `ledge-app`. [`Runtimes::prepare_stored`] readies the node's stored images ahead of their
//! first pod (compiles Wasm), so no pod start pays for it.

pub mod cgroup;
pub mod process;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ledge_runtime::{Prepared, Runtime};
use tokio_util::sync::CancellationToken;

use crate::image::ImageStore;

/// Runtimes by handler name.
#[derive(Clone, Default)]
pub struct Runtimes {
    by_name: BTreeMap<&'static str, Arc<dyn Runtime>>,
}

impl Runtimes {
    /// The runtimes built into the agent (`process`).
    pub fn builtin() -> Self {
        let mut r = Self::default();
        r.add(Arc::new(process::ProcessRuntime));
        r
    }

    /// Offer one more runtime.
    pub fn add(&mut self, runtime: Arc<dyn Runtime>) {
        self.by_name.insert(runtime.name(), runtime);
    }

    /// The runtime serving `handler`.
    pub fn get(&self, handler: &str) -> Option<&Arc<dyn Runtime>> {
        self.by_name.get(handler)
    }

    /// Every handler, for the node's `node.ledge.dev/runtime.<name>` labels.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }

    /// Prepare every image of `images` with the runtime that runs its kind
    /// ([`Runtime::prepare`]: `wasm` compiles what its cache lacks, e.g. after an upgrade of the
    /// agent or a deleted cache), one image after another, until done or `cancel`. Meant to run
    /// in the background at start. Returns how many images were compiled now; a failure is
    /// logged, not returned: a pod of that image reports it when it starts.
    pub async fn prepare_stored(&self, images: &ImageStore, cancel: &CancellationToken) -> usize {
        let store = images.clone();
        let stored = match tokio::task::spawn_blocking(move || store.list()).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot list the node's images to prepare them");
                return 0;
            }
            Err(_) => return 0,
        };
        let mut seen = BTreeSet::new();
        let mut compiled = 0;
        for (reference, record) in stored {
            if cancel.is_cancelled() {
                break;
            }
            let Some(runtime) = self.get(record.kind.runtime()) else {
                continue;
            };
            if !seen.insert(record.digest.clone()) {
                continue;
            }
            let path = images.blob_path(&record.digest);
            let prepared = tokio::select! {
                r = runtime.prepare(&reference, &path) => r,
                _ = cancel.cancelled() => break,
            };
            match prepared {
                Ok(Prepared::Compiled) => {
                    compiled += 1;
                    tracing::info!(image = %reference, runtime = runtime.name(), "prepared image");
                }
                Ok(Prepared::AlreadyPrepared | Prepared::NotNeeded) => {}
                Err(e) => tracing::warn!(image = %reference, error = %e, "cannot prepare image"),
            }
        }
        compiled
    }
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use ledge_runtime::{BoxFuture, Container, ContainerSpec, RuntimeError};

    use super::*;

    /// A `wasm` runtime that records what it is asked to prepare.
    #[derive(Default)]
    struct Recording {
        prepared: Mutex<Vec<(String, PathBuf)>>,
    }

    impl Runtime for Recording {
        fn name(&self) -> &'static str {
            "wasm"
        }

        fn start(
            &self,
            spec: ContainerSpec,
        ) -> BoxFuture<'_, Result<Box<dyn Container>, RuntimeError>> {
            Box::pin(async move { Err(RuntimeError::ImageNotFound(spec.image)) })
        }

        fn prepare<'a>(
            &'a self,
            image: &'a str,
            artifact: &'a Path,
        ) -> BoxFuture<'a, Result<Prepared, RuntimeError>> {
            self.prepared
                .lock()
                .unwrap()
                .push((image.to_owned(), artifact.to_owned()));
            Box::pin(async { Ok(Prepared::Compiled) })
        }
    }

    #[tokio::test]
    async fn stored_images_are_prepared_once_per_digest_by_their_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let module = tmp.path().join("m.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let script = tmp.path().join("run.sh");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        let wasm = store.import(&module, "hello:1", |_, _| {}).unwrap();
        store.import(&module, "hello:2", |_, _| {}).unwrap();
        store.import(&script, "tool:1", |_, _| {}).unwrap();

        let recording = Arc::new(Recording::default());
        let mut runtimes = Runtimes::builtin();
        runtimes.add(recording.clone());
        let compiled = runtimes
            .prepare_stored(&store, &CancellationToken::new())
            .await;

        assert_eq!(compiled, 1);
        let prepared = recording.prepared.lock().unwrap().clone();
        assert_eq!(
            prepared,
            vec![("hello:1".to_owned(), store.blob_path(&wasm.digest))]
        );
        assert!(prepared[0].1.is_file());
    }

    #[tokio::test]
    async fn nothing_is_prepared_once_cancelled() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path());
        let module = tmp.path().join("m.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        store.import(&module, "hello:1", |_, _| {}).unwrap();
        let recording = Arc::new(Recording::default());
        let mut runtimes = Runtimes::builtin();
        runtimes.add(recording.clone());
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(runtimes.prepare_stored(&store, &cancel).await, 0);
        assert!(recording.prepared.lock().unwrap().is_empty());
    }
}
