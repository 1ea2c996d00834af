//! ledge's storage layer: the [`Store`] trait with etcd's contract, and its backends.
//!
//! Every object the API server keeps lives under a key such as
//! `/registry/configmaps/default/demo`. The store assigns one global, monotonically increasing
//! [`Revision`] to every write; the API server exposes it as `resourceVersion`. Updates and
//! deletes may be conditioned on a key's mod revision (compare-and-swap), a watch can resume from
//! any revision still in history, and history older than the compacted revision answers
//! [`StoreError::Compacted`] (the API's "410 Expired").
//!
//! What does not live here: JSON, Kubernetes semantics, caching. Values are opaque bytes.

pub mod embedded;
pub mod etcd;

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use etcd::{EtcdOptions, EtcdStore};

/// A point in the store's global history; `resourceVersion` in the API.
pub type Revision = i64;

/// One stored key and the revisions that describe its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/configmaps/default/demo`.
    pub key: String,
    /// The value as written (opaque bytes; JSON in practice).
    pub value: Bytes,
    /// The revision at which the key was created (unchanged by updates).
    pub create_revision: Revision,
    /// The revision of the last write to this key. For a deletion, the revision of the delete.
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as delivered to watchers in revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// For a put, the new value. For a delete, the last value with `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The value before this event, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The result of a prefix range read: the items and the revision they were read at.
#[derive(Clone, Debug, Default)]
pub struct RangeResult {
    /// The store revision the read observed; a watch from here misses nothing.
    pub revision: Revision,
    /// Matching keys in lexical key order.
    pub kvs: Vec<KeyValue>,
}

/// Errors a store reports; the API server maps each to a Kubernetes `Status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found the key already present.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// An update or delete found no such key.
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's mod revision was not the expected one; `current` is what is stored now.
    #[error("key {key} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        /// The key that was written.
        key: String,
        /// The mod revision the caller expected.
        expected: Revision,
        /// The value stored now.
        current: Box<KeyValue>,
    },
    /// The requested revision is older than the oldest kept history.
    #[error("required revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        /// The revision that was asked for.
        requested: Revision,
        /// The compacted revision: watches must start at or after it.
        compacted: Revision,
    },
    /// The store cannot serve requests now (shutting down, backend unreachable, no quorum). A
    /// write that failed this way may still have been applied, as with any lost answer.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend failed.
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Short alias for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A boxed future, so the trait stays object safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A stream of events in strictly increasing revision order, without gaps for its prefix.
/// It ends when the store shuts down; an `Err` item is the last item.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// A key-value store with etcd's semantics. Implemented by the embedded backend (one file) and
/// the etcd backend; both pass the same test suite (`tests/suite.rs`).
///
/// # Guarantees
/// - Every successful write gets a revision greater than every earlier one; a write is durable
///   when its future resolves with `Ok`.
/// - Watchers see every event for their prefix after their start revision exactly once, in
///   revision order, and every watcher sees the same order.
pub trait Store: Send + Sync + 'static {
    /// Create `key` if absent. Returns the stored value with its revisions.
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue>>;

    /// Replace `key` if its mod revision is `expected` (`Conflict` otherwise, `NotFound` if gone).
    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> BoxFuture<'_, Result<KeyValue>>;

    /// Delete `key`, if `expected` is set only when its mod revision matches. Returns the deleted
    /// value with `mod_revision` set to the revision of the delete.
    fn delete(&self, key: &str, expected: Option<Revision>) -> BoxFuture<'_, Result<KeyValue>>;

    /// Read one key at the current revision.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>>;

    /// Read every key starting with `prefix` at one consistent revision.
    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<RangeResult>>;

    /// Watch keys starting with `prefix` for events with revision strictly greater than `after`.
    /// `after` older than [`Store::compacted_revision`] fails with `Compacted`.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The revision of the newest write this process knows of (0 for an empty, never-written
    /// store). On a store shared by several servers (etcd), another server's write counts once
    /// a watch of this process has delivered it.
    fn current_revision(&self) -> Revision;

    /// The oldest revision a watch may start after.
    fn compacted_revision(&self) -> Revision;

    /// Forget history up to `revision`; later watches from before it fail with `Compacted`.
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// Why the store cannot take writes now, as far as it knows (an unreachable backend, a lost
    /// quorum); `None` while healthy. The API server still answers reads from its cache then,
    /// with a warning.
    fn degraded(&self) -> Option<String> {
        None
    }
}
