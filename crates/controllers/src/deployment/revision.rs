//! Revisions and the annotations a Deployment keeps on its ReplicaSets (upstream
//! `SetNewReplicaSetAnnotations`, `SetReplicasAnnotations` and friends in
//! `pkg/controller/deployment/util/deployment_util.go`). `kubectl rollout history` lists the
//! revision annotations; `kubectl rollout undo` copies an old ReplicaSet's template back, and the
//! controller then gives that ReplicaSet the next revision, remembering the old one in
//! `revision-history`.

use ledge_api::Pointer as _;
use serde_json::{Map, Value, json};

/// The rollout sequence number of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a reused ReplicaSet served.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// kubectl's client-side apply record, never copied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The extensions/v1beta1 rollback request, never copied.
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Longest `revision-history` value kept (upstream `maxRevHistoryLengthInChars`).
const MAX_HISTORY_CHARS: usize = 2000;

/// Annotations that belong to the controller, not to the user, and are not copied from a
/// Deployment to its ReplicaSets.
fn skipped(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    if !meta.get("annotations").is_some_and(Value::is_object) {
        meta.insert("annotations".into(), json!({}));
    }
    meta.get_mut("annotations")?.as_object_mut()
}

fn set(obj: &mut Value, key: &str, value: &str) -> bool {
    let Some(a) = annotations_mut(obj) else {
        return false;
    };
    if a.get(key).and_then(Value::as_str) == Some(value) {
        return false;
    }
    a.insert(key.into(), json!(value));
    true
}

/// Record the sizes a ReplicaSet was given for; true if anything changed.
pub fn set_replicas_annotations(rs: &mut Value, desired: i32, max: i32) -> bool {
    let a = set(rs, DESIRED_REPLICAS, &desired.to_string());
    let b = set(rs, MAX_REPLICAS, &max.to_string());
    a || b
}

/// Whether the size annotations differ from these values.
pub fn replicas_annotations_differ(rs: &Value, desired: i32, max: i32) -> bool {
    crate::meta::annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || crate::meta::annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Bring the new ReplicaSet's annotations up to date: copy the Deployment's own annotations,
/// raise its revision to `new_revision` (never lower it), keep the revision it had in
/// `revision-history` when it is being reused (rollback), and, for one about to be created,
/// record its sizes. True if anything changed.
pub fn set_new_rs_annotations(
    deployment: &Value,
    rs: &mut Value,
    new_revision: i64,
    exists: bool,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    if let Some(src) = deployment
        .at("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in src {
            if !skipped(k)
                && let Some(v) = v.as_str()
            {
                changed |= set(rs, k, v);
            }
        }
    }
    let old = crate::meta::annotation(rs, REVISION).map(str::to_string);
    let old_number = match &old {
        None => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            // Upstream leaves a ReplicaSet with a malformed revision alone.
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        changed |= set(rs, REVISION, &new_revision.to_string());
        if let Some(old) = old {
            let history = crate::meta::annotation(rs, REVISION_HISTORY).unwrap_or("");
            let mut revisions: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            revisions.push(&old);
            // Drop the oldest entries beyond the length limit.
            while revisions.join(",").len() > MAX_HISTORY_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            let joined = revisions.join(",");
            changed |= set(rs, REVISION_HISTORY, &joined);
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, desired, max);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_replica_set_gets_the_next_revision_and_user_annotations() {
        let d = json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "v2",
            REVISION: "1", LAST_APPLIED: "{}"}}});
        let mut rs = json!({"metadata": {"name": "web-abc"}});
        assert!(set_new_rs_annotations(&d, &mut rs, 2, false, 3, 4));
        assert_eq!(
            rs["metadata"]["annotations"],
            json!({"kubernetes.io/change-cause": "v2", REVISION: "2",
                   DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"})
        );
        assert!(
            !set_new_rs_annotations(&d, &mut rs, 2, true, 3, 4),
            "idempotent"
        );
    }

    #[test]
    fn a_reused_replica_set_remembers_its_old_revisions() {
        let d = json!({"metadata": {}});
        let mut rs = json!({"metadata": {"annotations": {REVISION: "1"}}});
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true, 3, 4));
        assert_eq!(rs["metadata"]["annotations"][REVISION], json!("3"));
        assert_eq!(rs["metadata"]["annotations"][REVISION_HISTORY], json!("1"));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true, 3, 4));
        assert_eq!(
            rs["metadata"]["annotations"][REVISION_HISTORY],
            json!("1,3")
        );
        // Never lowered.
        assert!(!set_new_rs_annotations(&d, &mut rs, 4, true, 3, 4));
        assert_eq!(rs["metadata"]["annotations"][REVISION], json!("5"));
    }

    #[test]
    fn size_annotations() {
        let mut rs = json!({"metadata": {}});
        assert!(replicas_annotations_differ(&rs, 3, 4));
        assert!(set_replicas_annotations(&mut rs, 3, 4));
        assert!(!replicas_annotations_differ(&rs, 3, 4));
        assert!(!set_replicas_annotations(&mut rs, 3, 4));
    }
}
