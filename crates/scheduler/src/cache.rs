//! The scheduler's view of the cluster: one [`NodeInfo`] per node with the pods bound (or
//! assumed) to it, kept up to date incrementally from pod and node changes so a scheduling
//! decision never scans every pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use crate::framework::{HostPort, NodeInfo, Resources, host_ports};

/// Where a pod is accounted.
struct Placed {
    node: String,
    requests: Resources,
    ports: Vec<HostPort>,
}

/// Node infos plus the pods accounted on them.
#[derive(Default)]
pub struct Cache {
    nodes: HashMap<String, NodeInfo>,
    pods: HashMap<String, Placed>,
}

/// `ns/name` of a pod.
pub fn pod_key(pod: &Value) -> String {
    let s = |f: &str| {
        pod.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    format!("{}/{}", s("namespace"), s("name"))
}

/// Whether a pod still occupies its node (bound and not finished).
fn occupies(pod: &Value) -> Option<&str> {
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    (!matches!(phase, "Succeeded" | "Failed")).then_some(node)
}

impl Cache {
    /// Add or replace a node.
    pub fn set_node(&mut self, node: Arc<Value>) {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let allocatable = Resources::allocatable(&node);
        let entry = self.nodes.entry(name.clone()).or_insert_with(|| NodeInfo {
            node: node.clone(),
            name: name.clone(),
            allocatable,
            requested: Resources::default(),
            used_ports: HashSet::new(),
            pods: HashSet::new(),
        });
        entry.node = node;
        entry.allocatable = allocatable;
    }

    /// Forget a node (its pods stay accounted in case it comes back).
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Account a pod where it runs now (or nowhere, if it is unbound, finished or deleted).
    pub fn set_pod(&mut self, pod: &Value, deleted: bool) {
        let key = pod_key(pod);
        self.unplace(&key);
        if deleted {
            return;
        }
        if let Some(node) = occupies(pod) {
            self.place(
                key,
                node.to_string(),
                Resources::requested_by(pod),
                host_ports(pod),
            );
        }
    }

    /// Account a pod on `node` before the binding is observed (upstream "assume").
    pub fn assume(&mut self, pod: &Value, node: &str) {
        let key = pod_key(pod);
        self.unplace(&key);
        self.place(
            key,
            node.to_string(),
            Resources::requested_by(pod),
            host_ports(pod),
        );
    }

    /// Undo an assumption after a failed binding.
    pub fn forget(&mut self, pod: &Value) {
        self.unplace(&pod_key(pod));
    }

    fn place(&mut self, key: String, node: String, requests: Resources, ports: Vec<HostPort>) {
        if let Some(info) = self.nodes.get_mut(&node) {
            info.requested.add(&requests);
            info.used_ports.extend(ports.iter().cloned());
            info.pods.insert(key.clone());
        }
        self.pods.insert(
            key,
            Placed {
                node,
                requests,
                ports,
            },
        );
    }

    fn unplace(&mut self, key: &str) {
        if let Some(p) = self.pods.remove(key)
            && let Some(info) = self.nodes.get_mut(&p.node)
        {
            info.requested.sub(&p.requests);
            for port in &p.ports {
                info.used_ports.remove(port);
            }
            info.pods.remove(key);
        }
    }

    /// Every node.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
