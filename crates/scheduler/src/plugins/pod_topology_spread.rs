//! PodTopologySpread: `spec.topologySpreadConstraints` spread matching pods evenly over
//! topology domains (zones, nodes, ...). `DoNotSchedule` constraints filter: placing the pod
//! in a domain must not make its count exceed the global minimum by more than `maxSkew`.
//! `ScheduleAnyway` constraints score: domains with fewer matching pods rank higher. Follows
//! upstream `pkg/scheduler/framework/plugins/podtopologyspread` (`filtering.go`,
//! `scoring.go`), including `matchLabelKeys`, `minDomains` and the node inclusion policies
//! (`nodeAffinityPolicy` default Honor, `nodeTaintsPolicy` default Ignore).
//!
//! Not here: upstream's cluster-level default constraints for pods without any (derived from
//! the Services and ReplicaSets selecting them).

use std::collections::{HashMap, HashSet};

use ledge_api::Pointer as _;
use ledge_api::selector::LabelSelector;
use serde_json::{Value, json};

use super::node_affinity::matches_required;
use super::taint_toleration::untolerated;
use crate::framework::{
    Cluster, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, PlacedPod, PodInfo, PreScore,
    ScorePlugin, Status,
};

/// Upstream plugin name.
pub const NAME: &str = "PodTopologySpread";

/// The well-known per-node topology key, counted per node when scoring.
const HOSTNAME: &str = "kubernetes.io/hostname";

/// Upstream's filter message.
pub const UNFIT: &str = "node(s) didn't match pod topology spread constraints";

/// The filter's message for a node without a constraint's topology key.
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The plugin.
pub struct PodTopologySpread;

/// One constraint, parsed.
struct Constraint {
    max_skew: i64,
    key: String,
    min_domains: i64,
    selector: LabelSelector,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    /// Whether a node's domain counts at all (upstream `matchNodeInclusionPolicies`).
    fn includes(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        (!self.honor_affinity || matches_required(pod, node))
            && (!self.honor_taints || untolerated(pod, node).is_none())
    }

    /// Matching, non-terminating pods of the pod's namespace on a node.
    fn count(&self, namespace: &str, node: &NodeInfo) -> i64 {
        node.pods
            .values()
            .filter(|p| self.counts(namespace, p) && !p.is_terminating())
            .count() as i64
    }

