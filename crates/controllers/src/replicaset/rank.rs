//! Which pods a ReplicaSet deletes first when it scales down: the least valuable ones, in
//! upstream's order (`ActivePodsWithRanks.Less` in `pkg/controller/controller_utils.go`):
//! unassigned before assigned, Pending before Unknown before Running, not ready before ready,
//! lower `controller.kubernetes.io/pod-deletion-cost` first, pods doubled up on a node with
//! more related pods first, ready for less time first, more container restarts first, and
//! newest first. (Upstream's LogarithmicScaleDown buckets close timestamps and then compares
//! uids; here timestamps compare exactly, which keeps "most recently created first" literal.)

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{meta, pod};

/// The annotation that makes a pod cheaper (lower) or dearer (higher) to delete.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The `diff` pods of `pods` to delete. `related` are the active pods of the workload's
/// sibling ReplicaSets too (same owner), whose placement makes doubled-up pods cheaper.
pub fn pods_to_delete(pods: &[Arc<Value>], related: &[Arc<Value>], diff: usize) -> Vec<Arc<Value>> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| pod::is_active(p)) {
        *per_node
            .entry(meta::str_at(p, "/spec/nodeName"))
            .or_default() += 1;
    }
    let mut ranked: Vec<(usize, &Arc<Value>)> = pods
        .iter()
        .map(|p| {
            let rank = per_node
                .get(meta::str_at(p, "/spec/nodeName"))
                .copied()
                .unwrap_or(0);
            (rank, p)
        })
        .collect();
    ranked.sort_by(|(ra, a), (rb, b)| compare(a, *ra, b, *rb));
    ranked
        .into_iter()
        .take(diff)
        .map(|(_, p)| p.clone())
        .collect()
}

/// `Less` means "delete first".
fn compare(a: &Value, rank_a: usize, b: &Value, rank_b: usize) -> Ordering {
    let (node_a, node_b) = (
        meta::str_at(a, "/spec/nodeName"),
        meta::str_at(b, "/spec/nodeName"),
    );
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return if node_a.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let phase = |p: &Value| match pod::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let by_phase = phase(a).cmp(&phase(b));
    if by_phase != Ordering::Equal {
        return by_phase;
    }
    let (ready_a, ready_b) = (pod::is_ready(a), pod::is_ready(b));
    if ready_a != ready_b {
        return if ready_a {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    let by_cost = deletion_cost(a).cmp(&deletion_cost(b));
    if by_cost != Ordering::Equal {
        return by_cost;
    }
    if rank_a != rank_b {
        // More pods on the same node: delete first.
        return rank_b.cmp(&rank_a);
    }
    if ready_a && ready_b {
        let by_ready = later_or_zero_first(pod::ready_since(a), pod::ready_since(b));
        if by_ready != Ordering::Equal {
            return by_ready;
        }
    }
    let by_restarts = pod::max_restarts(b).cmp(&pod::max_restarts(a));
    if by_restarts != Ordering::Equal {
        return by_restarts;
    }
    later_or_zero_first(meta::created(a), meta::created(b))
}

/// Upstream `afterOrZero`: a missing time first, then the later time first.
fn later_or_zero_first(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    }
}

/// The pod's deletion cost (0 when missing or not an int32).
fn deletion_cost(p: &Value) -> i32 {
    meta::annotation(p, DELETION_COST)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pod::testing::pod;

    fn names(pods: &[Arc<Value>]) -> Vec<String> {
        pods.iter().map(|p| meta::name(p).to_string()).collect()
    }

    #[test]
    fn least_valuable_pods_go_first() {
        let pods: Vec<Arc<Value>> = [
            pod("running-ready-old", 0, "n1", "Running", Some(5)),
            pod("running-ready-new", 10, "n1", "Running", Some(15)),
            pod("running-not-ready", 0, "n1", "Running", None),
            pod("pending-assigned", 0, "n1", "Pending", None),
            pod("unassigned", 0, "", "Pending", None),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let order = names(&pods_to_delete(&pods, &pods, 4));
        assert_eq!(
            order,
            [
                "unassigned",
                "pending-assigned",
                "running-not-ready",
                "running-ready-new"
            ]
        );
    }

    #[test]
    fn newest_first_among_equals_and_deletion_cost_wins_over_age() {
        let a = pod("a", 0, "", "Pending", None);
        let b = pod("b", 20, "", "Pending", None);
        let mut c = pod("c", 10, "", "Pending", None);
        c["metadata"]["annotations"] = json!({DELETION_COST: "-5"});
        let pods: Vec<Arc<Value>> = [a, b, c].into_iter().map(Arc::new).collect();
        assert_eq!(names(&pods_to_delete(&pods, &pods, 2)), ["c", "b"]);
    }

    #[test]
    fn doubled_up_and_restarting_pods_go_first() {
        let lonely = pod("lonely", 0, "n1", "Running", Some(5));
        let crowded = pod("crowded", 0, "n2", "Running", Some(5));
        let neighbour = pod("neighbour", 0, "n2", "Running", Some(5));
        let pods: Vec<Arc<Value>> = [lonely.clone(), crowded.clone()]
            .into_iter()
            .map(Arc::new)
            .collect();
        let related: Vec<Arc<Value>> = [lonely, crowded, neighbour]
            .into_iter()
            .map(Arc::new)
            .collect();
        assert_eq!(names(&pods_to_delete(&pods, &related, 1)), ["crowded"]);

        let mut restarting = pod("restarting", 0, "n1", "Running", Some(5));
        restarting["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": 3}]);
        let steady = pod("steady", 0, "n1", "Running", Some(5));
        let pods: Vec<Arc<Value>> = [steady, restarting].into_iter().map(Arc::new).collect();
        assert_eq!(names(&pods_to_delete(&pods, &[], 1)), ["restarting"]);
    }

    #[test]
    fn all_pods_when_deleting_all() {
        let pods: Vec<Arc<Value>> = vec![Arc::new(pod("a", 0, "", "Pending", None))];
        assert_eq!(pods_to_delete(&pods, &[], 3).len(), 1);
    }
}
