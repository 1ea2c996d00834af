//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints keep away pods that do not
//! tolerate them (upstream `v1helper.TolerationsTolerateTaint`).

use serde_json::Value;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "TaintToleration";

/// The plugin.
pub struct TaintToleration;

/// A node taint (`spec.taints[]`); fields that are not strings read as "".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    /// `key`.
    pub key: String,
    /// `value`.
    pub value: String,
    /// `effect`: `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl Taint {
    /// Decode one `spec.taints[]` entry.
    pub fn from_json(v: &Value) -> Self {
        Self {
            key: text(v, "key"),
            value: text(v, "value"),
            effect: text(v, "effect"),
        }
    }
}

/// A pod toleration (`spec.tolerations[]`); fields that are not strings read as "".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Toleration {
    /// `key` ("" matches every key, with `Exists`).
    pub key: String,
    /// `operator`: `Equal` (the default) or `Exists`.
    pub operator: String,
    /// `value`.
    pub value: String,
    /// `effect` ("" matches every effect).
    pub effect: String,
}

impl Toleration {
    /// Decode one `spec.tolerations[]` entry.
    pub fn from_json(v: &Value) -> Self {
        Self {
            key: text(v, "key"),
            operator: text(v, "operator"),
            value: text(v, "value"),
            effect: text(v, "effect"),
        }
    }

    /// Whether this toleration matches the taint (upstream `Toleration.ToleratesTaint`).
    pub fn matches(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => !self.key.is_empty() && self.value == taint.value,
            _ => false,
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Whether any of the tolerations matches the taint.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.matches(taint))
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated(pod, node) {
            None => Status::Fit,
            Some(taint) => {
                let shown = if taint.value.is_empty() {
                    taint.key.clone()
                } else {
                    format!("{}: {}", taint.key, taint.value)
                };
                Status::Unresolvable(format!("node(s) had untolerated taint {{{shown}}}"))
            }
        }
    }
}

/// The first `NoSchedule`/`NoExecute` taint of the node the pod does not tolerate (upstream
/// `FindMatchingUntoleratedTaint` with the do-not-schedule filter).
pub fn untolerated<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerates(&pod.tolerations, taint)
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
