//! RuntimeClass: a pod runs only on a node that offers its runtime. In ledge a RuntimeClass's
//! `handler` names a runtime (`wasm`, `process`, later `oci`), and a node offers runtime `h`
//! when it carries the label `node.ledge.dev/runtime.<h>=true` (set by the node agent). The
//! class's `scheduling.nodeSelector` must match too (upstream RuntimeClass scheduling).
//!
//! The class's `scheduling.tolerations` (and its node selector) are merged into the pod by the
//! API server's admission, as upstream's RuntimeClass admission plugin does, so
//! TaintToleration and NodeAffinity enforce them; checking the selector again here keeps pods
//! off unfit nodes when a class changed after the pod was admitted. A pod naming a class that
//! no longer exists fits nowhere. A pod without `runtimeClassName` is not restricted here:
//! admission gives every new pod the cluster default.

use std::collections::HashMap;
use std::sync::Arc;

use ledge_api::Pointer as _;
use serde_json::Value;

use crate::framework::{Cluster, CycleState, FilterPlugin, NodeInfo, PodInfo, Status, str_at};

/// Upstream-style plugin name.
pub const NAME: &str = "RuntimeClass";

/// Label prefix of the runtimes a node offers (`node.ledge.dev/runtime.<handler>=true`).
pub const RUNTIME_LABEL_PREFIX: &str = "node.ledge.dev/runtime.";

/// The plugin.
pub struct RuntimeClass;

/// What the pod's class requires of a node, resolved once per pod so that the per-node check
/// compares a handler against a node's short runtime list instead of hashing a label key.
struct Required {
    /// The class's handler: the runtime a node must offer.
    handler: String,
    /// How to check for it.
    offer: Offer,
    /// `scheduling.nodeSelector`: key and wanted value (`None` for a value that is not a
    /// string, which only a node without the label matches).
    node_selector: Vec<(String, Option<String>)>,
    /// The rejection, built once.
    reason: String,
}

/// The handlers a node offers, from its labels: decoded once per Node change into
/// [`NodeInfo::runtimes`] and, as bits, [`NodeInfo::runtime_bits`].
pub fn offered_runtimes(labels: &HashMap<String, String>) -> (Vec<String>, u64) {
    let names: Vec<String> = labels
        .iter()
        .filter(|(_, v)| *v == "true")
        .filter_map(|(k, _)| k.strip_prefix(RUNTIME_LABEL_PREFIX))
        .map(str::to_string)
        .collect();
    let bits = names
        .iter()
        .filter_map(|n| handler_bit(n, true))
        .fold(0, |acc, b| acc | b);
    (names, bits)
}

/// Every handler name any node offered, numbered in order of first sight; the first 64 get a
/// bit, so the per-node check is one AND on a field of the node info instead of following two
/// pointers to compare strings (which cost a cache miss per node at 5,000 nodes).
static HANDLERS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The bit of a handler name, numbering it if `add` and it is new; `None` past the 64th name
/// (or for an unknown name without `add`).
fn handler_bit(name: &str, add: bool) -> Option<u64> {
    let mut names = HANDLERS.lock().unwrap_or_else(|p| p.into_inner());
    let i = match names.iter().position(|n| n == name) {
        Some(i) => i,
        None if add => {
            names.push(name.to_string());
            names.len() - 1
        }
        None => return None,
    };
    (i < 64).then(|| 1u64 << i)
}

/// How the per-node check tells whether a node offers the handler.
enum Offer {
    /// The handler's bit in [`NodeInfo::runtime_bits`].
    Bit(u64),
    /// No node has offered it yet, or it has no bit: compare names.
    Name,
}

