//! The scheduling framework's vocabulary: what a plugin sees of a pod and a node, and what it
//! answers (upstream `pkg/scheduler/framework`).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

/// Amounts of the resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    /// Add another amount.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
    }

    /// Subtract another amount.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
    }

    fn read(map: Option<&Value>) -> Resources {
        let get = |k: &str, milli: bool| {
            map.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .and_then(|q| {
                    if milli {
                        ledge_api::quantity::milli_value(q).ok()
                    } else {
                        ledge_api::quantity::value(q).ok()
                    }
                })
                .unwrap_or(0)
        };
        Resources {
            milli_cpu: get("cpu", true),
            memory: get("memory", false),
            ephemeral_storage: get("ephemeral-storage", false),
            pods: get("pods", false),
        }
    }

    /// A node's allocatable resources (falling back to capacity).
    pub fn allocatable(node: &Value) -> Resources {
        let status = node.get("status");
        let alloc = status
            .and_then(|s| s.get("allocatable"))
            .or_else(|| status.and_then(|s| s.get("capacity")));
        Resources::read(alloc)
    }

    /// What a pod requests: the sum of its containers, or the largest init container if
    /// larger (upstream `computePodResourceRequest`), plus one pod.
    pub fn requested_by(pod: &Value) -> Resources {
        let sum = |list: &str| {
            let mut total = Resources::default();
            for c in pod
                .pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                total.add(&Resources::read(c.pointer("/resources/requests")));
            }
            total
        };
        let mut r = sum("containers");
        for c in pod
            .pointer("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = Resources::read(c.pointer("/resources/requests"));
            r.milli_cpu = r.milli_cpu.max(i.milli_cpu);
            r.memory = r.memory.max(i.memory);
            r.ephemeral_storage = r.ephemeral_storage.max(i.ephemeral_storage);
        }
        r.pods = 1;
        r
    }
}

/// A host port a pod uses.
pub type HostPort = (String, String, i64);

/// The host ports a pod asks for: (protocol, host IP, port).
pub fn host_ports(pod: &Value) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64).filter(|n| *n > 0) {
                let proto = p
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string();
                let ip = p
                    .get("hostIP")
                    .and_then(Value::as_str)
                    .unwrap_or("0.0.0.0")
                    .to_string();
                out.push((proto, ip, hp));
            }
        }
    }
    out
}

/// What the scheduler knows about one node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The Node object.
    pub node: Arc<Value>,
    /// Node name.
    pub name: String,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of requests of pods on the node (bound or assumed).
    pub requested: Resources,
    /// Host ports in use.
    pub used_ports: HashSet<HostPort>,
    /// Pods on the node (key `ns/name`).
    pub pods: HashSet<String>,
}

/// A plugin's verdict on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The pod fits.
    Fit,
    /// It does not, for this reason (as counted in FailedScheduling messages).
    Unfit(String),
}

/// The pod being scheduled, with what plugins need precomputed.
pub struct PodInfo {
    /// The Pod object.
    pub pod: Arc<Value>,
    /// Its requests.
    pub requests: Resources,
    /// Its host ports.
    pub ports: Vec<HostPort>,
}

impl PodInfo {
    /// Precompute a pod's needs.
    pub fn new(pod: Arc<Value>) -> Self {
        let requests = Resources::requested_by(&pod);
        let ports = host_ports(&pod);
        Self {
            pod,
            requests,
            ports,
        }
    }
}

/// Decides whether a pod may run on a node.
pub trait FilterPlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// The verdict for one node.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks feasible nodes, 0 (worst) to 100 (best).
pub trait ScorePlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// The score for one node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Relative weight.
    fn weight(&self) -> i64 {
        1
    }
}
