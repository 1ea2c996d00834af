//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred node
//! affinity scores them (weights summed, normalised to 0–100 by the framework's max).

use serde_json::Value;

use crate::framework::{
    Cluster, CycleState, FilterPlugin, NodeInfo, PodInfo, PreScore, ScorePlugin, Status,
};

/// Upstream plugin name.
pub const NAME: &str = "NodeAffinity";

/// The plugin.
pub struct NodeAffinity;

/// One `nodeSelectorTerm`: all its expressions must hold (matchFields supports metadata.name).
fn term_matches(term: &Value, node: &NodeInfo) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
        return false;
    }
    let check = |e: &Value, actual: Option<&str>| {
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let num = |s: &str| s.parse::<i64>().ok();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            "Gt" => {
                matches!((actual.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a > b)
            }
            "Lt" => {
                matches!((actual.and_then(num), values.first().and_then(|v| num(v))), (Some(a), Some(b)) if a < b)
            }
            _ => false,
        }
    };
    exprs.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        check(e, node.label(key))
    }) && fields.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        check(e, (key == "metadata.name").then_some(node.name.as_str()))
    })
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, pod: &PodInfo) -> bool {
        pod.node_selector.is_empty() && pod.required_node_terms.is_none()
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if matches_required(pod, node) {
            Status::Fit
        } else {
            Status::Unresolvable("node(s) didn't match Pod's node affinity/selector".into())
        }
    }
}

/// Whether a node satisfies a pod's `nodeSelector` and required node affinity (upstream
/// `RequiredNodeAffinity.Match`, also used by PodTopologySpread's `nodeAffinityPolicy`).
pub fn matches_required(pod: &PodInfo, node: &NodeInfo) -> bool {
    for (k, v) in &pod.node_selector {
        if node.label(k) != v.as_deref() {
            return false;
        }
    }
    pod.required_node_terms
        .as_ref()
        .is_none_or(|terms| terms.iter().any(|t| term_matches(t, node)))
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_score(
        &self,
        _cx: &Cluster,
        pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _state: &mut CycleState,
    ) -> PreScore {
        if pod.preferred_node_terms.is_empty() {
            PreScore::Skip
        } else {
            PreScore::Run
        }
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let prefs = &pod.preferred_node_terms;
        let total: i64 = prefs.iter().map(|(w, _)| w).sum();
        if total == 0 {
            return 0;
        }
        let matched: i64 = prefs
            .iter()
            .filter(|(_, t)| term_matches(t, node))
            .map(|(w, _)| w)
            .sum();
        matched * 100 / total
    }

    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn selector_and_required_affinity() {
        let n = node(json!({"metadata": {"name": "a", "labels": {"zone": "z1", "gpu": "2"}}}));
        assert_eq!(
            NodeAffinity.filter(
                &CycleState::default(),
                &pod(json!({"spec": {"nodeSelector": {"zone": "z1"}}})),
                &n
            ),
            Status::Fit
        );
        assert!(matches!(
            NodeAffinity.filter(
                &CycleState::default(),
                &pod(json!({"spec": {"nodeSelector": {"zone": "z2"}}})),
                &n
            ),
            Status::Unresolvable(_)
        ));
        let gt = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]}]}}}}});
        assert_eq!(
            NodeAffinity.filter(&CycleState::default(), &pod(gt), &n),
            Status::Fit
        );
        let name = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}});
        assert!(matches!(
            NodeAffinity.filter(&CycleState::default(), &pod(name), &n),
            Status::Unresolvable(_)
        ));
    }

    #[test]
    fn preferred_affinity_scores_by_weight() {
        let n = node(json!({"metadata": {"name": "a", "labels": {"zone": "z1"}}}));
        let p = pod(
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
            {"weight": 70, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]}}}}),
        );
        assert_eq!(
            ScorePlugin::score(&NodeAffinity, &CycleState::default(), &p, &n),
            30
        );
    }
}
