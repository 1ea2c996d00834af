//! The node lifecycle rules (upstream `pkg/controller/nodelifecycle` and its
//! `NoExecuteTaintManager`), as pure functions of objects and a time: when a node's Lease counts
//! as stale, how its conditions read then, which taints its conditions call for, and when a pod
//! on a `NoExecute`-tainted node is evicted.
//!
//! ledge's edge rule: a pod that does not tolerate the `unreachable` or `not-ready` taint is
//! *not* evicted (upstream evicts it at once, after admission gave it a 300 s toleration). Edge
//! nodes lose their uplink routinely and keep running their pods; only a pod that asks for it,
//! with a toleration carrying `tolerationSeconds`, is deleted once that long has passed since the
//! taint was added. Other `NoExecute` taints (a user's) evict untolerating pods as upstream.

use chrono::{DateTime, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::taints::{
    self, DISK_PRESSURE, MEMORY_PRESSURE, NO_EXECUTE, NO_SCHEDULE, NOT_READY, PID_PRESSURE,
    UNREACHABLE, UNSCHEDULABLE,
};
use crate::{meta, pod};

/// The node conditions the agent posts and that turn Unknown with it (upstream
/// `nodeConditionTypes`).
pub const CONDITION_TYPES: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// Reason of a condition the agent stopped posting.
pub const UNKNOWN_REASON: &str = "NodeStatusUnknown";
/// Message of a condition the agent stopped posting (upstream wording).
pub const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";
/// Reason of a condition the agent never posted.
pub const NEVER_REASON: &str = "NodeStatusNeverUpdated";
/// Message of a condition the agent never posted (upstream wording).
pub const NEVER_MESSAGE: &str = "Kubelet never posted node status.";

/// The `NoSchedule` taints that follow a condition being `True` (upstream
/// `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", MEMORY_PRESSURE),
    ("DiskPressure", DISK_PRESSURE),
    ("PIDPressure", PID_PRESSURE),
    (
        "NetworkUnavailable",
        "node.kubernetes.io/network-unavailable",
    ),
];

/// When the controller last saw a node's heartbeat change: its Lease's `renewTime` or the
/// `lastHeartbeatTime` of the Ready condition the agent posts. The time is the controller's own:
/// an edge device's clock may be off by minutes, so only the fact that a heartbeat *changed* is
/// trusted (upstream keeps the same `probeTimestamp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The heartbeat (see [`heartbeat`]) as last seen.
    pub renew_time: String,
    /// When it was seen to change (or first seen).
    pub observed_at: DateTime<Utc>,
}

/// A node's heartbeat: its Lease's renew time and its Ready condition's `lastHeartbeatTime`
/// (a status the agent posts counts as much as a Lease renewal; this controller's own Unknown
/// marking keeps the heartbeat time, so it is no heartbeat).
pub fn heartbeat(lease: &Value, node: &Value) -> String {
    let renew = match meta::str_at(lease, "/spec/renewTime") {
        "" => meta::str_at(lease, "/spec/acquireTime"),
        r => r,
    };
    let posted = meta::condition(node, "Ready")
        .map(|c| meta::str_at(c, "/lastHeartbeatTime"))
        .unwrap_or("");
    format!("{renew}|{posted}")
}

/// The probe after seeing heartbeat `renew_time` at `now`.
pub fn observe(previous: Option<&Probe>, renew_time: &str, now: DateTime<Utc>) -> Probe {
    match previous {
        Some(p) if p.renew_time == renew_time => p.clone(),
        _ => Probe {
            renew_time: renew_time.to_string(),
            observed_at: now,
        },
    }
}

/// Whether a node probed as `probe` is overdue at `now` after `grace`.
pub fn is_stale(probe: &Probe, now: DateTime<Utc>, grace: Duration) -> bool {
    now - probe.observed_at > grace
}

/// The status of the node's `Ready` condition ("" when it has none).
pub fn ready_status(node: &Value) -> &str {
    meta::condition(node, "Ready")
        .map(|c| meta::str_at(c, "/status"))
        .unwrap_or("")
}

