//! The watch cache: every stored object in memory, fed by one store watch, plus a window of
//! recent events. Lists and watches are served from here without touching the store; reads
//! first wait until the cache has caught up with the store's revision, so a client always reads
//! its own writes (upstream "consistent reads from cache").
//!
//! Watchers replay history from their resourceVersion and then follow live events; both happen
//! under the history lock, so no event is missed or seen twice, and every watcher sees the same
//! order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use ledge_api::Pointer as _;
use ledge_store::{Event, EventKind, Revision, Store, StoreError};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::object;

/// How an object changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One change to one object, with the object as it is after the change (for a delete, its last
/// state at the delete's resourceVersion) and before it.
#[derive(Debug)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The storage key.
    pub key: String,
    /// The revision of the change.
    pub revision: Revision,
    /// The object after the change.
    pub object: Arc<Value>,
    /// The object before the change.
    pub prev: Option<Arc<Value>>,
    /// The object as JSON, encoded once and shared by every watcher that sends it.
    json: std::sync::OnceLock<bytes::Bytes>,
}

impl Change {
    /// A change, its JSON not yet encoded.
    pub(crate) fn new(
        kind: ChangeKind,
        key: String,
        revision: Revision,
        object: impl Into<Arc<Value>>,
        prev: Option<Arc<Value>>,
    ) -> Self {
        Self {
            kind,
            key,
            revision,
            object: object.into(),
            prev,
            json: std::sync::OnceLock::new(),
        }
    }

    /// The object serialised as JSON (computed on first use, then shared).
    pub fn object_json(&self) -> &bytes::Bytes {
        self.json.get_or_init(|| {
            bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())
        })
    }
}

struct Inner {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<Change>>,
    /// Watches may start at or after this revision.
    oldest: Revision,
    revision: Revision,
}

/// The in-memory cache of every object.
pub struct Cache {
    inner: RwLock<Inner>,
    live: broadcast::Sender<Arc<Change>>,
    revision_tx: watch::Sender<Revision>,
    /// Callers of [`Cache::wait_for`], by the revision each waits for. Each applied change
    /// wakes only the callers it satisfies: with hundreds of writes in flight, waking every
    /// waiter on every change (a `watch` channel's way) cost more than the writes.
    waiters: std::sync::Mutex<Waiters>,
    capacity: usize,
}

/// Pending [`Cache::wait_for`] calls; `closed` once the cache stops following the store.
#[derive(Default)]
struct Waiters {
    by_revision: BTreeMap<Revision, Vec<tokio::sync::oneshot::Sender<()>>>,
    closed: bool,
}

/// Errors starting a watch.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The requested revision is older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// Requested.
        requested: Revision,
        /// Oldest served.
        oldest: Revision,
    },
}

/// A point-in-time view of matching objects.
pub struct Snapshot {
    /// The revision of the view.
    pub revision: Revision,
    /// Objects in key order.
    pub items: Vec<Arc<Value>>,
}

/// A watcher's handle: the history to replay, then live changes.
pub struct Subscription {
    /// Changes after the requested revision that were already in history.
    pub replay: Vec<Arc<Change>>,
    /// Live changes; those at or below `replay`'s last revision must be skipped.
    pub live: broadcast::Receiver<Arc<Change>>,
    /// The cache revision when subscribing.
    pub revision: Revision,
}

