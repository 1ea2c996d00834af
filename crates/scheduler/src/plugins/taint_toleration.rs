//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints keep away pods that do not
//! tolerate them (upstream `v1helper.TolerationsTolerateTaint`).

use serde_json::Value;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "TaintToleration";

/// The plugin.
pub struct TaintToleration;

/// Whether one toleration matches one taint.
fn matches(toleration: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (t_effect, taint_effect) = (s(toleration, "effect"), s(taint, "effect"));
    if !t_effect.is_empty() && t_effect != taint_effect {
        return false;
    }
    let key = s(toleration, "key");
    if !key.is_empty() && key != s(taint, "key") {
        return false;
    }
    match s(toleration, "operator").as_str() {
        "Exists" => true,
        "" | "Equal" => !key.is_empty() && s(toleration, "value") == s(taint, "value"),
        _ => false,
    }
}

/// Whether a pod tolerates a taint.
pub fn tolerates(pod: &Value, taint: &Value) -> bool {
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .is_some_and(|ts| ts.iter().any(|t| matches(t, taint)))
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated(&pod.pod, node) {
            None => Status::Fit,
            Some(taint) => {
                let key = taint.get("key").and_then(Value::as_str).unwrap_or("");
                let value = taint.get("value").and_then(Value::as_str).unwrap_or("");
                let shown = if value.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}: {value}")
                };
                Status::Unresolvable(format!("node(s) had untolerated taint {{{shown}}}"))
            }
        }
    }
}

/// The first `NoSchedule`/`NoExecute` taint of the node the pod does not tolerate (upstream
/// `FindMatchingUntoleratedTaint` with the do-not-schedule filter).
pub fn untolerated<'a>(pod: &Value, node: &'a NodeInfo) -> Option<&'a Value> {
    let taints = node.node.pointer("/spec/taints").and_then(Value::as_array);
    taints.into_iter().flatten().find(|taint| {
        let effect = taint.get("effect").and_then(Value::as_str).unwrap_or("");
        matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(pod, taint)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn taints_need_matching_tolerations() {
        let n = node(
            json!({"metadata": {"name": "a"}, "spec": {"taints": [{"key": "edge", "value": "x", "effect": "NoSchedule"}]}}),
        );
        let plain = pod(json!({"spec": {}}));
        assert_eq!(
            TaintToleration.filter(&CycleState::default(), &plain, &n),
            Status::Unresolvable("node(s) had untolerated taint {edge: x}".into())
        );
        let equal = pod(
            json!({"spec": {"tolerations": [{"key": "edge", "operator": "Equal", "value": "x"}]}}),
        );
        assert_eq!(
            TaintToleration.filter(&CycleState::default(), &equal, &n),
            Status::Fit
        );
        let exists = pod(json!({"spec": {"tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(
            TaintToleration.filter(&CycleState::default(), &exists, &n),
            Status::Fit
        );
        let wrong_effect = pod(
            json!({"spec": {"tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoExecute"}]}}),
        );
        assert!(matches!(
            TaintToleration.filter(&CycleState::default(), &wrong_effect, &n),
            Status::Unresolvable(_)
        ));
    }
}
