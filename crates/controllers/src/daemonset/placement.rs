//! Where a DaemonSet's pods belong (upstream `NodeShouldRunDaemonPod` and
//! `pkg/controller/daemon/util`): the tolerations every daemon pod gets, the node affinity that
//! pins a daemon pod to its node so the scheduler binds it there, whether a node should run (or
//! may keep running) a daemon pod, and which node an existing pod is meant for.

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::meta;
use crate::taints::{
    self, DISK_PRESSURE, MEMORY_PRESSURE, NO_EXECUTE, NO_SCHEDULE, NOT_READY, PID_PRESSURE,
    UNREACHABLE, UNSCHEDULABLE,
};

/// The tolerations every daemon pod gets (upstream `AddOrUpdateDaemonPodTolerations`): it keeps
/// running on a node that is unreachable, not ready, under pressure or cordoned.
pub const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    (NOT_READY, NO_EXECUTE),
    (UNREACHABLE, NO_EXECUTE),
    (DISK_PRESSURE, NO_SCHEDULE),
    (MEMORY_PRESSURE, NO_SCHEDULE),
    (PID_PRESSURE, NO_SCHEDULE),
    (UNSCHEDULABLE, NO_SCHEDULE),
];

/// `pod_spec` with the daemon tolerations added (a toleration with the same key and effect
/// is replaced, as upstream's `AddOrUpdateTolerationInPodSpec`).
pub fn with_daemon_tolerations(pod_spec: &Value) -> Value {
    let mut spec = pod_spec.clone();
    let mut tolerations: Vec<Value> = taints::tolerations(pod_spec).to_vec();
    for (key, effect) in DAEMON_TOLERATIONS {
        let t = json!({"key": key, "operator": "Exists", "effect": effect});
        tolerations.retain(|old| {
            !(meta::str_at(old, "/key") == key && meta::str_at(old, "/effect") == effect)
        });
        tolerations.push(t);
    }
    meta::set(&mut spec, &["tolerations"], Value::Array(tolerations));
    spec
}

/// The spec of the daemon pod for `node`: the template's, with the daemon tolerations and the
/// required node affinity replaced by one term matching `metadata.name` (upstream
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`); preferred affinity is kept.
pub fn pod_spec_for(ds: &Value, node: &str) -> Value {
    let template = ds
        .at("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut spec = with_daemon_tolerations(&template);
    meta::set(
        &mut spec,
        &[
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}),
    );
    spec
}

/// Whether `node` should run a daemon pod of `ds`, and whether one already there may keep
/// running (upstream `NodeShouldRunDaemonPod`): the template's `nodeName`, `nodeSelector` and
/// required node affinity must select the node; `NoSchedule` and `NoExecute` taints must be
/// tolerated to start a pod, only `NoExecute` ones to keep it.
pub fn should_run(ds: &Value, node: &Value) -> (bool, bool) {
    let template = ds
        .at("/spec/template/spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let pinned = meta::str_at(&template, "/nodeName");
    if !pinned.is_empty() && pinned != meta::name(node) {
        return (false, false);
    }
    if !taints::selects_node(&template, node) {
        return (false, false);
    }
    let spec = with_daemon_tolerations(&template);
    let keep = taints::tolerates_all(&spec, node, &[NO_EXECUTE]);
    let start = keep && taints::tolerates_all(&spec, node, &[NO_SCHEDULE]);
    (start, keep)
}

/// The node a daemon pod is for: its `nodeName`, or before binding the single node its
/// required affinity names (upstream `GetTargetNodeName`).
pub fn target_node(pod: &Value) -> Option<&str> {
    let bound = meta::str_at(pod, "/spec/nodeName");
    if !bound.is_empty() {
        return Some(bound);
    }
    let terms = pod
        .at("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?;
    terms
        .iter()
        .flat_map(|t| {
            t.get("matchFields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|f| {
            meta::str_at(f, "/key") == "metadata.name" && meta::str_at(f, "/operator") == "In"
        })
        .and_then(|f| f.at("/values/0"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(spec: Value) -> Value {
        json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": spec}}})
    }

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn node_selector_and_taints_decide_placement() {
        let plain = ds(json!({"nodeSelector": {"role": "edge"}}));
        assert_eq!(
            should_run(&plain, &node(json!({"role": "edge"}), json!([]))),
            (true, true)
        );
        assert_eq!(
            should_run(&plain, &node(json!({"role": "core"}), json!([]))),
            (false, false)
        );
        let tainted = node(
            json!({"role": "edge"}),
            json!([{"key": "dedicated", "effect": "NoSchedule"}]),
        );
        assert_eq!(
            should_run(&plain, &tainted),
            (false, true),
            "a NoSchedule taint keeps new pods off but lets a running one stay"
        );
        let evicting = node(
            json!({"role": "edge"}),
            json!([{"key": "dedicated", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&plain, &evicting), (false, false));
        let tolerant = ds(
            json!({"nodeSelector": {"role": "edge"}, "tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
        );
        assert_eq!(should_run(&tolerant, &tainted), (true, true));
    }

    #[test]
    fn daemon_pods_tolerate_unreachable_and_cordoned_nodes() {
        let n = node(
            json!({}),
            json!([{"key": UNREACHABLE, "effect": "NoExecute"}, {"key": UNREACHABLE, "effect": "NoSchedule"},
                   {"key": UNSCHEDULABLE, "effect": "NoSchedule"}]),
        );
        // unreachable:NoSchedule is not among the daemon tolerations (as upstream).
        assert_eq!(should_run(&ds(json!({})), &n), (false, true));
        let cordoned = node(
            json!({}),
            json!([{"key": UNSCHEDULABLE, "effect": "NoSchedule"}, {"key": NOT_READY, "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&ds(json!({})), &cordoned), (true, true));
    }

    #[test]
    fn pods_are_pinned_to_their_node_by_affinity() {
        let d = ds(json!({
            "tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}],
            "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "role", "operator": "In", "values": ["edge"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}}));
        let spec = pod_spec_for(&d, "n7");
        let pod = json!({"spec": spec});
        assert_eq!(target_node(&pod), Some("n7"));
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
        assert!(
            spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                .is_array()
        );
        let tols = spec["tolerations"].as_array().expect("tolerations");
        assert_eq!(tols.len(), 6, "the user's not-ready toleration is replaced");
        assert!(tols.iter().all(|t| t.get("tolerationSeconds").is_none()));
        let bound = json!({"spec": {"nodeName": "n2"}});
        assert_eq!(target_node(&bound), Some("n2"));
        assert_eq!(target_node(&json!({"spec": {}})), None);
    }
}
