//! The garbage collector: objects whose owners (ownerReferences, by uid) are gone are deleted;
//! owners deleted with `Orphan` release their dependents first, owners deleted with
//! `Foreground` wait until their dependents are gone (upstream `pkg/controller/garbagecollector`).
//!
//! It keeps an index of owners → dependents, updated from the change stream, so a deletion
//! costs work proportional to its dependents, not to the cluster size.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cache::{Change, ChangeKind};
use crate::handlers::delete::{DeleteOptions, delete_object};
use crate::handlers::system_update;
use crate::handlers::write::Part;
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// Owner uid → storage keys of its dependents, and uid → key of every live object.
#[derive(Default)]
struct Graph {
    dependents: HashMap<String, HashSet<String>>,
    alive: HashMap<String, String>,
    owners_of: HashMap<String, Vec<String>>,
}

impl Graph {
    fn remove_key(&mut self, key: &str) {
        if let Some(owners) = self.owners_of.remove(key) {
            for o in owners {
                if let Some(set) = self.dependents.get_mut(&o) {
                    set.remove(key);
                    if set.is_empty() {
                        self.dependents.remove(&o);
                    }
                }
            }
        }
    }

    fn observe(&mut self, key: &str, obj: &Value, deleted: bool) {
        self.remove_key(key);
        if let Some(uid) = object::uid(obj) {
            if deleted {
                self.alive.remove(uid);
            } else {
                self.alive.insert(uid.to_string(), key.to_string());
            }
        }
        if deleted {
            return;
        }
        let owners = owner_uids(obj);
        for o in &owners {
            self.dependents
                .entry(o.clone())
                .or_default()
                .insert(key.to_string());
        }
        if !owners.is_empty() {
            self.owners_of.insert(key.to_string(), owners);
        }
    }
}

/// Run the garbage collector until shutdown.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    let graph = Arc::new(Mutex::new(Graph::default()));
    let g1 = graph.clone();
    super::follow(
        state,
        cancel,
        async move |state, change: Arc<Change>| {
            let keys = g1.lock().await.on_change(&change);
            if !keys.is_empty() {
                process(state, &g1, keys).await;
            }
        },
        async move |state| {
            let all = state.cache.list("/registry/", None).items;
            let mut keys = Vec::new();
            {
                let mut g = graph.lock().await;
                *g = Graph::default();
                for obj in &all {
                    let key = key_of(state, obj);
                    if let Some(key) = key {
                        g.observe(&key, obj, false);
                        if g.owners_of.contains_key(&key) || object::is_deleting(obj) {
                            keys.push(key);
                        }
                    }
                }
            }
            process(state, &graph, keys).await;
        },
    )
    .await;
}

impl Graph {
    /// Record one change; returns the keys whose objects may need collecting, finalizing or
    /// releasing because of it (usually none).
    fn on_change(&mut self, change: &Change) -> Vec<String> {
        if change.kind == ChangeKind::Modified
            && let Some(prev) = &change.prev
            && !gc_relevant_change(prev, &change.object)
        {
            // Status writes, bindings, label edits: nothing the collector looks at moved.
            return Vec::new();
        }
        let deleted = change.kind == ChangeKind::Deleted;
        let mut keys = Vec::new();
        let prev_owners = self.owners_of.get(&change.key).cloned().unwrap_or_default();
        self.observe(&change.key, &change.object, deleted);
        // Owners this object pointed at may be waiting for it to go or let go.
        for o in prev_owners {
            if let Some(k) = self.alive.get(&o) {
                keys.push(k.clone());
            }
        }
        if let Some(uid) = object::uid(&change.object)
            && let Some(deps) = self.dependents.get(uid)
        {
            keys.extend(deps.iter().cloned());
        }
        if !deleted
            && (self.owners_of.contains_key(&change.key) || object::is_deleting(&change.object))
        {
            keys.push(change.key.clone());
        }
        keys
    }
}

/// Whether an update changed what the collector decides on: identity, owners, deletion state
/// or finalizers.
fn gc_relevant_change(prev: &Value, cur: &Value) -> bool {
    fn meta<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
        v.get("metadata").and_then(|m| m.get(field))
    }
    ["uid", "ownerReferences", "deletionTimestamp", "finalizers"]
        .iter()
        .any(|f| meta(prev, f) != meta(cur, f))
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.at("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn resource_of(state: &ApiState, obj: &Value) -> Option<Arc<Resource>> {
    let av = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    let group = av.rsplit_once('/').map_or("", |(g, _)| g);
    state.registry.by_kind(group, kind)
}

fn key_of(state: &ApiState, obj: &Value) -> Option<String> {
    let res = resource_of(state, obj)?;
    Some(res.def.key(object::namespace(obj), object::name(obj)))
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    object::finalizers(obj).iter().any(|x| x == f)
}

