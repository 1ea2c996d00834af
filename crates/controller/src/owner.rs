//! Controller ownership: the controller `ownerReference` a workload puts on what it creates,
//! and claiming — adopting orphans that match a selector, releasing owned objects that no longer
//! match — with upstream's rules (`pkg/controller/controller_ref_manager.go`). The garbage
//! collector in the API server follows the same references when an owner is deleted.

use std::sync::Arc;

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::client::{Client, Kind};
use crate::runner::ObjectKey;

/// The `ownerReferences` entry with `controller: true`, if any.
pub fn controller_of(obj: &Value) -> Option<&Value> {
    obj.at("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// The uid of an object's controller, if it has one.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    controller_of(obj)?.get("uid")?.as_str()
}

/// Whether `obj`'s controller is the object with uid `owner_uid`.
pub fn is_controlled_by(obj: &Value, owner_uid: &str) -> bool {
    controller_uid(obj) == Some(owner_uid)
}

/// The reference a controller of `kind` puts on what it creates (upstream `NewControllerRef`):
/// `controller: true` and `blockOwnerDeletion: true`, so a foreground deletion of the owner
/// waits for it.
pub fn controller_ref(kind: &Kind, owner: &Value) -> Value {
    let s = |p: &str| owner.at(p).and_then(Value::as_str).unwrap_or("");
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.kind,
        "name": s("/metadata/name"),
        "uid": s("/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The owners of `owner_kind` to reconcile when `obj` changes: its controller if that is of
/// `owner_kind`, none if it is controlled by something else, and for an orphan every candidate
/// owner (of its namespace) whose `spec.selector` matches it, since one of them may adopt it
/// (upstream `resolveControllerRef` and `getPodReplicaSets`). `candidates` is only called for
/// orphans.
pub fn owner_keys<F>(obj: &Value, owner_kind: &Kind, candidates: F) -> Vec<ObjectKey>
where
    F: FnOnce(Option<&str>) -> Vec<Arc<Value>>,
{
    let ns = obj
        .at("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match controller_of(obj) {
        Some(r) => {
            let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("");
            if s("kind") == owner_kind.kind && s("apiVersion") == owner_kind.api_version() {
                vec![ObjectKey::new(ns, s("name"))]
            } else {
                Vec::new()
            }
        }
        None => candidates(ns)
            .iter()
            .filter(|o| {
                o.at("/spec/selector")
                    .and_then(|s| LabelSelector::from_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches_object(obj))
            })
            .map(|o| ObjectKey::of(o))
            .collect(),
    }
}

/// What to do with one candidate object when claiming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: keep it.
    Keep,
    /// An orphan that matches: add our controller reference.
    Adopt,
    /// Ours but no longer matching: remove our reference.
    Release,
    /// Someone else's, or not ours to take: leave it alone.
    Ignore,
}

/// Upstream `ClaimObject`'s decision for `obj`, given the `owner` and whether `obj` matches the
/// owner's selector. A deleting owner keeps what it has but neither adopts nor releases; a
/// deleting orphan is never adopted.
pub fn decide(obj: &Value, owner: &Value, matches: bool) -> Claim {
    let owner_uid = owner
        .at("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("");
    let owner_deleting = owner.at("/metadata/deletionTimestamp").is_some();
    if let Some(r) = controller_of(obj) {
        if r.get("uid").and_then(Value::as_str) != Some(owner_uid) {
            return Claim::Ignore;
        }
        return if matches {
            Claim::Keep
        } else if owner_deleting {
            Claim::Ignore
        } else {
            Claim::Release
        };
    }
    let ns = |o: &Value| {
        o.at("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if owner_deleting
        || !matches
        || obj.at("/metadata/deletionTimestamp").is_some()
        || ns(owner).is_some_and(|n| !n.is_empty() && Some(&n) != ns(obj).as_ref())
    {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// `obj` with `reference` added to its ownerReferences (replacing one with the same uid).
pub fn with_owner(obj: &Value, reference: &Value) -> Value {
    let mut out = obj.clone();
    let uid = reference.get("uid");
    let mut refs: Vec<Value> = owner_refs(obj)
        .into_iter()
        .filter(|r| r.get("uid") != uid)
        .collect();
    refs.push(reference.clone());
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("ownerReferences".into(), Value::Array(refs));
    }
    out
}

/// `obj` without the ownerReference to `owner_uid`.
pub fn without_owner(obj: &Value, owner_uid: &str) -> Value {
    let mut out = obj.clone();
    let refs: Vec<Value> = owner_refs(obj)
        .into_iter()
        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid))
        .collect();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        if refs.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(refs));
        }
    }
    out
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.at("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Claims among `candidates` (objects of `owned` in the owner's namespace) those that belong
/// to `owner` (of `owner_kind`): keeps its own matching objects, adopts matching orphans,
/// releases its objects that stopped matching. Returns the claimed objects (adopted ones as
/// written). Before the first adoption the owner is re-read from the API, so a stale cache
/// cannot make a deleted owner adopt (upstream `RecheckDeletionTimestamp`).
///
/// # Errors
/// The first failed adoption or release (after trying all); objects that vanished meanwhile
/// are skipped. The caller retries the whole reconcile.
pub async fn claim(
    client: &dyn Client,
    owner_kind: &Kind,
    owned: &Kind,
    owner: &Value,
    selector: &LabelSelector,
    candidates: Vec<Arc<Value>>,
) -> Result<Vec<Arc<Value>>, ApiError> {
    let owner_uid = owner
        .at("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let reference = controller_ref(owner_kind, owner);
    let mut claimed = Vec::new();
    let mut first_error = None;
    let mut may_adopt: Option<bool> = None;
    for obj in candidates {
        let ns = obj.at("/metadata/namespace").and_then(Value::as_str);
        let result = match decide(&obj, owner, selector.matches_object(&obj)) {
            Claim::Keep => {
                claimed.push(obj);
                continue;
            }
            Claim::Ignore => continue,
            Claim::Release => client
                .update(owned, ns, without_owner(&obj, &owner_uid))
                .await
                .map(|_| ()),
            Claim::Adopt => {
                if may_adopt.is_none() {
                    may_adopt = Some(recheck(client, owner_kind, owner, &owner_uid).await?);
                }
                if may_adopt != Some(true) {
                    continue;
                }
                client
                    .update(owned, ns, with_owner(&obj, &reference))
                    .await
                    .map(|written| claimed.push(Arc::new(written)))
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

/// Whether the owner, read fresh, may still adopt: same uid and not being deleted.
async fn recheck(
    client: &dyn Client,
    kind: &Kind,
    owner: &Value,
    uid: &str,
) -> Result<bool, ApiError> {
    let s = |p: &str| owner.at(p).and_then(Value::as_str);
    let name = s("/metadata/name").unwrap_or("");
    let fresh = client
        .get(kind, s("/metadata/namespace"), name)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                409,
                "Conflict",
                format!("original {} {name} is gone", kind.kind),
            )
        })?;
    if fresh.at("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("original {} {name} is gone: it was replaced", kind.kind),
        ));
    }
    Ok(fresh.at("/metadata/deletionTimestamp").is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Value {
        json!({"metadata": {"name": "rs", "namespace": "a", "uid": "u1"}})
    }

    fn owned_by(uid: &str) -> Value {
        json!({"metadata": {"name": "p", "namespace": "a",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": uid, "controller": true}]}})
    }

    #[test]
    fn claims_follow_upstream_rules() {
        let orphan = json!({"metadata": {"name": "p", "namespace": "a"}});
        assert_eq!(decide(&orphan, &owner(), true), Claim::Adopt);
        assert_eq!(decide(&orphan, &owner(), false), Claim::Ignore);
        assert_eq!(decide(&owned_by("u1"), &owner(), true), Claim::Keep);
        assert_eq!(decide(&owned_by("u1"), &owner(), false), Claim::Release);
        assert_eq!(decide(&owned_by("u2"), &owner(), true), Claim::Ignore);
        let mut deleting = owner();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(decide(&orphan, &deleting, true), Claim::Ignore);
        assert_eq!(decide(&owned_by("u1"), &deleting, false), Claim::Ignore);
        assert_eq!(decide(&owned_by("u1"), &deleting, true), Claim::Keep);
        let other_ns = json!({"metadata": {"name": "p", "namespace": "b"}});
        assert_eq!(decide(&other_ns, &owner(), true), Claim::Ignore);
    }

    #[test]
    fn changes_map_to_the_controller_or_to_selecting_owners() {
        let kind = crate::kinds::REPLICA_SET;
        let never = |_: Option<&str>| -> Vec<Arc<Value>> { panic!("owned objects need no lookup") };
        let owned = json!({"metadata": {"namespace": "a", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]}});
        assert_eq!(
            owner_keys(&owned, &kind, never),
            [ObjectKey::new(Some("a"), "web-1")]
        );
        let by_job = json!({"metadata": {"namespace": "a", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}]}});
        assert!(owner_keys(&by_job, &kind, never).is_empty());
        let orphan = json!({"metadata": {"namespace": "a", "labels": {"app": "web"}}});
        let candidates = |ns: Option<&str>| {
            assert_eq!(ns, Some("a"));
            vec![
                Arc::new(
                    json!({"metadata": {"namespace": "a", "name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
                ),
                Arc::new(
                    json!({"metadata": {"namespace": "a", "name": "db"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}),
                ),
                Arc::new(
                    json!({"metadata": {"namespace": "a", "name": "all"}, "spec": {"selector": {}}}),
                ),
            ]
        };
        assert_eq!(
            owner_keys(&orphan, &kind, candidates),
            [ObjectKey::new(Some("a"), "web")]
        );
    }

    #[test]
    fn references_are_added_and_removed_by_uid() {
        let kind = crate::kinds::REPLICA_SET;
        let r = controller_ref(&kind, &owner());
        assert_eq!(r["blockOwnerDeletion"], json!(true));
        assert_eq!(r["apiVersion"], json!("apps/v1"));
        let orphan = json!({"metadata": {"name": "p"}});
        let adopted = with_owner(&orphan, &r);
        assert!(is_controlled_by(&adopted, "u1"));
        let released = without_owner(&adopted, "u1");
        assert!(released.at("/metadata/ownerReferences").is_none());
        assert_eq!(controller_of(&released), None);
    }
}
