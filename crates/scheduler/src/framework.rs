//! The scheduling framework's vocabulary: what a plugin sees of a pod and a node, and what it
//! answers (upstream `pkg/scheduler/framework`).

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::Value;

use crate::plugins::runtime_class::offered_runtimes;
use crate::plugins::taint_toleration::{Taint, Toleration};

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
    /// larger, plus its RuntimeClass overhead (`spec.overhead`) and one pod (upstream
    /// `computePodResourceRequest`).
    pub fn requested_by(pod: &Value) -> Resources {
        let sum = |list: &str| {
            let mut total = Resources::default();
            for c in pod
                .at(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                total.add(&Resources::read(c.at("/resources/requests")));
            }
            total
        };
        let mut r = sum("containers");
        for c in pod
            .at("/spec/initContainers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = Resources::read(c.at("/resources/requests"));
            r.milli_cpu = r.milli_cpu.max(i.milli_cpu);
            r.memory = r.memory.max(i.memory);
            r.ephemeral_storage = r.ephemeral_storage.max(i.ephemeral_storage);
        }
        r.add(&Resources::read(pod.at("/spec/overhead")));
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
        .at("/spec/containers")
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

/// A pod accounted on a node (bound, assumed, or nominated), with what plugins read of it.
#[derive(Debug)]
pub struct PlacedPod {
    /// `ns/name`.
    pub key: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The Pod object.
    pub pod: Arc<Value>,
    /// Its requests.
    pub requests: Resources,
    /// Its host ports.
    pub ports: Vec<HostPort>,
    /// `spec.priority`.
    pub priority: i64,
}

impl PlacedPod {
    /// Precompute what the cache and plugins need of a pod.
    pub fn new(pod: Arc<Value>) -> Self {
        Self {
            key: crate::cache::pod_key(&pod),
            namespace: str_at(&pod, "/metadata/namespace").to_string(),
            requests: Resources::requested_by(&pod),
            ports: host_ports(&pod),
            priority: crate::queue::priority(&pod),
            pod,
        }
    }

    /// The same, from what a scheduling cycle already computed of the pod.
    pub fn from_info(info: &PodInfo) -> Self {
        Self {
            key: info.key.clone(),
            namespace: info.namespace.clone(),
            requests: info.requests,
            ports: info.ports.clone(),
            priority: info.priority,
            pod: info.pod.clone(),
        }
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Whether the pod is being deleted.
    pub fn is_terminating(&self) -> bool {
        self.pod.at("/metadata/deletionTimestamp").is_some()
    }

    /// When it started (`status.startTime`, else its creation), RFC 3339: comparable as text.
    pub fn start_time(&self) -> &str {
        match str_at(&self.pod, "/status/startTime") {
            "" => str_at(&self.pod, "/metadata/creationTimestamp"),
            t => t,
        }
    }
}

/// A string field, or "".
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.at(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What the scheduler knows about one node: the fields filters and scores read, decoded once
/// when the Node changes (upstream's typed `NodeInfo` snapshot) so that a scheduling cycle
/// never walks the node's JSON.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The Node object.
    pub node: Arc<Value>,
    /// Node name.
    pub name: String,
    /// `metadata.labels` (string values only, as a label selector sees them).
    pub labels: HashMap<String, String>,
    /// Runtime handlers the node offers (`node.ledge.dev/runtime.<handler>=true` labels),
    /// for the RuntimeClass filter.
    pub runtimes: Vec<String>,
    /// The same as bits (see `plugins::runtime_class`), for the per-node check.
    pub runtime_bits: u64,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of requests of pods on the node (bound or assumed).
    pub requested: Resources,
    /// Host ports in use.
    pub used_ports: HashSet<HostPort>,
    /// Pods on the node, by `ns/name`.
    pub pods: HashMap<String, Arc<PlacedPod>>,
    /// Images the node holds (`status.images[].names`), with their size in bytes.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    /// A node with no pods accounted yet.
    pub fn new(node: Arc<Value>) -> Self {
        let mut info = Self {
            node: node.clone(),
            name: String::new(),
            labels: HashMap::new(),
            runtimes: Vec::new(),
            runtime_bits: 0,
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            used_ports: HashSet::new(),
            pods: HashMap::new(),
            images: HashMap::new(),
        };
        info.set_node(node);
        info
    }

    /// Replace the Node object, keeping the pods.
    pub fn set_node(&mut self, node: Arc<Value>) {
        self.name = str_at(&node, "/metadata/name").to_string();
        self.labels = node
            .at("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        (self.runtimes, self.runtime_bits) = offered_runtimes(&self.labels);
        self.unschedulable = node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
        self.taints = node
            .at("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(Taint::from_json)
            .collect();
        self.allocatable = Resources::allocatable(&node);
        self.images = node
            .at("/status/images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|img| {
                let size = img.get("sizeBytes").and_then(Value::as_i64).unwrap_or(0);
                img.get("names")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(move |n| (n.to_string(), size))
            })
            .collect();
        self.node = node;
    }

    /// A label of the node.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Account a pod here.
    pub fn add_pod(&mut self, pod: Arc<PlacedPod>) {
        self.requested.add(&pod.requests);
        self.used_ports.extend(pod.ports.iter().cloned());
        if let Some(old) = self.pods.insert(pod.key.clone(), pod) {
            self.requested.sub(&old.requests);
        }
    }

    /// Stop accounting a pod here.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PlacedPod>> {
        let pod = self.pods.remove(key)?;
        self.requested.sub(&pod.requests);
        for port in &pod.ports {
            self.used_ports.remove(port);
        }
        Some(pod)
    }
}

/// A plugin's verdict on one node (upstream `framework.Status` codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The pod fits.
    Fit,
    /// It does not, for this reason (as counted in FailedScheduling messages; several reasons
    /// one per line, as upstream's `Status.Reasons`); evicting pods might change that
    /// (upstream `Unschedulable`).
    Unfit(String),
    /// It does not, and no preemption can change that (upstream
    /// `UnschedulableAndUnresolvable`).
    Unresolvable(String),
}

impl Status {
    /// The reason, unless the pod fits.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Status::Fit => None,
            Status::Unfit(r) | Status::Unresolvable(r) => Some(r),
        }
    }

    /// Each reason, unless the pod fits.
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reason().into_iter().flat_map(|r| r.split('\n'))
    }
}