/// Act on each key: a dependent whose owners are all gone (or deleting in the foreground) is
/// deleted; one whose owner orphans is released; an owner waiting on `orphan` or
/// `foregroundDeletion` with no dependents left loses that finalizer.
async fn process(state: &Arc<ApiState>, graph: &Arc<Mutex<Graph>>, keys: Vec<String>) {
    state.cache.wait_for(state.store.current_revision()).await;
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            continue;
        }
        let Some(obj) = state.cache.get(&key) else {
            continue;
        };
        let Some(res) = resource_of(state, &obj) else {
            continue;
        };
        let (ns, name) = (
            object::namespace(&obj).map(str::to_string),
            object::name(&obj).to_string(),
        );
        let owners = owner_uids(&obj);
        if !owners.is_empty() {
            let (orphaning, gone, foreground) = {
                let g = graph.lock().await;
                let owner = |u: &String| g.alive.get(u).and_then(|k| state.cache.get(k));
                let orphaning: HashSet<String> = owners
                    .iter()
                    .filter(|u| {
                        owner(u)
                            .is_some_and(|o| object::is_deleting(&o) && has_finalizer(&o, "orphan"))
                    })
                    .cloned()
                    .collect();
                let gone = owners.iter().all(|u| !g.alive.contains_key(u));
                let foreground = owners.iter().any(|u| {
                    owner(u).is_some_and(|o| {
                        object::is_deleting(&o) && has_finalizer(&o, "foregroundDeletion")
                    })
                });
                (orphaning, gone, foreground)
            };
            if !orphaning.is_empty() {
                release(state, &res, ns.as_deref(), &name, &orphaning).await;
                for u in &orphaning {
                    finish_owner(state, graph, u).await;
                }
            } else if (gone || foreground) && !object::is_deleting(&obj) {
                let opts = DeleteOptions {
                    propagation: Some("Background".into()),
                    ..Default::default()
                };
                if let Err(e) = delete_object(state, &res, ns.as_deref(), &name, &opts).await
                    && e.code != 404
                {
                    tracing::warn!(object = %name, error = %e, "garbage collection failed");
                }
            }
            // A dependent that went away may release a foreground owner.
            if gone || foreground {
                for u in &owners {
                    finish_owner(state, graph, u).await;
                }
            }
        }
        if object::is_deleting(&obj)
            && let Some(uid) = object::uid(&obj)
        {
            let dependents: Vec<String> = {
                let g = graph.lock().await;
                g.dependents
                    .get(uid)
                    .map(|d| d.iter().cloned().collect())
                    .unwrap_or_default()
            };
            if dependents.is_empty() {
                finish_owner(state, graph, uid).await;
            } else if has_finalizer(&obj, "orphan") || has_finalizer(&obj, "foregroundDeletion") {
                Box::pin(process(state, graph, dependents)).await;
            }
        }
    }
}

/// Remove ownerReferences to `owners` from one dependent.
async fn release(
    state: &ApiState,
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    owners: &HashSet<String>,
) {
    let result = system_update(state, res, ns, name, Part::Main, |cur| {
        let refs = cur
            .at("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let kept: Vec<Value> = refs
            .into_iter()
            .filter(|r| {
                !r.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| owners.contains(u))
            })
            .collect();
        let mut c = cur.clone();
        if kept.is_empty() {
            if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("ownerReferences");
            }
        } else {
            c["metadata"]["ownerReferences"] = json!(kept);
        }
        Some(c)
    })
    .await;
    if let Err(e) = result
        && e.code != 404
    {
        tracing::warn!(object = %name, error = %e, "could not orphan dependent");
    }
}

/// Drop `orphan`/`foregroundDeletion` from a deleting owner once no dependent points at it.
async fn finish_owner(state: &ApiState, graph: &Arc<Mutex<Graph>>, uid: &str) {
    let key = {
        let g = graph.lock().await;
        if g.dependents.get(uid).is_some_and(|d| !d.is_empty()) {
            return;
        }
        match g.alive.get(uid) {
            Some(k) => k.clone(),
            None => return,
        }
    };
    let Some(obj) = state.cache.get(&key) else {
        return;
    };
    if !object::is_deleting(&obj)
        || !(has_finalizer(&obj, "orphan") || has_finalizer(&obj, "foregroundDeletion"))
    {
        return;
    }
    let Some(res) = resource_of(state, &obj) else {
        return;
    };
    let (ns, name) = (
        object::namespace(&obj).map(str::to_string),
        object::name(&obj).to_string(),
    );
    let _ = system_update(state, &res, ns.as_deref(), &name, Part::Main, |cur| {
        let mut c = cur.clone();
        let kept: Vec<String> = object::finalizers(cur)
            .into_iter()
            .filter(|f| f != "orphan" && f != "foregroundDeletion")
            .collect();
        c["metadata"]["finalizers"] = json!(kept);
        Some(c)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(kind: ChangeKind, object: Value, prev: Option<Value>) -> Change {
        Change::new(
            kind,
            "/registry/x/ns/a".into(),
            2,
            object,
            prev.map(Arc::new),
        )
    }

    #[test]
    fn updates_that_leave_owners_and_deletion_alone_cost_nothing() {
        let mut g = Graph::default();
        let pod = json!({"metadata": {"uid": "p", "ownerReferences": [{"uid": "rs"}]}});
        let keys = g.on_change(&change(ChangeKind::Added, pod.clone(), None));
        assert_eq!(keys, vec!["/registry/x/ns/a".to_string()]);
        let mut bound = pod.clone();
        bound["spec"] = json!({"nodeName": "n1"});
        assert!(
            g.on_change(&change(ChangeKind::Modified, bound.clone(), Some(pod)))
                .is_empty()
        );
        let mut deleting = bound.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(
            !g.on_change(&change(ChangeKind::Modified, deleting, Some(bound)))
                .is_empty()
        );
    }
}