    fn counts(&self, namespace: &str, other: &PlacedPod) -> bool {
        other.namespace() == namespace && self.selector.matches_object(&other.pod)
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`.
fn constraints(pod: &PodInfo, action: &str) -> Vec<Constraint> {
    let list = pod
        .pod
        .at("/spec/topologySpreadConstraints")
        .and_then(Value::as_array);
    let labels = pod.pod.at("/metadata/labels");
    let mut out = Vec::new();
    for c in list.into_iter().flatten() {
        if c.get("whenUnsatisfiable").and_then(Value::as_str) != Some(action) {
            continue;
        }
        // matchLabelKeys: the pod's own values for these keys narrow the selector.
        let mut selector = c.get("labelSelector").cloned().unwrap_or(Value::Null);
        let keys = c.get("matchLabelKeys").and_then(Value::as_array);
        for key in keys.into_iter().flatten().filter_map(Value::as_str) {
            if let Some(v) = labels.and_then(|l| l.get(key)) {
                if selector.is_null() {
                    selector = json!({});
                }
                let exprs = &mut selector["matchExpressions"];
                if !exprs.is_array() {
                    *exprs = json!([]);
                }
                if let Some(list) = exprs.as_array_mut() {
                    list.push(json!({"key": key, "operator": "In", "values": [v]}));
                }
            }
        }
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        out.push(Constraint {
            max_skew: c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1),
            key: s("topologyKey").to_string(),
            min_domains: c.get("minDomains").and_then(Value::as_i64).unwrap_or(1),
            selector: LabelSelector::from_json(&selector)
                .unwrap_or_else(|_| LabelSelector::nothing()),
            honor_affinity: s("nodeAffinityPolicy") != "Ignore",
            honor_taints: s("nodeTaintsPolicy") == "Honor",
        });
    }
    out
}

/// Whether a node has every constraint's topology key.
fn has_all_keys(constraints: &[Constraint], node: &NodeInfo) -> bool {
    constraints.iter().all(|c| node.label(&c.key).is_some())
}

/// What the filter computed over every node (upstream `preFilterState`).
#[derive(Clone)]
struct FilterState {
    constraints: std::sync::Arc<Vec<Constraint>>,
    /// (constraint index, domain) → matching pods.
    counts: HashMap<(usize, String), i64>,
    /// Per constraint: the smallest count over its domains, and how many domains there are.
    min: Vec<i64>,
    domains: Vec<i64>,
}

impl FilterState {
    fn refresh(&mut self) {
        for i in 0..self.constraints.len() {
            let of_i = self.counts.iter().filter(|((c, _), _)| *c == i);
            self.min[i] = of_i.clone().map(|(_, n)| *n).min().unwrap_or(0);
            self.domains[i] = of_i.count() as i64;
        }
    }

    fn update(&mut self, pod: &PodInfo, other: &PlacedPod, node: &NodeInfo, delta: i64) {
        if other.namespace() != pod.namespace() || !has_all_keys(&self.constraints, node) {
            return;
        }
        let constraints = self.constraints.clone();
        for (i, c) in constraints.iter().enumerate() {
            if !c.includes(pod, node) || !c.selector.matches_object(&other.pod) {
                continue;
            }
            let value = node.label(&c.key).unwrap_or("").to_string();
            *self.counts.entry((i, value)).or_default() += delta;
        }
        self.refresh();
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, pod: &PodInfo) -> bool {
        pod.pod
            .at("/spec/topologySpreadConstraints")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    }

    fn pre_filter(&self, cx: &Cluster, pod: &PodInfo, state: &mut CycleState) -> Status {
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return Status::Fit;
        }
        let mut counts = HashMap::new();
        let ns = pod.namespace();
        for node in cx.nodes {
            if !has_all_keys(&constraints, node) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(pod, node) {
                    continue;
                }
                let value = node.label(&c.key).unwrap_or("").to_string();
                *counts.entry((i, value)).or_default() += c.count(ns, node);
            }
        }
        let n = constraints.len();
        let mut s = FilterState {
            constraints: std::sync::Arc::new(constraints),
            counts,
            min: vec![0; n],
            domains: vec![0; n],
        };
        s.refresh();
        state.write(s);
        Status::Fit
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<FilterState>() else {
            return Status::Fit;
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.key) else {
                return Status::Unresolvable(MISSING_LABEL.into());
            };
            let self_match = i64::from(c.selector.matches_object(&pod.pod));
            // Fewer domains than minDomains: the global minimum counts as 0.
            let min = if s.domains[i] < c.min_domains {
                0
            } else {
                s.min[i]
            };
            let matched = s.counts.get(&(i, value.to_string())).copied().unwrap_or(0);
            if matched + self_match - min > c.max_skew {
                return Status::Unfit(UNFIT.into());
            }
        }
        Status::Fit
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, other: &PlacedPod, node: &NodeInfo) {
        if let Some(s) = state.read::<FilterState>() {
            let mut s = s.clone();
            s.update(pod, other, node, 1);
            state.write(s);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        other: &PlacedPod,
        node: &NodeInfo,
    ) {
        if let Some(s) = state.read::<FilterState>() {
            let mut s = s.clone();
            s.update(pod, other, node, -1);
            state.write(s);
        }
    }
}

/// What scoring computed over the feasible nodes (upstream `preScoreState`).
struct ScoreState {
    constraints: Vec<Constraint>,
    ignored: HashSet<String>,
    /// (constraint index, domain) → matching pods, for domains of feasible nodes.
    counts: HashMap<(usize, String), i64>,
    weights: Vec<f64>,
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        cx: &Cluster,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        state: &mut CycleState,
    ) -> PreScore {
        let constraints = constraints(pod, "ScheduleAnyway");
        if constraints.is_empty() {
            return PreScore::Skip;
        }
        let mut ignored = HashSet::new();
        let mut counts = HashMap::new();
        let mut sizes = vec![0usize; constraints.len()];
        for node in feasible {
            if !has_all_keys(&constraints, node) {
                ignored.insert(node.name.clone());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.key == HOSTNAME {
                    continue;
                }
                let value = node.label(&c.key).unwrap_or("").to_string();
                if counts.insert((i, value), 0).is_none() {
                    sizes[i] += 1;
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&sizes)
            .map(|(c, size)| {
                let size = if c.key == HOSTNAME {
                    feasible.len() - ignored.len()
                } else {
                    *size
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let ns = pod.namespace();
        for node in cx.nodes {
            if !has_all_keys(&constraints, node) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.key == HOSTNAME || !c.includes(pod, node) {
                    continue;
                }
                let value = node.label(&c.key).unwrap_or("").to_string();
                if let Some(n) = counts.get_mut(&(i, value)) {
                    *n += c.count(ns, node);
                }
            }
        }
        state.write(ScoreState {
            constraints,
            ignored,
            counts,
            weights,
        });
        PreScore::Run
    }

    /// Raw score: matching pods in the node's domains, weighted (lower is better until
    /// normalized).
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<ScoreState>() else {
            return 0;
        };
        if s.ignored.contains(&node.name) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.key) else {
                continue;
            };
            let count = if c.key == HOSTNAME {
                c.count(pod.namespace(), node)
            } else {
                s.counts.get(&(i, value.to_string())).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, scores: &mut [(&str, i64)]) {
        let Some(s) = state.read::<ScoreState>() else {
            return;
        };
        let counted = || scores.iter().filter(|(n, _)| !s.ignored.contains(*n));
        let min = counted().map(|(_, v)| *v).min().unwrap_or(0);
        let max = counted().map(|(_, v)| *v).max().unwrap_or(0);
        for (name, score) in scores.iter_mut() {
            *score = if s.ignored.contains(*name) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }

    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    /// Nodes a1, a2 in zone a, b1 in zone b, c1 in zone c; `pods` says how many pods
    /// labelled app=web run on each.
    fn zones(pods: [usize; 4]) -> Vec<NodeInfo> {
        let mut out = Vec::new();
        for ((name, zone), n) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c")]
            .into_iter()
            .zip(pods)
        {
            let mut info = node(json!({"metadata": {"name": name, "labels": {
                "zone": zone, "kubernetes.io/hostname": name}}}));
            for k in 0..n {
                info.add_pod(Arc::new(PlacedPod::new(Arc::new(json!({
                    "metadata": {"namespace": "d", "name": format!("{name}-{k}"), "labels": {"app": "web"}},
                    "spec": {"nodeName": name}})))));
            }
            out.push(info);
        }
        out
    }

    fn web(spread: Value) -> PodInfo {
        pod(
            json!({"metadata": {"namespace": "d", "name": "new", "labels": {"app": "web", "v": "2"}},
                   "spec": {"topologySpreadConstraints": [spread]}}),
        )
    }

    fn filter_all(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Status> {
        let images = HashMap::new();
        let none = |_: &str| None;
        let cx = Cluster {
            nodes,
            image_nodes: &images,
            runtime_class: &none,
        };
        let mut state = CycleState::default();
        assert_eq!(
            PodTopologySpread.pre_filter(&cx, p, &mut state),
            Status::Fit
        );
        nodes
            .iter()
            .map(|n| PodTopologySpread.filter(&state, p, n))
            .collect()
    }

    fn zone_spread(extra: Value) -> Value {
        let mut c = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                           "labelSelector": {"matchLabels": {"app": "web"}}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        c
    }

    #[test]
    fn do_not_schedule_keeps_skew_within_max() {
        // Zone a has 2 (a1: 1, a2: 1), b 1, c 0: only zone c is allowed.
        let nodes = zones([1, 1, 1, 0]);
        let fit = filter_all(&web(zone_spread(json!({}))), &nodes);
        let unfit = Status::Unfit(UNFIT.into());
        assert_eq!(fit, vec![unfit.clone(), unfit.clone(), unfit, Status::Fit]);
        // maxSkew 2 also admits zone b.
        let fit = filter_all(&web(zone_spread(json!({"maxSkew": 2}))), &nodes);
        assert_eq!(fit[2], Status::Fit);
    }

    #[test]
    fn missing_topology_key_is_unresolvable() {
        let mut nodes = zones([0, 0, 0, 0]);
        nodes.push(node(json!({"metadata": {"name": "bare"}})));
        let fit = filter_all(&web(zone_spread(json!({}))), &nodes);
        assert_eq!(fit[4], Status::Unresolvable(MISSING_LABEL.into()));
        assert_eq!(fit[0], Status::Fit);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_zero() {
        // Three zones each with one pod: skew 1 everywhere is fine, until minDomains 4
        // makes the global minimum 0 and every domain has 1 + 1 - 0 = 2 > 1.
        let nodes = zones([1, 0, 1, 1]);
        assert!(
            filter_all(&web(zone_spread(json!({}))), &nodes)
                .iter()
                .all(|s| *s == Status::Fit)
        );
        let fit = filter_all(&web(zone_spread(json!({"minDomains": 4}))), &nodes);
        assert!(
            fit.iter().all(|s| *s == Status::Unfit(UNFIT.into())),
            "{fit:?}"
        );
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        // Existing pods have no label v=2, so with matchLabelKeys [v] nothing matches and
        // every zone is fine.
        let nodes = zones([2, 2, 1, 0]);
        let fit = filter_all(&web(zone_spread(json!({"matchLabelKeys": ["v"]}))), &nodes);
        assert!(fit.iter().all(|s| *s == Status::Fit), "{fit:?}");
    }

    #[test]
    fn node_affinity_policy_decides_which_domains_count() {
        // The pod selects zones a and b only; zone c (0 pods) is not a domain under Honor, so
        // the minimum is zone b's 1 and zone b (1+1-1 = 1) fits.
        let nodes = zones([1, 1, 1, 0]);
        let base = web(zone_spread(json!({})));
        let with_affinity = |policy: &str| {
            let mut v = (*base.pod).clone();
            v["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]}}});
            v["spec"]["topologySpreadConstraints"][0]["nodeAffinityPolicy"] = json!(policy);
            pod(v)
        };
        let p = with_affinity("Honor");
        assert_eq!(filter_all(&p, &nodes)[2], Status::Fit);
        let p = with_affinity("Ignore");
        assert_eq!(filter_all(&p, &nodes)[2], Status::Unfit(UNFIT.into()));
    }

    #[test]
    fn removing_a_pod_updates_the_counts() {
        let nodes = zones([1, 1, 1, 0]);
        let images = HashMap::new();
        let none = |_: &str| None;
        let cx = Cluster {
            nodes: &nodes,
            image_nodes: &images,
            runtime_class: &none,
        };
        let p = web(zone_spread(json!({})));
        let mut state = CycleState::default();
        PodTopologySpread.pre_filter(&cx, &p, &mut state);
        assert_eq!(
            PodTopologySpread.filter(&state, &p, &nodes[2]),
            Status::Unfit(UNFIT.into())
        );
        // Zone c gains a pod (min becomes 1): zone b now fits.
        let mut c1 = nodes[3].clone();
        let extra = Arc::new(PlacedPod::new(Arc::new(
            json!({"metadata": {"namespace": "d", "name": "x", "labels": {"app": "web"}}}),
        )));
        c1.add_pod(extra.clone());
        PodTopologySpread.add_pod(&mut state, &p, &extra, &c1);
        assert_eq!(PodTopologySpread.filter(&state, &p, &nodes[2]), Status::Fit);
        PodTopologySpread.remove_pod(&mut state, &p, &extra, &c1);
        assert_eq!(
            PodTopologySpread.filter(&state, &p, &nodes[2]),
            Status::Unfit(UNFIT.into())
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let nodes = zones([2, 1, 1, 0]);
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let images = HashMap::new();
        let none = |_: &str| None;
        let cx = Cluster {
            nodes: &nodes,
            image_nodes: &images,
            runtime_class: &none,
        };
        let p = web(
            json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                           "labelSelector": {"matchLabels": {"app": "web"}}}),
        );
        let mut state = CycleState::default();
        PodTopologySpread.pre_score(&cx, &p, &refs, &mut state);
        let mut scores: Vec<(&str, i64)> = nodes
            .iter()
            .map(|n| (n.name.as_str(), PodTopologySpread.score(&state, &p, n)))
            .collect();
        // Weight ln(3 + 2) ≈ 1.609: zone a (3 pods) 5, zone b (1) 2, zone c (0) 0.
        assert_eq!(
            scores.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![5, 5, 2, 0]
        );
        PodTopologySpread.normalize(&state, &mut scores);
        // 100 * (max + min - s) / max.
        assert_eq!(
            scores.iter().map(|s| s.1).collect::<Vec<_>>(),
            vec![0, 0, 60, 100]
        );
    }
}
