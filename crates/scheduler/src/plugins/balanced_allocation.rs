//! NodeResourcesBalancedAllocation: prefer nodes whose CPU and memory would be used in equal
//! proportion after placing the pod — score `(1 - std) * 100`, where `std` is the standard
//! deviation of the requested/allocatable fractions (upstream `balanced_allocation.go`, which
//! counts actual requests, not the non-zero defaults LeastAllocated assumes). A pod requesting
//! neither is skipped (scores 0 everywhere), as upstream's PreScore does for best-effort pods.

use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, PodInfo, ScorePlugin};

/// Upstream plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The plugin.
pub struct BalancedAllocation;

/// `(1 - std(fractions)) * 100`, each fraction capped at 1; resources a node does not
/// declare are left out.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    // Runs once per feasible node: no allocation.
    let fractions = || {
        requested
            .iter()
            .zip(allocatable)
            .filter(|(_, a)| **a > 0)
            .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
    };
    let n = fractions().count();
    let std = match n {
        0 | 1 => 0.0,
        // The common case, as upstream: the std of two values is half their distance.
        2 => {
            let mut f = fractions();
            let (a, b) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
            ((a - b) / 2.0).abs()
        }
        n => {
            let mean = fractions().sum::<f64>() / n as f64;
            let var = fractions().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64;
            var.sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return 0;
        }
        let (r, a) = (&node.requested, &node.allocatable);
        balanced_score(
            &[
                r.milli_cpu + pod.requests.milli_cpu,
                r.memory + pod.requests.memory,
            ],
            &[a.milli_cpu, a.memory],
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn equal_fractions_score_highest() {
        assert_eq!(balanced_score(&[2000, 2 << 30], &[4000, 4 << 30]), 100);
        // cpu 0.75, memory 0.25: std 0.25.
        assert_eq!(balanced_score(&[3000, 1 << 30], &[4000, 4 << 30]), 75);
        // Three resources: fractions 0, 0.5, 1 → std √(1/6) ≈ 0.408.
        assert_eq!(balanced_score(&[0, 1, 2], &[2, 2, 2]), 59);
        // Over-commitment is capped at 1.
        assert_eq!(balanced_score(&[8000, 4 << 30], &[4000, 4 << 30]), 100);
    }

    #[test]
    fn pod_requests_are_added_to_the_node() {
        let mut n = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi"}}}),
        );
        n.requested.memory = 2 << 30;
        let p = pod(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        assert_eq!(
            BalancedAllocation.score(&CycleState::default(), &p, &n),
            100
        );
        let none = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(
            BalancedAllocation.score(&CycleState::default(), &none, &n),
            0
        );
    }
}
