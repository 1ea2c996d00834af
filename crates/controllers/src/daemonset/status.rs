//! A DaemonSet's status from its nodes and pods (upstream `updateDaemonSetStatus`): how many
//! nodes should run it, run it, run it ready, available and up to date, and how many run it
//! but should not. `kubectl rollout status ds/<name>` waits on these.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::history::HASH_LABEL;
use super::placement::should_run;
use super::plan::PodsByNode;
use crate::{meta, pod};

/// The status `ds` should have.
pub fn compute(
    ds: &Value,
    nodes: &[std::sync::Arc<Value>],
    by_node: &PodsByNode,
    hash: &str,
    now: DateTime<Utc>,
) -> Value {
    let min_ready = meta::int_at(ds, "/spec/minReadySeconds");
    let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) =
        (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let (run, _) = should_run(ds, node);
        // Finished pods that are being deleted no longer count (upstream
        // `includeDeletedTerminal = false`).
        let pods: Vec<&Value> = by_node
            .get(meta::name(node))
            .into_iter()
            .flatten()
            .map(|p| &**p)
            .filter(|p| !(meta::is_deleting(p) && matches!(pod::phase(p), "Failed" | "Succeeded")))
            .collect();
        let scheduled = !pods.is_empty();
        if run {
            desired += 1;
            if !scheduled {
                continue;
            }
            current += 1;
            // The oldest pod stands for the node (the list is oldest first).
            let p = pods[0];
            if pod::is_ready(p) {
                ready += 1;
                if pod::is_available(p, min_ready, now) {
                    available += 1;
                }
            }
            if meta::str_at(p, &format!("/metadata/labels/{HASH_LABEL}")) == hash {
                updated += 1;
            }
        } else if scheduled {
            misscheduled += 1;
        }
    }
    let mut status: Map<String, Value> = ds
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (field, n) in [
        ("currentNumberScheduled", current),
        ("numberMisscheduled", misscheduled),
        ("desiredNumberScheduled", desired),
        ("numberReady", ready),
        ("updatedNumberScheduled", updated),
        ("numberAvailable", available),
    ] {
        status.insert(field.into(), json!(n));
    }
    let unavailable = desired - available;
    if unavailable > 0 {
        status.insert("numberUnavailable".into(), json!(unavailable));
    } else {
        status.remove("numberUnavailable");
    }
    status.insert("observedGeneration".into(), json!(meta::generation(ds)));
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pod::testing::pod;

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + chrono::Duration::seconds(s)
    }

    #[test]
    fn counts_follow_nodes_and_their_oldest_pod() {
        let ds = json!({"metadata": {"generation": 4}, "spec": {
            "template": {"spec": {"nodeSelector": {"run": "yes"}}}}});
        let node = |name: &str, run: &str| {
            Arc::new(json!({"metadata": {"name": name, "labels": {"run": run}}}))
        };
        let nodes = [
            node("n1", "yes"),
            node("n2", "yes"),
            node("n3", "no"),
            node("n4", "yes"),
        ];
        let dp = |name: &str, n: &str, hash: &str, ready: Option<i64>| {
            let mut p = pod(name, 0, n, "Running", ready);
            p["metadata"]["labels"][HASH_LABEL] = json!(hash);
            Arc::new(p)
        };
        let by_node = PodsByNode::from([
            ("n1".to_string(), vec![dp("a", "n1", "new", Some(0))]),
            ("n2".to_string(), vec![dp("b", "n2", "old", None)]),
            ("n3".to_string(), vec![dp("c", "n3", "new", Some(0))]),
        ]);
        let s = compute(&ds, &nodes, &by_node, "new", at(10));
        assert_eq!(
            s,
            json!({"currentNumberScheduled": 2, "numberMisscheduled": 1, "desiredNumberScheduled": 3,
                   "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1,
                   "numberUnavailable": 2, "observedGeneration": 4})
        );
    }
}
