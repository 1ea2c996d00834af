//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use serde_json::Value;

use super::taint_toleration::tolerates;
use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "NodeUnschedulable";

/// The plugin.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .pointer("/spec/unschedulable")
            .and_then(Value::as_bool)
            == Some(true);
        let taint =
            serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        if cordoned && !tolerates(&pod.pod, &taint) {
            return Status::Unresolvable("node(s) were unschedulable".into());
        }
        Status::Fit
    }
}
