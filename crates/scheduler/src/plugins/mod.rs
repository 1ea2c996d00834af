//! Every plugin, one file each, and the default profile that lists them (upstream
//! `pkg/scheduler/framework/plugins/registry.go`).

pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod taint_toleration;

use crate::framework::{FilterPlugin, ScorePlugin};

/// The filters of the default profile, in upstream's order.
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
    ]
}

/// The scores of the default profile.
pub fn default_scores() -> Vec<Box<dyn ScorePlugin>> {
    vec![
        Box::new(least_allocated::LeastAllocated),
        Box::new(node_affinity::NodeAffinity),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashSet;
    use std::sync::Arc;

    use serde_json::Value;

    use crate::framework::{NodeInfo, PodInfo, Resources};

    pub fn node(v: Value) -> NodeInfo {
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("n")
            .to_string();
        NodeInfo {
            allocatable: Resources::allocatable(&v),
            node: Arc::new(v),
            name,
            requested: Resources::default(),
            used_ports: HashSet::new(),
            pods: HashSet::new(),
        }
    }

    pub fn pod(v: Value) -> PodInfo {
        PodInfo::new(Arc::new(v))
    }
}
