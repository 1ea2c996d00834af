//! DefaultPreemption (PostFilter): when a pod fits nowhere, find a node where evicting
//! lower-priority pods makes it fit, evicting as few and as unimportant pods as possible
//! (upstream `defaultpreemption` and `framework/preemption`).
//!
//! For each node whose rejection eviction could change (not `Unresolvable`): remove every
//! lower-priority pod; if the pod then fits, add them back one by one, most important first
//! (PodDisruptionBudget-protected pods before the others), keeping each that still leaves room
//! — the rest are the victims. Among candidate nodes the winner has, in order: the fewest
//! PodDisruptionBudget violations, the lowest highest-victim priority, the smallest sum of
//! victim priorities, the fewest victims, the latest start among its highest-priority victims.
//!
//! This file decides; the scheduler carries the decision out (DisruptionTarget condition,
//! deletion with the victims' grace period, `Preempted` events, `nominatedNodeName`).

use std::collections::HashMap;
use std::sync::Arc;

use ledge_api::Pointer as _;
use ledge_api::selector::LabelSelector;
use serde_json::Value;

use crate::framework::{Cluster, CycleState, NodeInfo, PlacedPod, PodInfo, Status, str_at};
use crate::schedule::{FitError, Profile, run_filters};

/// Upstream plugin name.
pub const NAME: &str = "DefaultPreemption";

/// A node's verdict when eviction cannot help there.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// A node's verdict when it has nothing to evict.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// The DisruptionTarget condition's reason on victims.
pub const DISRUPTION_REASON: &str = "PreemptionByScheduler";

/// Where to make room, and whom to evict.
#[derive(Debug)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// Pods to evict, most important first.
    pub victims: Vec<Arc<PlacedPod>>,
    /// How many victims are protected by an exhausted PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// What preemption decided.
#[derive(Debug)]
pub enum Outcome {
    /// Evict these and nominate the node.
    Preempt(Candidate),
    /// The pod may not preempt now; keep any nomination (message after `preemption: `).
    NotEligible(String),
    /// No node would fit even after evictions; clear any nomination.
    NoCandidate(String),
}

/// Whether a pod is being deleted because the scheduler preempted it.
pub fn terminating_by_preemption(pod: &Value) -> bool {
    pod.at("/metadata/deletionTimestamp").is_some()
        && pod
            .at("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    str_at(c, "/type") == "DisruptionTarget"
                        && str_at(c, "/reason") == DISRUPTION_REASON
                })
            })
}

/// Decide how `pod` could preempt, given each node's filter verdict.
pub fn preempt(
    profile: &Profile,
    cx: &Cluster,
    pod: &PodInfo,
    state: Option<&CycleState>,
    statuses: &HashMap<String, Status>,
    pdbs: &[Arc<Value>],
) -> Outcome {
    if str_at(&pod.pod, "/spec/preemptionPolicy") == "Never" {
        return Outcome::NotEligible("not eligible due to preemptionPolicy=Never.".into());
    }
    let nominated = str_at(&pod.pod, "/status/nominatedNodeName");
    if !nominated.is_empty()
        && !matches!(statuses.get(nominated), Some(Status::Unresolvable(_)))
        && let Some(node) = cx.nodes.iter().find(|n| n.name == nominated)
        && node
            .pods
            .values()
            .any(|p| p.priority < pod.priority && terminating_by_preemption(&p.pod))
    {
        // The room this pod made is still being freed.
        return Outcome::NotEligible(
            "not eligible due to a terminating pod on the nominated node.".into(),
        );
    }
    let mut verdicts = FitError {
        total: cx.nodes.len(),
        ..Default::default()
    };
    let mut candidates = Vec::new();
    // Upstream stops after max(10% of the nodes, 100) candidates.
    let enough = (cx.nodes.len() / 10).max(100);
    for node in cx.nodes {
        let helpful = matches!(statuses.get(&node.name), Some(Status::Unfit(_)));
        let verdict = match state {
            Some(state) if helpful && candidates.len() < enough => {
                match select_victims(profile, state, pod, node, pdbs) {
                    Ok(c) => {
                        candidates.push(c);
                        continue;
                    }
                    Err(s) => s,
                }
            }
            _ => Status::Unresolvable(NOT_HELPFUL.into()),
        };
        verdicts.statuses.insert(node.name.clone(), verdict);
    }
    match pick(candidates) {
        Some(c) => Outcome::Preempt(c),
        None => Outcome::NoCandidate(format!("preemption: {}", verdicts.message())),
    }
}

