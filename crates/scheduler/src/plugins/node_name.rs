//! NodeName: a pod that names a node in `spec.nodeName` fits only there (the scheduler only
//! sees such pods when a client set the field but the pod is not bound yet).

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "NodeName";

/// The plugin.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, pod: &PodInfo) -> bool {
        pod.node_name.is_empty()
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !pod.node_name.is_empty() && pod.node_name != node.name {
            Status::Unresolvable("node(s) didn't match the requested node name".into())
        } else {
            Status::Fit
        }
    }
}
