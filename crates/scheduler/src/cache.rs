//! The scheduler's view of the cluster: one [`NodeInfo`] per node with the pods bound (or
//! assumed) to it, the pods nominated to nodes by preemption, and how many nodes hold each
//! image — kept up to date incrementally from pod and node changes so a scheduling decision
//! never scans every pod.

use std::collections::HashMap;
use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::Value;

use crate::framework::{NodeInfo, PlacedPod, PodInfo, str_at};

/// Node infos plus the pods accounted on them.
#[derive(Default)]
pub struct Cache {
    /// Sorted by name, so every cycle sees the nodes in the same order, and a cycle borrows
    /// the list as it is instead of collecting it (upstream's snapshot `nodeInfoList`).
    nodes: Vec<NodeInfo>,
    /// Node name → position in `nodes`.
    index: HashMap<String, usize>,
    /// Pod key → node it is accounted on.
    pods: HashMap<String, (String, Arc<PlacedPod>)>,
    /// Pods accounted on a node the cache does not hold (seen before their node, or kept while
    /// it is gone): node → pod key → pod, handed over when the node arrives.
    waiting: HashMap<String, HashMap<String, Arc<PlacedPod>>>,
    /// Image name → number of nodes holding it (upstream `ImageStateSummary.NumNodes`).
    image_nodes: HashMap<String, usize>,
    /// Unbound pods nominated to a node by preemption: node → pod key → pod.
    nominated: HashMap<String, HashMap<String, Arc<PlacedPod>>>,
    /// Pod key → its nominated node.
    nominated_node: HashMap<String, String>,
}

/// `ns/name` of a pod.
pub fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        str_at(pod, "/metadata/namespace"),
        str_at(pod, "/metadata/name")
    )
}

/// Whether a pod still occupies its node (bound and not finished).
fn occupies(pod: &Value) -> Option<&str> {
    let node = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())?;
    let phase = str_at(pod, "/status/phase");
    (!matches!(phase, "Succeeded" | "Failed")).then_some(node)
}

impl Cache {
    /// Add or replace a node.
    pub fn set_node(&mut self, node: Arc<Value>) {
        let name = str_at(&node, "/metadata/name");
        let entry = match self.index.get(name) {
            Some(&i) => {
                let info = &mut self.nodes[i];
                forget_images(&mut self.image_nodes, info);
                info.set_node(node);
                info
            }
            None => {
                let mut info = NodeInfo::new(node);
                // Pods seen before their node (or kept while it was gone) are accounted now.
                for p in self
                    .waiting
                    .remove(&info.name)
                    .into_iter()
                    .flat_map(|m| m.into_values())
                {
                    info.add_pod(p);
                }
                // Nodes arriving in name order (a resync) append without renumbering.
                let at = match self.nodes.last() {
                    Some(last) if last.name < info.name => self.nodes.len(),
                    _ => self
                        .nodes
                        .partition_point(|n| n.name.as_str() < info.name.as_str()),
                };
                self.nodes.insert(at, info);
                self.reindex(at);
                &mut self.nodes[at]
            }
        };
        for image in entry.images.keys() {
            *self.image_nodes.entry(image.clone()).or_default() += 1;
        }
    }