/// The pod being scheduled, with what plugins need precomputed: filters and scores run once
/// per node, so nothing they read may need a walk of the pod's JSON.
pub struct PodInfo {
    /// The Pod object.
    pub pod: Arc<Value>,
    /// `ns/name`.
    pub key: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.nodeName` ("" when unset).
    pub node_name: String,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// `spec.nodeSelector`: key and wanted value (`None` for a value that is not a string,
    /// which only a node without the label matches).
    pub node_selector: Vec<(String, Option<String>)>,
    /// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
    /// .nodeSelectorTerms`, when it is a list.
    pub required_node_terms: Option<Vec<Value>>,
    /// `spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution`: each
    /// term's weight and preference (`null` when absent).
    pub preferred_node_terms: Vec<(i64, Value)>,
    /// Its requests.
    pub requests: Resources,
    /// Its host ports.
    pub ports: Vec<HostPort>,
    /// `spec.priority`.
    pub priority: i64,
}

impl PodInfo {
    /// Precompute a pod's needs.
    pub fn new(pod: Arc<Value>) -> Self {
        let spec = pod.get("spec");
        let node_affinity = spec
            .and_then(|s| s.get("affinity"))
            .and_then(|a| a.get("nodeAffinity"));
        Self {
            key: crate::cache::pod_key(&pod),
            namespace: str_at(&pod, "/metadata/namespace").to_string(),
            node_name: str_at(&pod, "/spec/nodeName").to_string(),
            tolerations: spec
                .and_then(|s| s.get("tolerations"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Toleration::from_json)
                .collect(),
            node_selector: spec
                .and_then(|s| s.get("nodeSelector"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                .collect(),
            required_node_terms: node_affinity
                .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
                .and_then(|r| r.get("nodeSelectorTerms"))
                .and_then(Value::as_array)
                .cloned(),
            preferred_node_terms: node_affinity
                .and_then(|a| a.get("preferredDuringSchedulingIgnoredDuringExecution"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    let weight = p.get("weight").and_then(Value::as_i64).unwrap_or(0);
                    (weight, p.get("preference").cloned().unwrap_or(Value::Null))
                })
                .collect(),
            requests: Resources::requested_by(&pod),
            ports: host_ports(&pod),
            priority: crate::queue::priority(&pod),
            pod,
        }
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// Per-pod data plugins compute once per scheduling cycle and read for every node (upstream
/// `CycleState`). Values are shared, so the state is cheap to copy for preemption's what-ifs.
///
/// A handful of plugins write here, and filters read it once per node, so it is a short list
/// searched in order rather than a hash map (no hashing on the per-node path).
#[derive(Clone, Default)]
pub struct CycleState {
    /// Keyed by the data's type (each plugin has its own), so a lookup compares two integers
    /// rather than plugin names.
    data: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
    /// Filters (by position in the profile) that said at pre-filter time that they would let
    /// every node through (upstream's PreFilter `Skip`).
    pub skipped_filters: u64,
}

impl CycleState {
    /// Store a plugin's data (one value per type).
    pub fn write<T: Any + Send + Sync>(&mut self, value: T) {
        let key = TypeId::of::<T>();
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        match self.data.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.data.push((key, value)),
        }
    }

    /// A plugin's data.
    pub fn read<T: Any + Send + Sync>(&self) -> Option<&T> {
        if self.data.is_empty() {
            return None;
        }
        let key = TypeId::of::<T>();
        let (_, v) = self.data.iter().find(|(k, _)| *k == key)?;
        v.downcast_ref()
    }
}

/// What plugins may read of the cluster beyond the node at hand, during one cycle.
pub struct Cluster<'a> {
    /// Every node, ordered by name.
    pub nodes: &'a [NodeInfo],
    /// Image name → number of nodes that hold it.
    pub image_nodes: &'a HashMap<String, usize>,
    /// RuntimeClass objects by name.
    pub runtime_class: &'a dyn Fn(&str) -> Option<Arc<Value>>,
}

/// Decides whether a pod may run on a node.
pub trait FilterPlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// Whether this filter would let every node through for this pod (upstream's PreFilter
    /// returning `Skip`): then neither `pre_filter` nor `filter` runs in its cycles.
    fn skip(&self, _pod: &PodInfo) -> bool {
        false
    }
    /// Once per pod, before any node (upstream `PreFilter`): compute what `filter` reads into
    /// `state`. A verdict other than `Fit` rejects every node.
    fn pre_filter(&self, _cx: &Cluster, _pod: &PodInfo, _state: &mut CycleState) -> Status {
        Status::Fit
    }
    /// The verdict for one node.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
    /// Update the pre-filter state for `other` joining `node` (upstream
    /// `PreFilterExtensions.AddPod`; used for nominated pods and preemption).
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &PlacedPod,
        _node: &NodeInfo,
    ) {
    }
    /// Update the pre-filter state for `other` leaving `node` (upstream `RemovePod`).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _other: &PlacedPod,
        _node: &NodeInfo,
    ) {
    }
}

