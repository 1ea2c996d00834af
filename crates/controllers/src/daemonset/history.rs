//! A DaemonSet's ControllerRevisions (upstream `pkg/controller/daemon/update.go`
//! `constructHistory`): one revision per template the DaemonSet has had, named
//! `<daemonset>-<hash>`, labelled `controller-revision-hash`, holding the template as the
//! strategic-merge patch `kubectl rollout undo` applies, numbered in rollout order.
//! `kubectl rollout history ds/<name>` lists them.

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::deployment::hash;
use crate::meta;

/// The label naming a pod's (and a revision's) template hash.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The DaemonSet annotation holding the generation its template last changed at.
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";
/// The pod label holding the template generation it was created from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// The hash of the DaemonSet's current template.
pub fn current_hash(ds: &Value) -> String {
    let template = ds.at("/spec/template").cloned().unwrap_or_default();
    let collisions = ds
        .at("/status/collisionCount")
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok());
    hash::template_hash(&template, collisions)
}

/// A revision's `data`: the template as a patch replacing the whole template (upstream
/// `getPatch`).
pub fn data(ds: &Value) -> Value {
    let mut template = ds.at("/spec/template").cloned().unwrap_or_default();
    meta::set(&mut template, &["$patch"], json!("replace"));
    json!({"spec": {"template": template}})
}

/// Whether `revision` holds the DaemonSet's current template.
pub fn matches(revision: &Value, ds: &Value) -> bool {
    let mut held = revision
        .at("/data/spec/template")
        .cloned()
        .unwrap_or_default();
    if let Some(m) = held.as_object_mut() {
        m.remove("$patch");
    }
    let current = ds.at("/spec/template").cloned().unwrap_or_default();
    hash::equal_ignore_hash(&held, &current)
}

/// A revision's number.
pub fn number(revision: &Value) -> i64 {
    revision
        .get("revision")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// A new revision of the current template, numbered `number` and controlled through
/// `owner_ref`.
pub fn new_revision(ds: &Value, hash: &str, number: i64, owner_ref: Value) -> Value {
    let mut labels = ds
        .at("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), json!(hash));
    let name = meta::name(ds);
    // Upstream `ControllerRevisionName`: the prefix is cut so the name stays valid.
    let prefix: String = name.chars().take(223).collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{prefix}-{hash}"),
            "namespace": meta::namespace(ds).unwrap_or(""),
            "labels": labels,
            "ownerReferences": [owner_ref],
        },
        "data": data(ds),
        "revision": number,
    })
}

/// Old revisions to delete (upstream `cleanupHistory`): beyond `limit`, oldest first, never
/// one whose hash a live pod still carries.
pub fn to_delete<'a>(old: &'a [Value], live_hashes: &[&str], limit: usize) -> Vec<&'a Value> {
    let mut sorted: Vec<&Value> = old.iter().collect();
    sorted.sort_by_key(|r| number(r));
    let mut excess = sorted.len().saturating_sub(limit);
    let mut out = Vec::new();
    for r in sorted {
        if excess == 0 {
            break;
        }
        let h = meta::str_at(r, &format!("/metadata/labels/{HASH_LABEL}"));
        if live_hashes.contains(&h) {
            continue;
        }
        out.push(r);
        excess -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(image: &str) -> Value {
        json!({"metadata": {"name": "agent", "namespace": "a"},
               "spec": {"template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn revisions_hold_the_template_and_match_it() {
        let d = ds("i:1");
        let h = current_hash(&d);
        let r = new_revision(&d, &h, 3, json!({"uid": "u"}));
        assert_eq!(r["metadata"]["name"], json!(format!("agent-{h}")));
        assert_eq!(r["metadata"]["labels"][HASH_LABEL], json!(h));
        assert_eq!(r["data"]["spec"]["template"]["$patch"], json!("replace"));
        assert_eq!(number(&r), 3);
        assert!(matches(&r, &d));
        assert!(!matches(&r, &ds("i:2")));
        assert_ne!(current_hash(&ds("i:2")), h);
    }

    #[test]
    fn history_keeps_the_limit_and_revisions_in_use() {
        let rev = |n: i64, h: &str| json!({"metadata": {"labels": {HASH_LABEL: h}}, "revision": n});
        let old = [rev(3, "c"), rev(1, "a"), rev(2, "b")];
        let names = |v: Vec<&Value>| v.iter().map(|r| number(r)).collect::<Vec<_>>();
        assert_eq!(names(to_delete(&old, &[], 1)), [1, 2]);
        assert_eq!(names(to_delete(&old, &["a"], 1)), [2, 3]);
        assert!(to_delete(&old, &[], 10).is_empty());
    }
}