impl FilterPlugin for RuntimeClass {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, pod: &PodInfo) -> bool {
        str_at(&pod.pod, "/spec/runtimeClassName").is_empty()
    }

    fn pre_filter(&self, cx: &Cluster, pod: &PodInfo, state: &mut CycleState) -> Status {
        let class = str_at(&pod.pod, "/spec/runtimeClassName");
        if class.is_empty() {
            return Status::Fit;
        }
        let Some(rc): Option<Arc<Value>> = (cx.runtime_class)(class) else {
            return Status::Unresolvable(format!("RuntimeClass \"{class}\" not found"));
        };
        let node_selector = rc
            .at("/scheduling/nodeSelector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
            .collect();
        let handler = str_at(&rc, "/handler");
        state.write(Required {
            handler: handler.to_string(),
            offer: handler_bit(handler, false).map_or(Offer::Name, Offer::Bit),
            node_selector,
            reason: format!("node(s) didn't support runtime class \"{class}\""),
        });
        Status::Fit
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(req) = state.read::<Required>() else {
            return Status::Fit;
        };
        let offers = match req.offer {
            Offer::Bit(bit) => node.runtime_bits & bit != 0,
            Offer::Name => node.runtimes.contains(&req.handler),
        };
        if offers
            && req
                .node_selector
                .iter()
                .all(|(k, v)| node.label(k) == v.as_deref())
        {
            Status::Fit
        } else {
            Status::Unresolvable(req.reason.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    fn run(classes: &[Value], p: &PodInfo, n: &NodeInfo) -> Status {
        let lookup = |name: &str| {
            classes
                .iter()
                .find(|c| c.at("/metadata/name") == Some(&json!(name)))
                .map(|c| Arc::new(c.clone()))
        };
        let images = HashMap::new();
        let cx = Cluster {
            nodes: std::slice::from_ref(n),
            image_nodes: &images,
            runtime_class: &lookup,
        };
        let mut state = CycleState::default();
        match RuntimeClass.pre_filter(&cx, p, &mut state) {
            Status::Fit => RuntimeClass.filter(&state, p, n),
            rejected => rejected,
        }
    }

    #[test]
    fn node_must_offer_the_handler_and_match_the_class_selector() {
        let wasm = json!({"metadata": {"name": "wasm"}, "handler": "wasm"});
        let edge = json!({"metadata": {"name": "edge"}, "handler": "process",
                          "scheduling": {"nodeSelector": {"site": "edge"}}});
        let wasm_node = node(json!({"metadata": {"name": "a", "labels": {
            "node.ledge.dev/runtime.wasm": "true", "site": "core"}}}));
        let process_node = node(json!({"metadata": {"name": "b", "labels": {
            "node.ledge.dev/runtime.process": "true", "site": "edge"}}}));
        let classes = [wasm, edge];
        let p = pod(json!({"spec": {"runtimeClassName": "wasm"}}));
        assert_eq!(run(&classes, &p, &wasm_node), Status::Fit);
        assert_eq!(
            run(&classes, &p, &process_node),
            Status::Unresolvable("node(s) didn't support runtime class \"wasm\"".into())
        );
        let p = pod(json!({"spec": {"runtimeClassName": "edge"}}));
        assert_eq!(run(&classes, &p, &process_node), Status::Fit);
        let mut elsewhere = process_node.clone();
        elsewhere.set_node(Arc::new(json!({"metadata": {"name": "b", "labels": {
            "node.ledge.dev/runtime.process": "true", "site": "core"}}})));
        assert!(matches!(
            run(&classes, &p, &elsewhere),
            Status::Unresolvable(_)
        ));
        // Only `true` offers a runtime; a relabelled node stops offering it.
        let mut withdrawn = wasm_node.clone();
        withdrawn.set_node(Arc::new(json!({"metadata": {"name": "a", "labels": {
            "node.ledge.dev/runtime.wasm": "false"}}})));
        let p = pod(json!({"spec": {"runtimeClassName": "wasm"}}));
        assert!(matches!(
            run(&classes, &p, &withdrawn),
            Status::Unresolvable(_)
        ));
    }

    #[test]
    fn unknown_class_fits_nowhere_and_no_class_fits_anywhere() {
        let n = node(json!({"metadata": {"name": "a"}}));
        assert_eq!(
            run(&[], &pod(json!({"spec": {"runtimeClassName": "x"}})), &n),
            Status::Unresolvable("RuntimeClass \"x\" not found".into())
        );
        assert_eq!(run(&[], &pod(json!({"spec": {}})), &n), Status::Fit);
    }
}