/// The fewest, least important pods to evict from `node` so `pod` fits there.
fn select_victims(
    profile: &Profile,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    pdbs: &[Arc<Value>],
) -> Result<Candidate, Status> {
    let mut potential: Vec<Arc<PlacedPod>> = node
        .pods
        .values()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::Unresolvable(NO_VICTIMS.into()));
    }
    let mut info = node.clone();
    let mut state = state.clone();
    for p in &potential {
        info.remove_pod(&p.key);
        for f in &profile.filters {
            f.remove_pod(&mut state, pod, p, &info);
        }
    }
    match run_filters(profile, &state, pod, &info) {
        Status::Fit => {}
        rejected => return Err(rejected),
    }
    // Most important first: higher priority, then the earlier started (upstream
    // `MoreImportantPod`).
    potential.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.start_time().cmp(b.start_time()))
    });
    let violating = pdb_violations(&potential, pdbs);
    let (protected, unprotected): (Vec<_>, Vec<_>) =
        potential.into_iter().zip(violating).partition(|(_, v)| *v);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (p, violates) in protected.into_iter().chain(unprotected) {
        info.add_pod(p.clone());
        for f in &profile.filters {
            f.add_pod(&mut state, pod, &p, &info);
        }
        if run_filters(profile, &state, pod, &info) != Status::Fit {
            info.remove_pod(&p.key);
            for f in &profile.filters {
                f.remove_pod(&mut state, pod, &p, &info);
            }
            pdb_violations += usize::from(violates);
            victims.push(p);
        }
    }
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// For each pod (in order), whether evicting it — after the ones before it — exceeds a
/// PodDisruptionBudget's `status.disruptionsAllowed` (upstream `filterPodsWithPDBViolation`).
pub fn pdb_violations(pods: &[Arc<PlacedPod>], pdbs: &[Arc<Value>]) -> Vec<bool> {
    let selectors: Vec<Option<LabelSelector>> = pdbs
        .iter()
        .map(|pdb| {
            let sel = pdb.at("/spec/selector")?;
            LabelSelector::from_json(sel)
                .ok()
                .filter(|s| !s.is_empty() && !s.matches_nothing())
        })
        .collect();
    let mut allowed: Vec<i64> = pdbs
        .iter()
        .map(|p| {
            p.at("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        })
        .collect();
    pods.iter()
        .map(|p| {
            let name = str_at(&p.pod, "/metadata/name");
            let mut violated = false;
            for (i, pdb) in pdbs.iter().enumerate() {
                let Some(sel) = &selectors[i] else { continue };
                if str_at(pdb, "/metadata/namespace") != p.namespace()
                    || !sel.matches_object(&p.pod)
                {
                    continue;
                }
                // Already counted by the disruption controller.
                if pdb
                    .at("/status/disruptedPods")
                    .and_then(|d| d.get(name))
                    .is_some()
                {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
            violated
        })
        .collect()
}

/// Upstream `pickOneNodeForPreemption`.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    // A node that needs no eviction at all wins outright.
    if let Some(i) = candidates.iter().position(|c| c.victims.is_empty()) {
        return candidates.into_iter().nth(i);
    }
    let highest = |c: &Candidate| c.victims.iter().map(|v| v.priority).max().unwrap_or(0);
    // Priorities shifted to be positive, as upstream, so fewer victims sum lower.
    let sum = |c: &Candidate| {
        c.victims
            .iter()
            .map(|v| i128::from(v.priority) + i128::from(i32::MAX) + 1)
            .sum::<i128>()
    };
    let earliest_of_highest = |c: &Candidate| {
        let top = highest(c);
        c.victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| v.start_time().to_string())
            .min()
            .unwrap_or_default()
    };
    candidates.into_iter().min_by(|a, b| {
        a.pdb_violations
            .cmp(&b.pdb_violations)
            .then_with(|| highest(a).cmp(&highest(b)))
            .then_with(|| sum(a).cmp(&sum(b)))
            .then_with(|| a.victims.len().cmp(&b.victims.len()))
            // The latest start wins: reverse.
            .then_with(|| earliest_of_highest(b).cmp(&earliest_of_highest(a)))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};
    use crate::schedule::{Nominated, Rotation, schedule};

    fn running(name: &str, node: &str, prio: i64, cpu: &str, start: &str) -> Arc<PlacedPod> {
        Arc::new(PlacedPod::new(Arc::new(json!({
            "metadata": {"namespace": "d", "name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "priority": prio,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"startTime": start}}))))
    }

    fn full_node(name: &str, pods: &[Arc<PlacedPod>]) -> NodeInfo {
        let mut n = node(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}));
        for p in pods {
            n.add_pod(p.clone());
        }
        n
    }

    fn incoming(prio: i64, cpu: &str, policy: &str) -> PodInfo {
        pod(json!({"metadata": {"namespace": "d", "name": "vip"},
                   "spec": {"priority": prio, "preemptionPolicy": policy,
                            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo], pdbs: &[Arc<Value>]) -> Outcome {
        let images = HashMap::new();
        let cx = Cluster {
            nodes,
            image_nodes: &images,
            runtime_class: &|_| None,
        };
        let profile = Profile::default();
        let Err(u) = schedule(
            &profile,
            &cx,
            p,
            &Nominated::new(),
            &mut Rotation::default(),
        ) else {
            panic!("the pod fits without preemption")
        };
        preempt(&profile, &cx, p, u.state.as_ref(), &u.fit.statuses, pdbs)
    }

    fn victims(o: &Outcome) -> (String, Vec<String>) {
        match o {
            Outcome::Preempt(c) => (
                c.node.clone(),
                c.victims.iter().map(|v| v.key.clone()).collect(),
            ),
            other => panic!("no preemption: {other:?}"),
        }
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let a = full_node(
            "a",
            &[
                running("a-low", "a", 1, "1", "2024-01-01T00:00:00Z"),
                running("a-mid", "a", 5, "1", "2024-01-01T00:00:00Z"),
            ],
        );
        let (node, v) = victims(&run(&incoming(10, "1", "PreemptLowerPriority"), &[a], &[]));
        assert_eq!((node.as_str(), v), ("a", vec!["d/a-low".to_string()]));
    }

    #[test]
    fn prefers_the_node_with_the_lowest_victim_priority() {
        let a = full_node("a", &[running("a1", "a", 5, "2", "2024-01-01T00:00:00Z")]);
        let b = full_node("b", &[running("b1", "b", 3, "2", "2024-01-01T00:00:00Z")]);
        let (node, _) = victims(&run(&incoming(10, "1", ""), &[a, b], &[]));
        assert_eq!(node, "b");
    }

    #[test]
    fn then_fewest_victims_then_latest_start() {
        let a = full_node(
            "a",
            &[
                running("a1", "a", 1, "1", "2024-01-01T00:00:00Z"),
                running("a2", "a", 1, "1", "2024-01-01T00:00:00Z"),
            ],
        );
        let b = full_node("b", &[running("b1", "b", 1, "2", "2024-01-01T00:00:00Z")]);
        let c = full_node("c", &[running("c1", "c", 1, "2", "2024-06-01T00:00:00Z")]);
        // The pod needs 2 CPUs: a needs two victims, b and c one each; c's started later.
        let (node, _) = victims(&run(&incoming(10, "2", ""), &[a, b, c], &[]));
        assert_eq!(node, "c");
    }

    #[test]
    fn pdb_protected_pods_are_spared_when_possible() {
        let a = full_node(
            "a",
            &[
                running("guarded", "a", 1, "1", "2024-01-01T00:00:00Z"),
                running("free", "a", 1, "1", "2024-01-01T00:00:00Z"),
            ],
        );
        let pdb = Arc::new(json!({"metadata": {"namespace": "d", "name": "p"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0}}));
        let (_, v) = victims(&run(
            &incoming(10, "1", ""),
            std::slice::from_ref(&a),
            std::slice::from_ref(&pdb),
        ));
        assert_eq!(v, vec!["d/free".to_string()]);
        // Prefer a node whose victims violate no budget, even with more of them.
        let b = full_node(
            "b",
            &[running("guarded", "b", 1, "2", "2024-01-01T00:00:00Z")],
        );
        let c = full_node(
            "c",
            &[
                running("c1", "c", 1, "1", "2024-01-01T00:00:00Z"),
                running("c2", "c", 1, "1", "2024-01-01T00:00:00Z"),
            ],
        );
        let (node, _) = victims(&run(&incoming(10, "2", ""), &[b, c], &[pdb]));
        assert_eq!(node, "c");
    }

    #[test]
    fn never_policy_and_higher_priority_pods_do_not_preempt() {
        let a = full_node("a", &[running("a1", "a", 1, "2", "2024-01-01T00:00:00Z")]);
        assert!(matches!(
            run(&incoming(10, "1", "Never"), std::slice::from_ref(&a), &[]),
            Outcome::NotEligible(m) if m == "not eligible due to preemptionPolicy=Never."
        ));
        match run(&incoming(0, "1", ""), &[a], &[]) {
            Outcome::NoCandidate(m) => assert_eq!(
                m,
                "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unresolvable_nodes_are_not_helpful() {
        let mut a = full_node("a", &[running("a1", "a", 1, "2", "2024-01-01T00:00:00Z")]);
        a.set_node(Arc::new(
            json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}),
        ));
        match run(&incoming(10, "1", ""), &[a], &[]) {
            Outcome::NoCandidate(m) => assert_eq!(
                m,
                "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            ),
            other => panic!("{other:?}"),
        }
    }
}
