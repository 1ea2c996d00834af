//! NodePorts: a pod's `hostPort`s must be free on the node (same protocol and port, and an
//! overlapping host IP: `0.0.0.0` overlaps everything).

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "NodePorts";

/// The plugin.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, pod: &PodInfo) -> bool {
        pod.ports.is_empty()
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (proto, ip, port) in &pod.ports {
            let clash = node.used_ports.iter().any(|(p2, ip2, port2)| {
                p2 == proto && port2 == port && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
            });
            if clash {
                return Status::Unfit(
                    "node(s) didn't have free ports for the requested pod ports".into(),
                );
            }
        }
        Status::Fit
    }
}
