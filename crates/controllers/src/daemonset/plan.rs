//! What to create and delete for a DaemonSet (upstream `manage`/`podsShouldBeOnNode` and
//! `rollingUpdate` in `pkg/controller/daemon`), decided from the nodes and the pods grouped by
//! the node they are for:
//! - [`manage`]: a pod on every node that should run one, none on nodes that may not keep one,
//!   finished pods replaced, duplicates removed (with surge, one old and one new may coexist);
//! - [`rolling`]: replace pods of old templates within `maxUnavailable`, or, with `maxSurge`,
//!   start new pods beside old ones and delete the old once the new are available.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledge_api::Pointer as _;
use serde_json::Value;

use super::history::HASH_LABEL;
use super::placement::should_run;
use crate::deployment::spec::IntOrPercent;
use crate::{meta, pod};

/// Pods per node name (each list oldest first).
pub type PodsByNode = BTreeMap<String, Vec<Arc<Value>>>;

/// Writes a DaemonSet needs.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a daemon pod on.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Value>>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

fn hash_of(p: &Value) -> &str {
    meta::str_at(p, &format!("/metadata/labels/{HASH_LABEL}"))
}

/// Whether the DaemonSet rolls out with surge (`RollingUpdate` and `maxSurge` > 0).
pub fn allows_surge(ds: &Value, desired: i32) -> bool {
    is_rolling(ds) && fenceposts(ds, desired).0 > 0
}

/// Whether the update strategy is `RollingUpdate` (the default).
pub fn is_rolling(ds: &Value) -> bool {
    !matches!(meta::str_at(ds, "/spec/updateStrategy/type"), "OnDelete")
}

