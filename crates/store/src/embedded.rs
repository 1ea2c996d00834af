//! The embedded backend: the whole store in one redb file, for single-node clusters and tests.
//!
//! Writes go to one writer thread that group-commits them (see `writer`); reads run redb read
//! transactions on tokio's blocking pool (see `read`); watches are served from an in-memory
//! history ring plus live fan-out (see `hub`). The global revision is persisted in the same
//! transaction as the data it numbers, so it survives restarts; watch history does not, so after
//! [`EmbeddedStore::open`] the compacted revision equals the revision at open.
//!
//! What does not live here: anything network-facing, or an etcd client (a separate backend).
//!
//! # Guarantees
//! - A write's future resolves `Ok` only after the transaction holding it has committed with
//!   immediate durability; a `kill -9` at any point loses no acknowledged write and tears no value.
//! - Requests that share a commit behave as if applied one after another in arrival order.

mod codec;
mod hub;
mod read;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::{Database, ReadableTable};
use tokio::sync::oneshot;

use self::codec::{KV, META, REVISION_KEY};
use self::hub::Hub;
use self::writer::{Counters, Op, Request, Writer};
use crate::{BoxFuture, KeyValue, RangeResult, Result, Revision, Store, StoreError, WatchStream};

/// Tuning of an embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many recent events are kept in memory for watches to resume from.
    pub history: usize,
    /// The most writes applied in one commit.
    pub max_batch: usize,
    /// How many events a watcher may have undelivered before it falls back to history.
    pub watch_buffer: usize,
    /// Bytes of redb's page cache. The API server answers reads from its own watch cache, so
    /// the store needs little; redb's default (1 GiB) would only grow the resident set.
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: 10_000,
            max_batch: 1024,
            watch_buffer: 1024,
            cache_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Write counters of an embedded store, to observe group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Write transactions committed (one fsync each).
    pub commits: u64,
    /// Writes that were assigned a revision.
    pub writes: u64,
}

/// The [`Store`] backed by one redb file; cheap to clone, all clones share one writer.
///
/// The writer thread stops when the last clone is dropped (after answering what is queued) or at
/// [`EmbeddedStore::shutdown`]; either way every watch stream then ends.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` after shutdown, so the file closes even while handles remain.
    db: RwLock<Option<Arc<Database>>>,
    /// `None` after shutdown; dropping the last sender is what stops the writer.
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<Hub>,
    counters: Arc<Counters>,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("revision", &self.current_revision())
            .field("compacted", &self.compacted_revision())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Open the store in the file at `path`, creating it if absent, and start its writer thread.
    ///
    /// This does blocking IO (and, after a crash, redb's repair); call it before serving or from
    /// a blocking context.
    ///
    /// # Errors
    /// `Backend` if the file cannot be opened, is locked by another process, or is not a store.
    pub fn open(path: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore> {
        let db = redb::Builder::new()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(backend)?;
        let revision = prepare(&db)?;
        let db = Arc::new(db);
        let hub = Arc::new(Hub::new(revision, opts.history, opts.watch_buffer));
        let counters = Arc::new(Counters::default());
        let (sender, requests) = mpsc::channel();
        let writer = Writer {
            db: Arc::clone(&db),
            requests,
            hub: Arc::clone(&hub),
            counters: Arc::clone(&counters),
            max_batch: opts.max_batch,
        };
        let handle = std::thread::Builder::new()
            .name("ledge-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(backend)?;
        tracing::debug!(path = %path.display(), revision, "embedded store opened");
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db: RwLock::new(Some(db)),
                requests: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                hub,
                counters,
            }),
        })
    }

    /// Commits and writes so far; `writes / commits` is the average group-commit batch.
    pub fn stats(&self) -> Stats {
        Stats {
            commits: self.inner.counters.commits.load(Ordering::Relaxed),
            writes: self.inner.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Stop accepting requests, let the writer answer what is queued, and wait for it to exit.
    ///
    /// Afterwards every write, read and new watch on any clone fails with `Unavailable`, every
    /// watch stream ends, and once in-flight reads finish the file is closed and may be opened
    /// again.
    ///
    /// # Errors
    /// `Backend` if the writer thread panicked.
    pub async fn shutdown(&self) -> Result<()> {
        lock(&self.inner.requests).take();
        self.inner
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handle) = lock(&self.inner.writer).take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .map_err(join_error)?
            .map_err(|_| StoreError::Backend("store writer thread panicked".into()))
    }

    fn database(&self) -> Result<Arc<Database>> {
        let db = self.inner.db.read().unwrap_or_else(PoisonError::into_inner);
        db.clone().ok_or_else(shut_down)
    }

    /// Queue `op` for the writer and wait until it is durable.
    ///
    /// # Cancel safety
    /// Dropping the future after its first poll does not withdraw the write: it may still
    /// be applied, like an etcd request whose response was lost.
    async fn submit(&self, op: Op) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        {
            let requests = lock(&self.inner.requests);
            let sender = requests.as_ref().ok_or_else(shut_down)?;
            sender
                .send(Request { op, reply })
                .map_err(|_| shut_down())?;
        }
        answer.await.map_err(|_| shut_down())?
    }

    /// Run a blocking read on tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.database()?;
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(join_error)?
    }
}

impl Store for EmbeddedStore {
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(self.submit(Op::Create { key, value }))
    }

    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(self.submit(Op::Update {
            key,
            value,
            expected,
        }))
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(self.submit(Op::Delete { key, expected }))
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let key = key.to_owned();
        Box::pin(self.read(move |db| read::get(db, &key)))
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<RangeResult>> {
        let prefix = prefix.to_owned();
        Box::pin(self.read(move |db| read::range(db, &prefix)))
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.inner.hub.watch(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.inner.hub.revision()
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.hub.compacted()
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        // Only watch history is compacted: the embedded store keeps no old versions of keys.
        Box::pin(async move {
            self.inner.hub.compact(revision);
            Ok(())
        })
    }
}

/// Create the tables on first open and read the revision the store continues from.
fn prepare(db: &Database) -> Result<Revision> {
    let txn = db.begin_write().map_err(backend)?;
    let revision = {
        txn.open_table(KV).map_err(backend)?;
        let meta = txn.open_table(META).map_err(backend)?;
        meta.get(REVISION_KEY)
            .map_err(backend)?
            .map(|guard| guard.value())
            .unwrap_or(0)
    };
    txn.commit().map_err(backend)?;
    Ok(revision)
}

/// Wrap a backend failure.
fn backend(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(error))
}

/// A blocking task that did not finish: a panic is a backend failure, a cancellation means
/// the runtime is going away.
fn join_error(error: tokio::task::JoinError) -> StoreError {
    if error.is_panic() {
        backend(error)
    } else {
        StoreError::Unavailable("runtime is shutting down".to_owned())
    }
}

fn shut_down() -> StoreError {
    StoreError::Unavailable("embedded store is shut down".to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
