//! Every plugin, one file each, and the default profile that lists them (upstream
//! `pkg/scheduler/framework/plugins/registry.go` and the default `KubeSchedulerProfile`).

pub mod balanced_allocation;
pub mod default_preemption;
pub mod image_locality;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod runtime_class;
pub mod taint_toleration;

use crate::framework::{FilterPlugin, ScorePlugin};

/// The filters of the default profile, in upstream's order (RuntimeClass, ledge's own, right
/// after the node-level checks: a node without the runtime can never run the pod).
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(runtime_class::RuntimeClass),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(pod_topology_spread::PodTopologySpread),
    ]
}

/// The scores of the default profile, with upstream's weights (each plugin's `weight`).
pub fn default_scores() -> Vec<Box<dyn ScorePlugin>> {
    vec![
        Box::new(least_allocated::LeastAllocated),
        Box::new(balanced_allocation::BalancedAllocation),
        Box::new(image_locality::ImageLocality),
        Box::new(node_affinity::NodeAffinity),
        Box::new(pod_topology_spread::PodTopologySpread),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use serde_json::Value;

    use crate::framework::{NodeInfo, PodInfo};

    pub fn node(v: Value) -> NodeInfo {
        NodeInfo::new(Arc::new(v))
    }

    pub fn pod(v: Value) -> PodInfo {
        PodInfo::new(Arc::new(v))
    }
}
