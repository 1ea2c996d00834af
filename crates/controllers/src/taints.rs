//! Taints, tolerations and node selection as the scheduler sees them (upstream
//! `v1helper.TolerationsTolerateTaint` and `nodeaffinity.GetRequiredNodeAffinity`): whether a pod
//! spec tolerates a node's taints and whether its `nodeSelector` and required node affinity
//! select a node. The DaemonSet controller decides where daemon pods belong with these; the node
//! lifecycle controller decides which pods a `NoExecute` taint evicts.

use ledge_api::Pointer as _;
use serde_json::{Value, json};

/// `node.kubernetes.io/not-ready`: the node's Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: the node stopped renewing its Lease (Ready is Unknown).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`: the node is cordoned.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// `node.kubernetes.io/memory-pressure`.
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// `node.kubernetes.io/disk-pressure`.
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// `node.kubernetes.io/pid-pressure`.
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";

/// `NoSchedule`.
pub const NO_SCHEDULE: &str = "NoSchedule";
/// `NoExecute`.
pub const NO_EXECUTE: &str = "NoExecute";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// A taint's key.
pub fn key(taint: &Value) -> &str {
    s(taint, "key")
}

/// A taint's effect.
pub fn effect(taint: &Value) -> &str {
    s(taint, "effect")
}

/// A node's `spec.taints`.
pub fn of_node(node: &Value) -> Vec<Value> {
    node.at("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether one toleration matches one taint (upstream `Toleration.ToleratesTaint`).
pub fn toleration_matches(toleration: &Value, taint: &Value) -> bool {
    let t_effect = s(toleration, "effect");
    if !t_effect.is_empty() && t_effect != effect(taint) {
        return false;
    }
    let t_key = s(toleration, "key");
    if !t_key.is_empty() && t_key != key(taint) {
        return false;
    }
    match s(toleration, "operator") {
        "Exists" => true,
        "" | "Equal" => s(toleration, "value") == s(taint, "value"),
        _ => false,
    }
}

/// The tolerations of a pod spec.
pub fn tolerations(pod_spec: &Value) -> &[Value] {
    pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The tolerations in `tolerations` that match `taint`.
pub fn matching<'a>(tolerations: &'a [Value], taint: &Value) -> Vec<&'a Value> {
    tolerations
        .iter()
        .filter(|t| toleration_matches(t, taint))
        .collect()
}

/// Whether every taint of `node` with one of `effects` is tolerated by `pod_spec`.
pub fn tolerates_all(pod_spec: &Value, node: &Value, effects: &[&str]) -> bool {
    let tols = tolerations(pod_spec);
    of_node(node)
        .iter()
        .filter(|t| effects.contains(&effect(t)))
        .all(|t| tols.iter().any(|tol| toleration_matches(tol, t)))
}

/// A taint with the given key and effect (no value), stamped `timeAdded` when given.
pub fn taint(key: &str, effect: &str, time_added: Option<&str>) -> Value {
    let mut t = json!({"key": key, "effect": effect});
    if let Some(at) = time_added {
        t["timeAdded"] = json!(at);
    }
    t
}

/// Whether `pod_spec`'s `nodeSelector` and required node affinity select `node` (upstream
/// `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn selects_node(pod_spec: &Value, node: &Value) -> bool {
    let labels = node.at("/metadata/labels").and_then(Value::as_object);
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(sel) = pod_spec.get("nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| label(k) == v.as_str())
    {
        return false;
    }
    let terms = pod_spec
        .at("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    let Some(terms) = terms else {
        return true;
    };
    let name = node
        .at("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    terms.iter().any(|t| term_matches(t, &label, name))
}

/// One `nodeSelectorTerm`: every expression holds; an empty term matches nothing.
fn term_matches<'a>(term: &Value, label: &dyn Fn(&str) -> Option<&'a str>, name: &str) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
        return false;
    }
    exprs
        .into_iter()
        .flatten()
        .all(|e| requirement_holds(e, label(s(e, "key"))))
        && fields
            .into_iter()
            .flatten()
            .all(|e| requirement_holds(e, (s(e, "key") == "metadata.name").then_some(name)))
}

fn requirement_holds(e: &Value, actual: Option<&str>) -> bool {
    let values: Vec<&str> = e
        .get("values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let num = |v: &str| v.parse::<i64>().ok();
    let first = values.first().and_then(|v| num(v));
    match s(e, "operator") {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" => matches!((actual.and_then(num), first), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((actual.and_then(num), first), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_match_by_key_value_and_effect() {
        let t = json!({"key": "edge", "value": "x", "effect": "NoSchedule"});
        assert!(toleration_matches(&json!({"operator": "Exists"}), &t));
        assert!(toleration_matches(
            &json!({"key": "edge", "operator": "Equal", "value": "x"}),
            &t
        ));
        assert!(!toleration_matches(
            &json!({"key": "edge", "operator": "Equal", "value": "y"}),
            &t
        ));
        assert!(!toleration_matches(
            &json!({"key": "edge", "operator": "Exists", "effect": "NoExecute"}),
            &t
        ));
        assert!(!toleration_matches(
            &json!({"key": "other", "operator": "Exists"}),
            &t
        ));
    }

    #[test]
    fn only_the_given_effects_must_be_tolerated() {
        let node = json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]}});
        let none = json!({});
        assert!(!tolerates_all(&none, &node, &[NO_SCHEDULE, NO_EXECUTE]));
        assert!(tolerates_all(&none, &node, &[NO_EXECUTE]));
        let ok = json!({"tolerations": [{"key": "a", "operator": "Exists"}]});
        assert!(tolerates_all(&ok, &node, &[NO_SCHEDULE, NO_EXECUTE]));
    }

    #[test]
    fn node_selector_and_required_affinity_select_nodes() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a", "gpu": "2"}}});
        assert!(selects_node(&json!({}), &node));
        assert!(selects_node(&json!({"nodeSelector": {"zone": "a"}}), &node));
        assert!(!selects_node(
            &json!({"nodeSelector": {"zone": "b"}}),
            &node
        ));
        let affinity = |term: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}});
        assert!(selects_node(
            &affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
            ),
            &node
        ));
        assert!(!selects_node(
            &affinity(
                json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})
            ),
            &node
        ));
        assert!(selects_node(
            &affinity(
                json!({"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]}]})
            ),
            &node
        ));
        assert!(!selects_node(
            &affinity(
                json!({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]})
            ),
            &node
        ));
        assert!(!selects_node(&affinity(json!({})), &node));
    }
}
