//! NodeResourcesLeastAllocated: prefer nodes with the most free CPU and memory, equally
//! weighted (upstream `NodeResourcesFit` with the `LeastAllocated` strategy). Pods without
//! requests count as upstream's defaults (100m CPU, 200 MiB) so they still spread.

use crate::framework::{CycleState, NodeInfo, PodInfo, ScorePlugin};

/// Upstream plugin name.
pub const NAME: &str = "NodeResourcesLeastAllocated";

/// Request assumed for a container without a CPU request (upstream `DefaultMilliCPURequest`).
const DEFAULT_MILLI_CPU: i64 = 100;
/// Request assumed without a memory request (upstream `DefaultMemoryRequest`).
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// The plugin.
pub struct LeastAllocated;

fn free_fraction(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * 100 / allocatable
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = if pod.requests.milli_cpu == 0 {
            DEFAULT_MILLI_CPU
        } else {
            pod.requests.milli_cpu
        };
        let mem = if pod.requests.memory == 0 {
            DEFAULT_MEMORY
        } else {
            pod.requests.memory
        };
        let c = free_fraction(node.requested.milli_cpu + cpu, node.allocatable.milli_cpu);
        let m = free_fraction(node.requested.memory + mem, node.allocatable.memory);
        (c + m) / 2
    }
}