/// The node's conditions with every agent-posted one `Unknown` (missing ones added as never
/// posted); `None` when they already are (upstream `tryUpdateNodeHealth`).
pub fn unknown_conditions(node: &Value, now: &str) -> Option<Vec<Value>> {
    let mut conditions: Vec<Value> = node
        .at("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    for kind in CONDITION_TYPES {
        match conditions
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        {
            Some(c) if meta::str_at(c, "/status") == "Unknown" => {}
            Some(c) => {
                c["status"] = json!("Unknown");
                c["reason"] = json!(UNKNOWN_REASON);
                c["message"] = json!(UNKNOWN_MESSAGE);
                c["lastTransitionTime"] = json!(now);
                changed = true;
            }
            None => {
                let created = meta::str_at(node, "/metadata/creationTimestamp");
                conditions.push(json!({
                    "type": kind, "status": "Unknown", "reason": NEVER_REASON,
                    "message": NEVER_MESSAGE, "lastHeartbeatTime": created, "lastTransitionTime": now,
                }));
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// Whether `(key, effect)` is a taint this controller manages.
fn managed(key: &str, effect: &str) -> bool {
    matches!(
        (key, effect),
        (NOT_READY | UNREACHABLE, NO_EXECUTE | NO_SCHEDULE)
            | (
                MEMORY_PRESSURE | DISK_PRESSURE | PID_PRESSURE | UNSCHEDULABLE,
                NO_SCHEDULE
            )
    ) || (key == "node.kubernetes.io/network-unavailable" && effect == NO_SCHEDULE)
}

/// The taints the node's conditions call for (upstream `doNoExecuteTaintingPass` and
/// `doNoScheduleTaintingPass`): Ready False → `not-ready`, Ready Unknown → `unreachable` (each
/// `NoExecute`, stamped `timeAdded`, and `NoSchedule`); pressure conditions and a cordon → their
/// `NoSchedule` taints. Other taints are kept as they are, and so is a managed taint that stays
/// (keeping its `timeAdded`).
pub fn wanted_taints(node: &Value, now: &str) -> Vec<Value> {
    let mut want: Vec<(&str, &str)> = Vec::new();
    match ready_status(node) {
        "False" => want.extend([(NOT_READY, NO_EXECUTE), (NOT_READY, NO_SCHEDULE)]),
        "Unknown" => want.extend([(UNREACHABLE, NO_EXECUTE), (UNREACHABLE, NO_SCHEDULE)]),
        _ => {}
    }
    for (condition, key) in CONDITION_TAINTS {
        if meta::condition(node, condition).is_some_and(|c| meta::str_at(c, "/status") == "True") {
            want.push((key, NO_SCHEDULE));
        }
    }
    if node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        want.push((UNSCHEDULABLE, NO_SCHEDULE));
    }
    let current = taints::of_node(node);
    let mut out: Vec<Value> = current
        .iter()
        .filter(|t| {
            let (k, e) = (taints::key(t), taints::effect(t));
            !managed(k, e) || want.contains(&(k, e))
        })
        .cloned()
        .collect();
    for (k, e) in want {
        if !out
            .iter()
            .any(|t| taints::key(t) == k && taints::effect(t) == e)
        {
            let stamp = (e == NO_EXECUTE).then_some(now);
            out.push(taints::taint(k, e, stamp));
        }
    }
    out
}

/// When `pod` is to be evicted from a node with `taints` (upstream `NoExecuteTaintManager`
/// with ledge's edge rule, see the module docs); `None` for never.
pub fn eviction_time(pod: &Value, taints: &[Value], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let spec = pod.get("spec").cloned().unwrap_or_default();
    let tolerations = taints::tolerations(&spec);
    let mut earliest: Option<DateTime<Utc>> = None;
    for taint in taints.iter().filter(|t| taints::effect(t) == NO_EXECUTE) {
        let matching = taints::matching(tolerations, taint);
        let deadline = if matching.is_empty() {
            if matches!(taints::key(taint), NOT_READY | UNREACHABLE) {
                // The edge rule: losing contact does not evict what did not ask for it.
                continue;
            }
            now
        } else {
            let seconds: Option<Vec<i64>> = matching
                .iter()
                .map(|t| t.get("tolerationSeconds").and_then(Value::as_i64))
                .collect();
            // A matching toleration without tolerationSeconds tolerates the taint forever.
            let Some(min) = seconds.and_then(|s| s.into_iter().min()) else {
                continue;
            };
            let added = meta::time_at(taint, "/timeAdded").unwrap_or(now);
            added + Duration::seconds(min.max(0))
        };
        earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
    }
    earliest
}

/// `pod`'s status with its Ready condition False, or `None` when it is not Ready now: how a pod
/// on a node that stopped reporting counts for Services (upstream `MarkPodsNotReady` writes it;
/// ledge's endpoints controller applies it in memory).
pub fn not_ready_status(pod: &Value, now: &str) -> Option<Value> {
    if !pod::is_ready(pod) {
        return None;
    }
    let mut status = pod.get("status").cloned().unwrap_or_else(|| json!({}));
    let conditions = status.get_mut("conditions")?.as_array_mut()?;
    for c in conditions.iter_mut() {
        if c.get("type").and_then(Value::as_str) == Some("Ready") {
            c["status"] = json!("False");
            c["lastTransitionTime"] = json!(now);
        }
    }
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + Duration::seconds(s)
    }

    fn node(ready: &str, taints: Value) -> Value {
        json!({"metadata": {"name": "n"}, "spec": {"taints": taints},
               "status": {"conditions": [
                   {"type": "Ready", "status": ready, "reason": "KubeletReady", "lastHeartbeatTime": "hb"},
                   {"type": "MemoryPressure", "status": "False"}]}})
    }

    #[test]
    fn a_lease_is_stale_after_the_grace_period_since_it_last_changed() {
        let grace = Duration::seconds(40);
        let p = observe(None, "t1", at(0));
        assert!(!is_stale(&p, at(40), grace));
        assert!(is_stale(&p, at(41), grace));
        let same = observe(Some(&p), "t1", at(30));
        assert_eq!(
            same.observed_at,
            at(0),
            "an unchanged renewTime is no heartbeat"
        );
        let renewed = observe(Some(&p), "t2", at(39));
        assert!(!is_stale(&renewed, at(60), grace));
    }

    #[test]
    fn posted_status_counts_as_a_heartbeat_and_unknown_marking_does_not() {
        let lease = json!({"spec": {"renewTime": "r1"}});
        let n = node("True", json!([]));
        let before = heartbeat(&lease, &n);
        let mut marked = n.clone();
        marked["status"]["conditions"] = json!(unknown_conditions(&n, "now"));
        assert_eq!(heartbeat(&lease, &marked), before);
        let mut posted = n.clone();
        posted["status"]["conditions"][0]["lastHeartbeatTime"] = json!("hb2");
        assert_ne!(heartbeat(&lease, &posted), before);
    }

    #[test]
    fn stale_nodes_turn_unknown_with_upstream_wording() {
        let n = node("True", json!([]));
        let c = unknown_conditions(&n, "now").expect("changed");
        assert_eq!(c[0]["status"], "Unknown");
        assert_eq!(c[0]["reason"], UNKNOWN_REASON);
        assert_eq!(c[0]["message"], "Kubelet stopped posting node status.");
        assert_eq!(
            c[0]["lastHeartbeatTime"], "hb",
            "the last heartbeat is kept"
        );
        assert_eq!(c.len(), 4, "missing conditions are added as never posted");
        assert_eq!(c[3]["reason"], NEVER_REASON);
        let mut again = n.clone();
        again["status"]["conditions"] = json!(c);
        assert_eq!(unknown_conditions(&again, "later"), None);
    }

    #[test]
    fn ready_status_picks_the_taints() {
        let unknown = wanted_taints(
            &node("Unknown", json!([{"key": "mine", "effect": "NoSchedule"}])),
            "T",
        );
        assert_eq!(
            unknown,
            [
                json!({"key": "mine", "effect": "NoSchedule"}),
                json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "T"}),
                json!({"key": UNREACHABLE, "effect": "NoSchedule"}),
            ]
        );
        // Unknown → False swaps unreachable for not-ready.
        let mut n = node("False", json!(unknown));
        let swapped = wanted_taints(&n, "U");
        let keys: Vec<(&str, &str)> = swapped
            .iter()
            .map(|t| (taints::key(t), taints::effect(t)))
            .collect();
        assert_eq!(
            keys,
            [
                ("mine", "NoSchedule"),
                (NOT_READY, "NoExecute"),
                (NOT_READY, "NoSchedule")
            ]
        );
        // Ready again: only the user's taint stays; an existing stamp is kept while it holds.
        n["status"]["conditions"][0]["status"] = json!("True");
        assert_eq!(
            wanted_taints(&n, "V"),
            [json!({"key": "mine", "effect": "NoSchedule"})]
        );
        let kept = wanted_taints(&node("Unknown", json!(unknown)), "later");
        assert_eq!(kept, unknown);
    }

    #[test]
    fn pressure_and_cordon_add_no_schedule_taints() {
        let mut n = node("True", json!([]));
        n["status"]["conditions"][1]["status"] = json!("True");
        n["spec"]["unschedulable"] = json!(true);
        let keys: Vec<String> = wanted_taints(&n, "T")
            .iter()
            .map(|t| taints::key(t).to_string())
            .collect();
        assert_eq!(keys, [MEMORY_PRESSURE, UNSCHEDULABLE]);
    }

    #[test]
    fn only_pods_asking_for_it_are_evicted_from_unreachable_nodes() {
        let taints = [
            json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:10Z"}),
        ];
        let plain = json!({"spec": {}});
        assert_eq!(eviction_time(&plain, &taints, at(100)), None, "edge rule");
        let forever = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]}});
        assert_eq!(eviction_time(&forever, &taints, at(100)), None);
        let timed = json!({"spec": {"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]}});
        assert_eq!(eviction_time(&timed, &taints, at(11)), Some(at(12)));
        let user = [json!({"key": "drain", "effect": "NoExecute"})];
        assert_eq!(
            eviction_time(&plain, &user, at(5)),
            Some(at(5)),
            "other NoExecute taints evict as upstream"
        );
        let no_schedule = [json!({"key": "x", "effect": "NoSchedule"})];
        assert_eq!(eviction_time(&plain, &no_schedule, at(5)), None);
    }

    #[test]
    fn ready_pods_are_marked_not_ready() {
        let p = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let s = not_ready_status(&p, "T").expect("changed");
        assert_eq!(
            s["conditions"][0],
            json!({"type": "Ready", "status": "False", "lastTransitionTime": "T"})
        );
        let mut q = p.clone();
        q["status"] = s;
        assert_eq!(not_ready_status(&q, "T"), None);
    }
}
