//! Expectations: what a controller just created or deleted and its informer has not shown yet.
//! A reconcile that counts objects in the cache would otherwise create the same pods twice when
//! it runs again before the watch delivers its own writes (upstream `ControllerExpectations` in
//! `pkg/controller/controller_utils.go`). Here an expectation is not a counter fed by event
//! handlers but a question asked of the cache: has it reached the revision the API returned for
//! the creation, and does it show the deleted object gone or terminating? So nothing is lost if
//! an event is missed, and an expectation never outlives [`TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ledge_api::Pointer as _;
use serde_json::Value;

use crate::informer::{Informer, Store};
use crate::runner::ObjectKey;

/// How long an unmet expectation holds before it is dropped (upstream `ExpectationsTimeout`).
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct Pending {
    /// Created objects and the revision of their creation.
    created: Vec<(ObjectKey, u64)>,
    /// Deleted objects and their uid.
    deleted: Vec<(ObjectKey, String)>,
    since: Option<Instant>,
}

/// Outstanding creations and deletions per owner.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
}

impl Expectations {
    /// No expectations.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `owner` created `obj` (as the API returned it).
    pub fn created(&self, owner: &ObjectKey, obj: &Value) {
        let revision = obj
            .at("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut pending = self.lock();
        let p = pending.entry(owner.clone()).or_default();
        p.created.push((ObjectKey::of(obj), revision));
        p.since = Some(Instant::now());
    }

    /// `owner` deleted `obj` (its last state in the cache).
    pub fn deleted(&self, owner: &ObjectKey, obj: &Value) {
        let uid = uid(obj).to_string();
        let mut pending = self.lock();
        let p = pending.entry(owner.clone()).or_default();
        p.deleted.push((ObjectKey::of(obj), uid));
        p.since = Some(Instant::now());
    }

    /// Whether `informer` shows every write `owner` expects (met expectations are dropped).
    pub fn satisfied(&self, owner: &ObjectKey, informer: &Informer) -> bool {
        self.satisfied_by(owner, informer.store(), informer.observed_revision())
    }

    /// [`satisfied`](Self::satisfied) against a cache at `revision`.
    pub fn satisfied_by(&self, owner: &ObjectKey, store: &Store, revision: u64) -> bool {
        let mut pending = self.lock();
        let Some(p) = pending.get_mut(owner) else {
            return true;
        };
        p.created
            .retain(|(key, at)| store.get(key).is_none() && revision < *at);
        p.deleted.retain(|(key, want)| {
            store
                .get(key)
                .is_some_and(|o| uid(&o) == want && o.at("/metadata/deletionTimestamp").is_none())
        });
        let expired = p.since.is_some_and(|t| t.elapsed() > TTL);
        if (p.created.is_empty() && p.deleted.is_empty()) || expired {
            pending.remove(owner);
            return true;
        }
        false
    }

    /// Drop everything expected for `owner` (it was deleted).
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }
}

fn uid(obj: &Value) -> &str {
    obj.at("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, uid: &str, rv: &str) -> Value {
        json!({"metadata": {"namespace": "a", "name": name, "uid": uid, "resourceVersion": rv}})
    }

    #[test]
    fn creations_are_met_when_the_cache_shows_them_or_passes_their_revision() {
        let owner = ObjectKey::new(Some("a"), "rs");
        let e = Expectations::new();
        let store = Store::default();
        assert!(e.satisfied_by(&owner, &store, 0));
        e.created(&owner, &pod("p1", "u1", "10"));
        e.created(&owner, &pod("p2", "u2", "11"));
        assert!(!e.satisfied_by(&owner, &store, 9));
        store.put(pod("p1", "u1", "10"));
        assert!(!e.satisfied_by(&owner, &store, 10), "p2 not seen yet");
        // p2 was created and deleted again before the cache caught up: the revision says so.
        assert!(e.satisfied_by(&owner, &store, 12));
    }

    #[test]
    fn deletions_are_met_when_the_object_is_gone_or_terminating() {
        let owner = ObjectKey::new(Some("a"), "rs");
        let e = Expectations::new();
        let store = Store::default();
        let p1 = pod("p1", "u1", "10");
        let p2 = pod("p2", "u2", "11");
        store.put(p1.clone());
        store.put(p2.clone());
        e.deleted(&owner, &p1);
        e.deleted(&owner, &p2);
        assert!(!e.satisfied_by(&owner, &store, 11));
        store.remove(&p1);
        let mut terminating = p2.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        store.put(terminating);
        assert!(e.satisfied_by(&owner, &store, 11));
    }
}