    /// Forget a node (its pods stay accounted in case it comes back).
    pub fn remove_node(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            let info = self.nodes.remove(i);
            forget_images(&mut self.image_nodes, &info);
            self.reindex(i);
            let waiting = self.waiting.entry(name.to_string()).or_default();
            for (key, (node, pod)) in &self.pods {
                if node == name {
                    waiting.insert(key.clone(), pod.clone());
                }
            }
        }
    }

    /// Renumber the index from position `from` on, after an insertion or removal there.
    fn reindex(&mut self, from: usize) {
        for (i, n) in self.nodes.iter().enumerate().skip(from) {
            match self.index.get_mut(&n.name) {
                Some(slot) => *slot = i,
                None => {
                    self.index.insert(n.name.clone(), i);
                }
            }
        }
    }

    /// Account a pod where it runs now (or nowhere, if it is unbound, finished or deleted),
    /// and track its nomination.
    pub fn set_pod(&mut self, pod: Arc<Value>, deleted: bool) {
        let key = pod_key(&pod);
        if !deleted
            && self
                .pods
                .get(&key)
                .is_some_and(|(_, p)| Arc::ptr_eq(&p.pod, &pod))
        {
            // Already accounted from this very object (a resync): nothing changed.
            return;
        }
        self.unplace(&key);
        self.unnominate(&key);
        if deleted {
            return;
        }
        if let Some(node) = occupies(&pod) {
            let node = node.to_string();
            self.place(node, Arc::new(PlacedPod::new(pod)));
        } else if pod.at("/metadata/deletionTimestamp").is_none() {
            let nominated = str_at(&pod, "/status/nominatedNodeName");
            if !nominated.is_empty() {
                let node = nominated.to_string();
                self.nominate(&pod, &node);
            }
        }
    }

    /// Account a pod on `node` before the binding is observed (upstream "assume").
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        self.unplace(&pod.key);
        self.unnominate(&pod.key);
        self.place(node.to_string(), Arc::new(PlacedPod::from_info(pod)));
    }

    /// Keys of every pod accounted on a node or nominated to one.
    pub fn pod_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.pods.keys().cloned().collect();
        keys.extend(
            self.nominated_node
                .keys()
                .filter(|k| !self.pods.contains_key(*k))
                .cloned(),
        );
        keys
    }

    /// Stop accounting a pod anywhere (it is gone).
    pub fn drop_pod(&mut self, key: &str) {
        self.unplace(key);
        self.unnominate(key);
    }

    /// Undo an assumption after a failed binding.
    pub fn forget(&mut self, pod: &Value) {
        self.unplace(&pod_key(pod));
    }

    /// Record that `pod` waits for room preemption makes on `node`.
    pub fn nominate(&mut self, pod: &Arc<Value>, node: &str) {
        let placed = Arc::new(PlacedPod::new(pod.clone()));
        self.unnominate(&placed.key);
        self.nominated_node
            .insert(placed.key.clone(), node.to_string());
        self.nominated
            .entry(node.to_string())
            .or_default()
            .insert(placed.key.clone(), placed);
    }

    fn unnominate(&mut self, key: &str) {
        if let Some(node) = self.nominated_node.remove(key)
            && let Some(pods) = self.nominated.get_mut(&node)
        {
            pods.remove(key);
            if pods.is_empty() {
                self.nominated.remove(&node);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_on(&self, node: &str) -> impl Iterator<Item = &Arc<PlacedPod>> {
        self.nominated
            .get(node)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Every node's nominated pods.
    pub fn nominated(&self) -> &HashMap<String, HashMap<String, Arc<PlacedPod>>> {
        &self.nominated
    }

    fn place(&mut self, node: String, pod: Arc<PlacedPod>) {
        match self.index.get(&node) {
            Some(&i) => self.nodes[i].add_pod(pod.clone()),
            None => {
                let waiting = self.waiting.entry(node.clone()).or_default();
                waiting.insert(pod.key.clone(), pod.clone());
            }
        }
        self.pods.insert(pod.key.clone(), (node, pod));
    }

    fn unplace(&mut self, key: &str) {
        let Some((node, _)) = self.pods.remove(key) else {
            return;
        };
        match self.index.get(&node) {
            Some(&i) => {
                self.nodes[i].remove_pod(key);
            }
            None => {
                if let Some(waiting) = self.waiting.get_mut(&node) {
                    waiting.remove(key);
                    if waiting.is_empty() {
                        self.waiting.remove(&node);
                    }
                }
            }
        }
    }

    /// Every node, ordered by name.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// One node.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Image name → number of nodes holding it.
    pub fn image_nodes(&self) -> &HashMap<String, usize> {
        &self.image_nodes
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

fn forget_images(counts: &mut HashMap<String, usize>, info: &NodeInfo) {
    for image in info.images.keys() {
        if let Some(n) = counts.get_mut(image) {
            *n -= 1;
            if *n == 0 {
                counts.remove(image);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pods_follow_their_node_and_images_are_counted() {
        let mut c = Cache::default();
        let pod = Arc::new(
            json!({"metadata": {"namespace": "d", "name": "p"}, "spec": {"nodeName": "a",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        // The pod arrives before its node.
        c.set_pod(pod.clone(), false);
        let node =
            |imgs: Value| Arc::new(json!({"metadata": {"name": "a"}, "status": {"images": imgs}}));
        c.set_node(node(json!([{"names": ["x:1", "x@sha"], "sizeBytes": 10}])));
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        assert_eq!(c.image_nodes().get("x:1"), Some(&1));
        c.set_node(node(json!([{"names": ["y:1"], "sizeBytes": 10}])));
        assert_eq!(c.image_nodes().get("x:1"), None);
        assert_eq!(c.image_nodes().get("y:1"), Some(&1));
        c.set_pod(pod, true);
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn nominations_are_tracked_until_bound() {
        let mut c = Cache::default();
        let p = json!({"metadata": {"namespace": "d", "name": "p"}, "status": {"nominatedNodeName": "a"}});
        c.set_pod(Arc::new(p.clone()), false);
        assert_eq!(c.nominated_on("a").count(), 1);
        let mut bound = p;
        bound["spec"] = json!({"nodeName": "a"});
        c.set_pod(Arc::new(bound), false);
        assert_eq!(c.nominated_on("a").count(), 0);
    }

    #[test]
    fn nodes_stay_sorted_and_indexed_through_adds_and_removals() {
        let mut c = Cache::default();
        let node = |name: &str| Arc::new(json!({"metadata": {"name": name}}));
        for name in ["c", "a", "d", "b"] {
            c.set_node(node(name));
        }
        let names = |c: &Cache| c.nodes().iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&c), ["a", "b", "c", "d"]);
        c.remove_node("b");
        assert_eq!(names(&c), ["a", "c", "d"]);
        // Lookups by name still find the right entry after the shift.
        let pod = json!({"metadata": {"namespace": "x", "name": "p"}, "spec": {"nodeName": "d",
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        c.set_pod(Arc::new(pod), false);
        assert_eq!(c.node("d").map(|n| n.requested.milli_cpu), Some(1000));
        assert_eq!(c.node("c").map(|n| n.requested.milli_cpu), Some(0));
        assert!(c.node("b").is_none());
        // A node that goes and comes back finds its pods accounted again.
        c.remove_node("d");
        c.set_node(node("d"));
        assert_eq!(c.node("d").map(|n| n.requested.milli_cpu), Some(1000));
        // A pod deleted while its node was away is not counted when the node returns.
        c.remove_node("d");
        c.drop_pod("x/p");
        c.set_node(node("d"));
        assert_eq!(c.node("d").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn dropped_pods_free_their_node() {
        let mut c = Cache::default();
        c.set_node(Arc::new(json!({"metadata": {"name": "a"}})));
        let pod = Arc::new(json!({"metadata": {"namespace": "x", "name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}));
        let info = PodInfo::new(pod);
        c.assume(&info, "a");
        // Assuming twice counts the pod once.
        c.assume(&info, "a");
        assert_eq!(c.pod_keys(), ["x/p"]);
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        c.drop_pod("x/p");
        assert!(c.pod_keys().is_empty());
        assert_eq!(c.node("a").map(|n| n.requested.milli_cpu), Some(0));
    }
}
