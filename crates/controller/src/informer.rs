//! An informer: lists a kind, watches it from the list's resourceVersion, keeps every object in
//! a local [`Store`], and tells subscribers which objects changed. A watch that ends is resumed
//! from the last resourceVersion seen; a `410 Expired` relists (client-go reflector semantics).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use ledge_api::Pointer as _;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, Kind, WatchEvent};
use crate::runner::ObjectKey;

/// The longest wait between two attempts to list or watch (client-go's reflector: 30 s).
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// The informer's cache of one kind.
#[derive(Default)]
pub struct Store {
    objects: RwLock<HashMap<ObjectKey, Arc<Value>>>,
}

impl Store {
    /// One object.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Every object (optionally only one namespace's).
    pub fn list(&self, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let objects = self.objects.read().unwrap_or_else(|p| p.into_inner());
        objects
            .iter()
            .filter(|(k, _)| namespace.is_none() || k.namespace.as_deref() == namespace)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn put(&self, obj: impl Into<Arc<Value>>) -> Arc<Value> {
        let obj = obj.into();
        let key = ObjectKey::of(&obj);
        self.objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, obj.clone());
        obj
    }

    pub(crate) fn remove(&self, obj: &Value) {
        self.objects
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ObjectKey::of(obj));
    }

    /// Replace the contents; returns every object that changed or went away.
    fn replace(&self, items: Vec<Value>) -> Vec<Arc<Value>> {
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        let mut fresh: HashMap<ObjectKey, Arc<Value>> = HashMap::new();
        let mut changed = Vec::new();
        for item in items {
            let key = ObjectKey::of(&item);
            let item = Arc::new(item);
            let same = objects.get(&key).is_some_and(|old| rv(old) == rv(&item));
            if !same {
                changed.push(item.clone());
            }
            fresh.insert(key, item);
        }
        for (key, old) in objects.iter() {
            if !fresh.contains_key(key) {
                changed.push(old.clone());
            }
        }
        *objects = fresh;
        changed
    }
}

fn rv(obj: &Value) -> &str {
    obj.at("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A running informer for one kind.
pub struct Informer {
    /// The kind it follows.
    pub kind: Kind,
    store: Arc<Store>,
    changes: broadcast::Sender<Arc<Value>>,
    synced: watch::Sender<bool>,
    /// The highest resourceVersion the cache reflects (0 before the first list).
    revision: AtomicU64,
    /// Cancelled when the informer stops, so nobody waits for a sync that cannot come.
    stopped: CancellationToken,
}

impl Informer {
    /// Start following `kind` (all namespaces) until `cancel`.
    pub fn start(client: Arc<dyn Client>, kind: Kind, cancel: CancellationToken) -> Arc<Self> {
        Self::start_with_retry_cap(client, kind, cancel, MAX_RETRY)
    }

    /// [`start`](Self::start), with failed lists and watches retried at least every
    /// `retry_cap` (instead of [`MAX_RETRY`]): an edge agent wants to see its pods again soon
    /// after its link returns.
    pub fn start_with_retry_cap(
        client: Arc<dyn Client>,
        kind: Kind,
        cancel: CancellationToken,
        retry_cap: Duration,
    ) -> Arc<Self> {
        let (changes, _) = broadcast::channel(4096);
        let (synced, _) = watch::channel(false);
        let informer = Arc::new(Self {
            kind,
            store: Arc::new(Store::default()),
            changes,
            synced,
            revision: AtomicU64::new(0),
            stopped: cancel.clone(),
        });
        let me = informer.clone();
        tokio::spawn(async move { me.run(client, cancel, retry_cap).await });
        informer
    }

    /// The cache.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Changed objects (for a deletion, its last state) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Value>> {
        self.changes.subscribe()
    }

    /// Wait until the first list has been loaded, or the informer is stopped (a leader's term
    /// that ended before its first sync must not leave its waiters parked).
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        tokio::select! {
            _ = rx.wait_for(|s| *s) => {}
            _ = self.stopped.cancelled() => {}
        }
    }

    /// The highest resourceVersion this cache reflects: every write the API acknowledged at or
    /// below it is visible in [`store`](Self::store). 0 until the first list, and for servers
    /// whose resourceVersions are not numbers.
    pub fn observed_revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Record progress; called before subscribers hear of the change, so a reconcile they
    /// trigger sees the revision too.
    fn observe(&self, resource_version: &str) {
        if let Ok(r) = resource_version.parse::<u64>() {
            self.revision.fetch_max(r, Ordering::AcqRel);
        }
    }

    fn emit(&self, obj: Arc<Value>) {
        // No subscribers is fine.
        let _ = self.changes.send(obj);
    }

    async fn run(&self, client: Arc<dyn Client>, cancel: CancellationToken, retry_cap: Duration) {
        let mut backoff = Duration::from_millis(100);
        // Failures in a row: the first is a warning, the rest (a server down for hours) debug.
        let mut failures = 0u32;
        let mut resource_version = String::new();
        loop {
            if cancel.is_cancelled() {
                return;
            }
            if resource_version.is_empty() {
                match client.list(&self.kind, None, None).await {
                    Ok((items, list_rv)) => {
                        self.observe(&list_rv);
                        for obj in self.store.replace(items) {
                            self.emit(obj);
                        }
                        self.synced.send_replace(true);
                        resource_version = list_rv;
                        backoff = Duration::from_millis(100);
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(kind = self.kind.kind, error = %e, "list failed; retrying");
                        } else {
                            tracing::debug!(kind = self.kind.kind, error = %e, "list failed again");
                        }
                        if sleep_or_cancel(&cancel, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(retry_cap);
                        continue;
                    }
                }
            }
            let stream = match client.watch(&self.kind, None, &resource_version).await {
                Ok(s) => {
                    backoff = Duration::from_millis(100);
                    failures = 0;
                    s
                }
                Err(e) if e.code == 410 => {
                    resource_version.clear();
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(kind = self.kind.kind, error = %e, "watch failed; retrying");
                    } else {
                        tracing::debug!(kind = self.kind.kind, error = %e, "watch failed again");
                    }
                    if sleep_or_cancel(&cancel, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(retry_cap);
                    continue;
                }
            };
            tokio::pin!(stream);
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    None => break,
                    Some(Err(e)) => {
                        if e.code == 410 {
                            resource_version.clear();
                        } else {
                            tracing::debug!(kind = self.kind.kind, error = %e, "watch ended");
                        }
                        break;
                    }
                    Some(Ok(WatchEvent::Bookmark(r))) => {
                        self.observe(&r);
                        resource_version = r;
                    }
                    Some(Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj))) => {
                        resource_version = rv(&obj).to_string();
                        self.observe(&resource_version);
                        let obj = self.store.put(obj);
                        self.emit(obj);
                    }
                    Some(Ok(WatchEvent::Deleted(obj))) => {
                        resource_version = rv(&obj).to_string();
                        self.observe(&resource_version);
                        self.store.remove(&obj);
                        self.emit(obj);
                    }
                }
            }
        }
    }
}

/// Sleep unless cancelled; true when cancelled.
async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