/// What a score plugin's pre-score decided for this pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreScore {
    /// Score every feasible node.
    Run,
    /// Every node would score the same: leave this plugin out (upstream's PreScore `Skip`).
    Skip,
}

/// The highest score a node gets from one plugin (upstream `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Ranks feasible nodes, 0 (worst) to 100 (best).
pub trait ScorePlugin: Send + Sync {
    /// Upstream plugin name.
    fn name(&self) -> &'static str;
    /// Once per pod, over the feasible nodes (upstream `PreScore`); [`PreScore::Skip`] when
    /// every node would get the same score, which cannot change the ranking.
    fn pre_score(
        &self,
        _cx: &Cluster,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _state: &mut CycleState,
    ) -> PreScore {
        PreScore::Run
    }
    /// The score for one node.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Rescale the raw scores of every feasible node to 0–100 (upstream `NormalizeScore`).
    fn normalize(&self, _state: &CycleState, _scores: &mut [(&str, i64)]) {}
    /// Relative weight.
    fn weight(&self) -> i64 {
        1
    }
}

/// Scale scores so the best is 100 (upstream `helper.DefaultNormalizeScore`, not reversed).
pub fn normalize_to_max(scores: &mut [(&str, i64)]) {
    let max = scores.iter().map(|(_, s)| *s).max().unwrap_or(0);
    if max == 0 {
        return;
    }
    for (_, s) in scores.iter_mut() {
        *s = *s * MAX_NODE_SCORE / max;
    }
}