/// `(maxSurge, maxUnavailable)` against `desired` nodes, both rounded up (upstream
/// `SurgeCount`, `UnavailableCount`); never both zero.
pub fn fenceposts(ds: &Value, desired: i32) -> (i32, i32) {
    let get = |f: &str, default: IntOrPercent| {
        ds.at(&format!("/spec/updateStrategy/rollingUpdate/{f}"))
            .and_then(IntOrPercent::parse)
            .unwrap_or(default)
            .scaled(desired, true)
            .max(0)
    };
    let surge = get("maxSurge", IntOrPercent::Int(0));
    let unavailable = get("maxUnavailable", IntOrPercent::Int(1));
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The pods to create and delete so that each node runs exactly what it should.
pub fn manage(ds: &Value, nodes: &[Arc<Value>], by_node: &PodsByNode, hash: &str) -> Plan {
    let desired = nodes.iter().filter(|n| should_run(ds, n).0).count();
    let surge = allows_surge(ds, i32::try_from(desired).unwrap_or(i32::MAX));
    let mut plan = Plan::default();
    for node in nodes {
        let name = meta::name(node);
        let (run, keep) = should_run(ds, node);
        let pods = by_node.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if run && pods.is_empty() {
            plan.create.push(name.to_string());
        } else if keep {
            let mut running = Vec::new();
            for p in pods {
                if meta::is_deleting(p) {
                    continue;
                }
                if matches!(pod::phase(p), "Failed" | "Succeeded") {
                    // A finished daemon pod is replaced (upstream deletes it; the next pass
                    // creates a new one).
                    plan.delete.push(p.clone());
                } else {
                    running.push(p.clone());
                }
            }
            if surge {
                // At most the oldest new and the oldest old pod stay; the rolling update
                // removes the old one once the new one is available.
                let (mut new_seen, mut old_seen) = (false, false);
                for p in running {
                    let seen = if hash_of(&p) == hash {
                        &mut new_seen
                    } else {
                        &mut old_seen
                    };
                    if *seen {
                        plan.delete.push(p);
                    } else {
                        *seen = true;
                    }
                }
            } else {
                plan.delete.extend(running.into_iter().skip(1));
            }
        } else {
            plan.delete
                .extend(pods.iter().filter(|p| !meta::is_deleting(p)).cloned());
        }
    }
    // Pods meant for nodes that no longer exist.
    for (name, pods) in by_node {
        if !nodes.iter().any(|n| meta::name(n) == name) {
            plan.delete
                .extend(pods.iter().filter(|p| !meta::is_deleting(p)).cloned());
        }
    }
    plan
}

/// The old pods to replace and the nodes to surge onto, one step of a rolling update (upstream
/// `rollingUpdate`). `by_node` holds only nodes that should run the DaemonSet.
pub fn rolling(ds: &Value, by_node: &PodsByNode, hash: &str, now: DateTime<Utc>) -> Plan {
    let desired = i32::try_from(by_node.len()).unwrap_or(i32::MAX);
    let (max_surge, max_unavailable) = fenceposts(ds, desired);
    let min_ready = meta::int_at(ds, "/spec/minReadySeconds");
    let available = |p: &Value| pod::is_available(p, min_ready, now);
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            match split(pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(&old) {
                        replace_now.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        plan.delete = replace_now;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let mut surging = 0;
    let mut surge_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in by_node {
        match split(pods, hash) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if available(&old) {
                    candidates.push(node.clone());
                } else {
                    surge_now.push(node.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if available(&new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    plan.create = surge_now;
    plan.create.extend(candidates.into_iter().take(room));
    plan
}

/// The new and the old running pod on a node; `None` when there are several of either
/// (upstream `findUpdatedPodsOnNode`).
type Split = Option<(Option<Arc<Value>>, Option<Arc<Value>>)>;

fn split(pods: &[Arc<Value>], hash: &str) -> Split {
    let (mut new, mut old) = (None, None);
    for p in pods {
        if meta::is_deleting(p) || matches!(pod::phase(p), "Failed" | "Succeeded") {
            continue;
        }
        let slot = if hash_of(p) == hash {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.clone());
    }
    Some((new, old))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pod::testing::pod;

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + chrono::Duration::seconds(s)
    }

    fn ds(surge: i64, unavailable: i64) -> Value {
        json!({"metadata": {"name": "d"}, "spec": {
            "template": {"spec": {}},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    fn node(name: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name}}))
    }

    fn dpod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Value> {
        let mut p = pod(name, 0, node, "Running", ready.then_some(0));
        p["metadata"]["labels"][HASH_LABEL] = json!(hash);
        Arc::new(p)
    }

    fn names(pods: &[Arc<Value>]) -> Vec<&str> {
        pods.iter().map(|p| meta::name(p)).collect()
    }

    #[test]
    fn every_node_gets_one_pod_and_strays_go() {
        let nodes = [node("n1"), node("n2")];
        let mut by_node = PodsByNode::new();
        by_node.insert(
            "n2".into(),
            vec![dpod("a", "n2", "h", true), dpod("b", "n2", "h", true)],
        );
        by_node.insert("gone".into(), vec![dpod("c", "gone", "h", true)]);
        let plan = manage(&ds(0, 1), &nodes, &by_node, "h");
        assert_eq!(plan.create, ["n1"]);
        assert_eq!(names(&plan.delete), ["b", "c"]);
    }

    #[test]
    fn finished_pods_are_replaced() {
        let nodes = [node("n1")];
        let mut failed = pod("f", 0, "n1", "Failed", None);
        failed["metadata"]["labels"][HASH_LABEL] = json!("h");
        let by_node = PodsByNode::from([("n1".to_string(), vec![Arc::new(failed)])]);
        let plan = manage(&ds(0, 1), &nodes, &by_node, "h");
        assert!(
            plan.create.is_empty(),
            "created once the failed pod is gone"
        );
        assert_eq!(names(&plan.delete), ["f"]);
    }

    #[test]
    fn rolling_replaces_within_max_unavailable() {
        let by_node = PodsByNode::from([
            ("n1".to_string(), vec![dpod("a", "n1", "old", true)]),
            ("n2".to_string(), vec![dpod("b", "n2", "old", true)]),
            ("n3".to_string(), vec![dpod("c", "n3", "old", false)]),
        ]);
        // The unavailable old pod goes at once and does not use up the budget.
        let plan = rolling(&ds(0, 1), &by_node, "new", at(10));
        assert_eq!(names(&plan.delete), ["c", "a"]);
        // A node waiting for its new pod counts as unavailable.
        let waiting = PodsByNode::from([
            ("n1".to_string(), vec![]),
            ("n2".to_string(), vec![dpod("b", "n2", "old", true)]),
        ]);
        assert!(rolling(&ds(0, 1), &waiting, "new", at(10)).is_empty());
        let done = PodsByNode::from([("n1".to_string(), vec![dpod("a", "n1", "new", true)])]);
        assert!(rolling(&ds(0, 1), &done, "new", at(10)).is_empty());
    }

    #[test]
    fn surge_starts_new_pods_first_and_then_retires_old_ones() {
        let by_node = PodsByNode::from([
            ("n1".to_string(), vec![dpod("a", "n1", "old", true)]),
            ("n2".to_string(), vec![dpod("b", "n2", "old", true)]),
        ]);
        let plan = rolling(&ds(1, 0), &by_node, "new", at(10));
        assert_eq!(plan.create, ["n1"]);
        assert!(plan.delete.is_empty());
        let surged = PodsByNode::from([
            (
                "n1".to_string(),
                vec![dpod("a", "n1", "old", true), dpod("a2", "n1", "new", false)],
            ),
            ("n2".to_string(), vec![dpod("b", "n2", "old", true)]),
        ]);
        assert!(rolling(&ds(1, 0), &surged, "new", at(10)).is_empty());
        let ready = PodsByNode::from([
            (
                "n1".to_string(),
                vec![dpod("a", "n1", "old", true), dpod("a2", "n1", "new", true)],
            ),
            ("n2".to_string(), vec![dpod("b", "n2", "old", true)]),
        ]);
        let plan = rolling(&ds(1, 0), &ready, "new", at(10));
        assert_eq!(names(&plan.delete), ["a"]);
        assert_eq!(
            plan.create,
            ["n2"],
            "an available new pod frees its surge slot at once"
        );
        // manage keeps one old and one new pod per node while surging.
        let nodes = [node("n1"), node("n2")];
        assert!(manage(&ds(1, 0), &nodes, &ready, "new").is_empty());
    }

    #[test]
    fn fenceposts_round_up_and_never_both_zero() {
        let mut d = ds(0, 0);
        assert_eq!(fenceposts(&d, 10), (0, 1));
        d["spec"]["updateStrategy"]["rollingUpdate"] =
            json!({"maxSurge": "25%", "maxUnavailable": "10%"});
        assert_eq!(fenceposts(&d, 10), (3, 1));
        d["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert!(!is_rolling(&d));
    }
}
