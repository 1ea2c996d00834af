//! NodeResourcesFit: the pod's requests must fit in the node's allocatable resources minus
//! what its pods already request; each shortage is reported (`Insufficient cpu`, `Too many pods`).

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Status};

/// Upstream plugin name.
pub const NAME: &str = "NodeResourcesFit";

/// The plugin.
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let (a, u, r) = (&node.allocatable, &node.requested, &pod.requests);
        // Every shortage, in upstream's order (`fitsRequest`), one reason each.
        let short = [
            (a.pods > 0 && u.pods + 1 > a.pods, "Too many pods"),
            (
                r.milli_cpu > 0 && u.milli_cpu + r.milli_cpu > a.milli_cpu,
                "Insufficient cpu",
            ),
            (
                r.memory > 0 && u.memory + r.memory > a.memory,
                "Insufficient memory",
            ),
            (
                r.ephemeral_storage > 0
                    && u.ephemeral_storage + r.ephemeral_storage > a.ephemeral_storage,
                "Insufficient ephemeral-storage",
            ),
        ];
        let reasons: Vec<&str> = short.iter().filter(|(s, _)| *s).map(|(_, r)| *r).collect();
        if reasons.is_empty() {
            Status::Fit
        } else {
            Status::Unfit(reasons.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::framework::Resources;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn reports_the_short_resource() {
        let mut n = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}}),
        );
        n.requested = Resources {
            milli_cpu: 1500,
            memory: 0,
            ephemeral_storage: 0,
            pods: 3,
        };
        let small = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&CycleState::default(), &small, &n),
            Status::Fit
        );
        let big = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]}}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&CycleState::default(), &big, &n),
            Status::Unfit("Insufficient cpu".into())
        );
        let mem = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "2Gi"}}}]}}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&CycleState::default(), &mem, &n),
            Status::Unfit("Insufficient memory".into())
        );
        let both = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}}),
        );
        let status = NodeResourcesFit.filter(&CycleState::default(), &both, &n);
        assert_eq!(
            status.reasons().collect::<Vec<_>>(),
            ["Insufficient cpu", "Insufficient memory"]
        );
    }
}
