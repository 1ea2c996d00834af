//! A ReplicaSet's status computed from its pods (upstream `calculateStatus` in
//! `pkg/controller/replicaset/replica_set_utils.go`): replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas (ready for `minReadySeconds`), observedGeneration and the
//! `ReplicaFailure` condition when creating or deleting pods failed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledge_api::Pointer as _;
use ledge_api::selector::LabelSelector;
use serde_json::{Map, Value, json};

use crate::{meta, pod};

/// Why managing replicas failed, for the `ReplicaFailure` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The error.
    pub message: String,
}

/// The status `rs` should have with `pods` (its claimed, active pods) at `now`.
pub fn compute(
    rs: &Value,
    pods: &[Arc<Value>],
    failure: Option<&ReplicaFailure>,
    now: DateTime<Utc>,
) -> Value {
    let template_labels = rs
        .at("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let template = LabelSelector::from_set(
        template_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))),
    );
    let min_ready = meta::int_at(rs, "/spec/minReadySeconds");
    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for p in pods {
        if template.matches_object(p) {
            fully_labeled += 1;
        }
        if pod::is_ready(p) {
            ready += 1;
            if pod::is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let mut status: Map<String, Value> = rs
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_failure = conditions
        .iter()
        .any(|c| c.get("type") == Some(&json!("ReplicaFailure")));
    match failure {
        Some(f) if !has_failure => conditions.push(json!({
            "type": "ReplicaFailure", "status": "True", "reason": f.reason,
            "message": f.message, "lastTransitionTime": meta::format_time(now),
        })),
        None if has_failure => {
            conditions.retain(|c| c.get("type") != Some(&json!("ReplicaFailure")));
        }
        _ => {}
    }
    // Upstream's JSON: `replicas` is always written, the other counts are omitted when zero.
    status.insert("replicas".into(), json!(pods.len()));
    for (field, n) in [
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        set_count(&mut status, field, n);
    }
    let generation = meta::generation(rs);
    if generation > 0 {
        status.insert("observedGeneration".into(), json!(generation));
    }
    if conditions.is_empty() {
        status.remove("conditions");
    } else {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    Value::Object(status)
}

/// Set an omitempty count.
pub fn set_count(status: &mut Map<String, Value>, field: &str, n: i64) {
    if n == 0 {
        status.remove(field);
    } else {
        status.insert(field.into(), json!(n));
    }
}

/// When to look again so that pods turning available after `minReadySeconds` are counted:
/// the earliest moment one of `pods` becomes available.
pub fn next_availability(
    rs: &Value,
    pods: &[Arc<Value>],
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let min_ready = meta::int_at(rs, "/spec/minReadySeconds");
    pods.iter()
        .filter_map(|p| pod::available_at(p, min_ready, now))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::testing::pod;

    fn rs(min_ready: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 3},
               "spec": {"replicas": 3, "minReadySeconds": min_ready,
                        "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}}},
               "status": {"replicas": 1}})
    }

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + chrono::Duration::seconds(s)
    }

    #[test]
    fn counts_labeled_ready_and_available_pods() {
        let mut labeled = pod("a", 0, "n", "Running", Some(10));
        labeled["metadata"]["labels"] = json!({"app": "web", "tier": "fe"});
        let pods: Vec<Arc<Value>> = [
            labeled,
            pod("b", 0, "n", "Running", Some(20)),
            pod("c", 0, "", "Pending", None),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let s = compute(&rs(5), &pods, None, at(21));
        assert_eq!(
            s,
            json!({"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                   "availableReplicas": 1, "observedGeneration": 3})
        );
        assert_eq!(next_availability(&rs(5), &pods, at(21)), Some(at(25)));
        assert_eq!(next_availability(&rs(0), &pods, at(21)), None);
    }

    #[test]
    fn failure_condition_is_added_once_and_cleared() {
        let f = ReplicaFailure {
            reason: "FailedCreate",
            message: "quota".into(),
        };
        let mut r = rs(0);
        r["status"] = compute(&r, &[], Some(&f), at(0));
        assert_eq!(
            r["status"]["conditions"][0]["reason"],
            json!("FailedCreate")
        );
        assert_eq!(r["status"]["replicas"], json!(0));
        let again = compute(&r, &[], Some(&f), at(5));
        assert_eq!(again["conditions"].as_array().map(Vec::len), Some(1));
        let cleared = compute(&r, &[], None, at(6));
        assert!(cleared.get("conditions").is_none());
    }
}
