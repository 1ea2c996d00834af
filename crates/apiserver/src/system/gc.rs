//! The garbage collector: objects whose owners (ownerReferences, by uid) are gone are deleted;
//! owners deleted with `Orphan` release their dependents first, owners deleted with
//! `Foreground` wait until their dependents are gone (upstream `pkg/controller/garbagecollector`).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cache::{Change, ChangeKind};
use crate::handlers::delete::{DeleteOptions, delete_object};
use crate::handlers::system_update;
use crate::handlers::write::Part;
use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

/// Run the garbage collector until shutdown.
pub async fn run(state: Arc<ApiState>) {
    super::follow(
        state,
        async |state, change: Arc<Change>| {
            let owned = |o: &Value| o.pointer("/metadata/ownerReferences").is_some();
            let relevant = change.kind == ChangeKind::Deleted
                || object::is_deleting(&change.object)
                || owned(&change.object)
                || change.prev.as_deref().is_some_and(owned);
            if relevant {
                sweep(state).await;
            }
        },
        async |state| sweep(state).await,
    )
    .await;
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
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

/// One pass over every object. Cheap enough at the sizes one server holds; an owner index
/// replaces it when it shows up in profiles.
async fn sweep(state: &Arc<ApiState>) {
    state.cache.wait_for(state.store.current_revision()).await;
    let all = state.cache.list("/registry/", None).items;
    let alive: HashSet<&str> = all.iter().filter_map(|o| object::uid(o)).collect();
    let orphaning: HashSet<&str> = all
        .iter()
        .filter(|o| object::is_deleting(o) && object::finalizers(o).iter().any(|f| f == "orphan"))
        .filter_map(|o| object::uid(o))
        .collect();
    let foreground: HashSet<&str> = all
        .iter()
        .filter(|o| {
            object::is_deleting(o)
                && object::finalizers(o)
                    .iter()
                    .any(|f| f == "foregroundDeletion")
        })
        .filter_map(|o| object::uid(o))
        .collect();
    let mut has_dependents: HashSet<String> = HashSet::new();
    for obj in &all {
        let owners = owner_uids(obj);
        if owners.is_empty() {
            continue;
        }
        for o in &owners {
            has_dependents.insert(o.clone());
        }
        let Some(res) = resource_of(state, obj) else {
            continue;
        };
        let (ns, name) = (
            object::namespace(obj).map(str::to_string),
            object::name(obj).to_string(),
        );
        let released: Vec<&String> = owners
            .iter()
            .filter(|u| orphaning.contains(u.as_str()))
            .collect();
        if !released.is_empty() {
            let drop: HashSet<String> = released.into_iter().cloned().collect();
            let _ = system_update(state, &res, ns.as_deref(), &name, Part::Main, |cur| {
                let refs = cur
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let kept: Vec<Value> = refs
                    .into_iter()
                    .filter(|r| {
                        !r.get("uid")
                            .and_then(Value::as_str)
                            .is_some_and(|u| drop.contains(u))
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
            continue;
        }
        let all_gone = owners.iter().all(|u| !alive.contains(u.as_str()));
        let owner_foreground = owners.iter().any(|u| foreground.contains(u.as_str()));
        if (all_gone || owner_foreground) && !object::is_deleting(obj) {
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
    }
    // Owners waiting on finalizers whose work is done.
    for obj in all.iter().filter(|o| object::is_deleting(o)) {
        let uid = object::uid(obj).unwrap_or("");
        let fs = object::finalizers(obj);
        let done_orphan = fs.iter().any(|f| f == "orphan") && !has_dependents.contains(uid);
        let done_foreground =
            fs.iter().any(|f| f == "foregroundDeletion") && !has_dependents.contains(uid);
        if !(done_orphan || done_foreground) {
            continue;
        }
        let Some(res) = resource_of(state, obj) else {
            continue;
        };
        let (ns, name) = (
            object::namespace(obj).map(str::to_string),
            object::name(obj).to_string(),
        );
        let _ = system_update(state, &res, ns.as_deref(), &name, Part::Main, |cur| {
            let mut c = cur.clone();
            let kept: Vec<String> = object::finalizers(cur)
                .into_iter()
                .filter(|f| {
                    !((f == "orphan" && done_orphan)
                        || (f == "foregroundDeletion" && done_foreground))
                })
                .collect();
            c["metadata"]["finalizers"] = json!(kept);
            Some(c)
        })
        .await;
    }
}