impl Cache {
    /// Load every object under `/registry/` and keep following the store until `cancel`.
    pub async fn start(
        store: Arc<dyn Store>,
        capacity: usize,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, StoreError> {
        let initial = store.range("/registry/").await?;
        let mut objects = BTreeMap::new();
        for kv in &initial.kvs {
            match object::decode_stored(&kv.value, kv.mod_revision) {
                Ok(obj) => {
                    objects.insert(kv.key.clone(), Arc::new(obj));
                }
                Err(e) => tracing::warn!(key = %kv.key, error = %e, "skipping undecodable object"),
            }
        }
        let (live, _) = broadcast::channel(capacity.max(1024));
        let (revision_tx, _) = watch::channel(initial.revision);
        let cache = Arc::new(Self {
            inner: RwLock::new(Inner {
                objects,
                history: VecDeque::new(),
                oldest: initial.revision,
                revision: initial.revision,
            }),
            live,
            revision_tx,
            waiters: Default::default(),
            capacity,
        });
        let mut events = store.watch("/registry/", initial.revision)?;
        let feeder = cache.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => break,
                    next = events.next() => next,
                };
                match next {
                    Some(Ok(ev)) => feeder.apply(ev),
                    // A store shared with other servers (etcd) compacted past this cache, e.g.
                    // after a long loss of contact: catch up by relisting, then follow again.
                    Some(Err(StoreError::Compacted {
                        requested,
                        compacted,
                    })) => {
                        tracing::warn!(
                            requested,
                            compacted,
                            "the store compacted past the watch cache; relisting"
                        );
                        match feeder.relist(store.as_ref()).await {
                            Ok(stream) => events = stream,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot relist the store; the watch cache stops following");
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "store watch failed; the watch cache stops following");
                        break;
                    }
                    None => break,
                }
            }
            // Nothing will move the revision any more: let every waiter serve what there is.
            feeder.close_waiters();
        });
        Ok(cache)
    }

    /// Bring the cache up to a fresh range of the store, as the changes that lead there (adds and
    /// updates at their revisions, deletes at the range's), and watch on from it. Retries while
    /// the store is unavailable.
    async fn relist(&self, store: &dyn Store) -> Result<ledge_store::WatchStream, StoreError> {
        loop {
            let fresh = match store.range("/registry/").await {
                Ok(fresh) => fresh,
                Err(StoreError::Unavailable(why)) => {
                    tracing::debug!(reason = %why, "relist waits for the store");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for ev in self.catch_up(fresh.kvs, fresh.revision) {
                self.apply(ev);
            }
            self.advance(fresh.revision);
            match store.watch("/registry/", fresh.revision) {
                // Compacted again while relisting: go round once more.
                Err(StoreError::Compacted { .. }) => continue,
                other => return other,
            }
        }
    }

    /// The events that turn the cached objects into `kvs` (read at `revision`), in revision order.
    fn catch_up(&self, kvs: Vec<ledge_store::KeyValue>, revision: Revision) -> Vec<Event> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut events = Vec::new();
        let mut present = std::collections::HashSet::new();
        for kv in kvs {
            present.insert(kv.key.clone());
            let cached_rv = inner
                .objects
                .get(&kv.key)
                .and_then(|o| o.at("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .and_then(|rv| rv.parse::<Revision>().ok());
            if cached_rv != Some(kv.mod_revision) {
                events.push(Event {
                    kind: EventKind::Put,
                    kv,
                    prev: None,
                });
            }
        }
        for (key, obj) in &inner.objects {
            if !present.contains(key) {
                events.push(Event {
                    kind: EventKind::Delete,
                    kv: ledge_store::KeyValue {
                        key: key.clone(),
                        value: serde_json::to_vec(&**obj).unwrap_or_default().into(),
                        create_revision: 0,
                        mod_revision: revision,
                    },
                    prev: None,
                });
            }
        }
        events.sort_by_key(Event::revision);
        events
    }

    /// Record that the cache reflects the store up to `revision` (no change of its own there).
    fn advance(&self, revision: Revision) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if revision > inner.revision {
            inner.revision = revision;
        }
        drop(inner);
        self.revision_tx.send_if_modified(|r| {
            let moved = revision > *r;
            if moved {
                *r = revision;
            }
            moved
        });
        self.wake(revision);
    }

    /// Release the waiters for `revision` and older (after the revision was published).
    fn wake(&self, revision: Revision) {
        let ready = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            if w.by_revision
                .first_key_value()
                .is_none_or(|(first, _)| *first > revision)
            {
                return;
            }
            let later = w.by_revision.split_off(&(revision + 1));
            std::mem::replace(&mut w.by_revision, later)
        };
        for tx in ready.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    fn close_waiters(&self) {
        let all = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.closed = true;
            std::mem::take(&mut w.by_revision)
        };
        for tx in all.into_values().flatten() {
            let _ = tx.send(());
        }
    }

    fn apply(&self, ev: Event) {
        let revision = ev.revision();
        let decoded = match object::decode_stored(&ev.kv.value, revision) {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::warn!(key = %ev.kv.key, error = %e, "undecodable object in store watch");
                self.revision_tx.send_replace(revision);
                self.wake(revision);
                return;
            }
        };
        let mut inner = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let prev = match ev.kind {
            EventKind::Put => inner.objects.insert(ev.kv.key.clone(), decoded.clone()),
            EventKind::Delete => inner.objects.remove(&ev.kv.key),
        };
        let kind = match (ev.kind, &prev) {
            (EventKind::Delete, _) => ChangeKind::Deleted,
            (EventKind::Put, None) => ChangeKind::Added,
            (EventKind::Put, Some(_)) => ChangeKind::Modified,
        };
        let change = Arc::new(Change::new(kind, ev.kv.key, revision, decoded, prev));
        inner.history.push_back(change.clone());
        while inner.history.len() > self.capacity {
            if let Some(old) = inner.history.pop_front() {
                inner.oldest = old.revision;
            }
        }
        inner.revision = revision;
        // No receivers is fine; lagging receivers learn it from `recv`.
        let _ = self.live.send(change);
        drop(inner);
        self.revision_tx.send_replace(revision);
        self.wake(revision);
    }

    /// Wait until the cache has applied every write up to `revision` (at once if it has, or if
    /// the cache stopped following the store: then it serves what it has).
    pub async fn wait_for(&self, revision: Revision) {
        if *self.revision_tx.borrow() >= revision {
            return;
        }
        let rx = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            // Checked again under the lock: a change applied since is published before its
            // waiters are woken under this same lock, so it cannot be missed.
            if w.closed || *self.revision_tx.borrow() >= revision {
                return;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            w.by_revision.entry(revision).or_default().push(tx);
            rx
        };
        let _ = rx.await;
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.objects.get(key).cloned()
    }

    /// Every object whose key starts with `prefix` and is after `start_after` (for paging).
    pub fn list(&self, prefix: &str, start_after: Option<&str>) -> Snapshot {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let items = inner
            .objects
            .range(start_after.unwrap_or(prefix).to_string()..)
            .filter(|(k, _)| Some(k.as_str()) != start_after)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Snapshot {
            revision: inner.revision,
            items,
        }
    }

    /// A snapshot of every object under `prefix` and a subscription to the changes after it,
    /// taken atomically (for watches that start with the current state).
    pub fn snapshot_and_subscribe(&self, prefix: &str) -> (Snapshot, Subscription) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let live = self.live.subscribe();
        let items = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        let revision = inner.revision;
        (
            Snapshot { revision, items },
            Subscription {
                replay: Vec::new(),
                live,
                revision,
            },
        )
    }

    /// Start watching from `after` (changes with a greater revision).
    pub fn subscribe(&self, prefix: &str, after: Revision) -> Result<Subscription, CacheError> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if after < inner.oldest {
            return Err(CacheError::Expired {
                requested: after,
                oldest: inner.oldest,
            });
        }
        let live = self.live.subscribe();
        let replay = inner
            .history
            .iter()
            .filter(|c| c.revision > after && c.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(Subscription {
            replay,
            live,
            revision: inner.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ledge_store::{EmbeddedOptions, EmbeddedStore, KeyValue};
    use std::time::Duration;

    fn cm(name: &str, value: &str) -> Bytes {
        Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"}, "data": {"k": value},
            }))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_relist_becomes_the_changes_that_lead_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("db"), EmbeddedOptions::default()).unwrap();
        let key = |n: &str| format!("/registry/configmaps/default/{n}");
        let kept = store.create(&key("kept"), cm("kept", "1")).await.unwrap();
        store
            .create(&key("changed"), cm("changed", "1"))
            .await
            .unwrap();
        store.create(&key("gone"), cm("gone", "1")).await.unwrap();
        let cancel = CancellationToken::new();
        let cache = Cache::start(Arc::new(store.clone()), 100, cancel.clone())
            .await
            .unwrap();

        // What another server's store might hold after this cache lost track of it.
        let fresh = vec![
            kept.clone(),
            KeyValue {
                key: key("changed"),
                value: cm("changed", "2"),
                create_revision: 2,
                mod_revision: 10,
            },
            KeyValue {
                key: key("new"),
                value: cm("new", "1"),
                create_revision: 11,
                mod_revision: 11,
            },
        ];
        let events = cache.catch_up(fresh, 12);
        let summary: Vec<(EventKind, &str, Revision)> = events
            .iter()
            .map(|e| (e.kind, e.kv.key.rsplit('/').next().unwrap(), e.revision()))
            .collect();
        assert_eq!(
            summary,
            [
                (EventKind::Put, "changed", 10),
                (EventKind::Put, "new", 11),
                (EventKind::Delete, "gone", 12),
            ]
        );
        for ev in events {
            cache.apply(ev);
        }
        cache.advance(12);
        assert_eq!(cache.revision(), 12);
        let names: Vec<String> = cache
            .list("/registry/configmaps/", None)
            .items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["changed", "kept", "new"]);
        cancel.cancel();
        store.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn waiters_are_released_by_the_revision_they_wait_for_and_by_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("db"), EmbeddedOptions::default()).unwrap();
        let key = |n: &str| format!("/registry/configmaps/default/{n}");
        let cancel = CancellationToken::new();
        let cache = Cache::start(Arc::new(store.clone()), 100, cancel.clone())
            .await
            .unwrap();
        let base = cache.revision();
        // Already reached: no wait at all.
        cache.wait_for(base).await;
        let waiter = |rev: Revision| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.wait_for(rev).await })
        };
        let (first, second, far) = (waiter(base + 1), waiter(base + 2), waiter(base + 100));
        store.create(&key("a"), cm("a", "1")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("the first write releases its waiter")
            .unwrap();
        assert!(
            !second.is_finished(),
            "a waiter for a later revision keeps waiting"
        );
        store.create(&key("b"), cm("b", "1")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second write releases its waiter")
            .unwrap();
        assert!(!far.is_finished());
        // The cache stops following the store: the rest are let go to serve what there is.
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), far)
            .await
            .expect("a stopped cache releases its waiters")
            .unwrap();
        store.shutdown().await.unwrap();
    }
}
