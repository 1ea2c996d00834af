//! The Node's `.status` as kubelet reports it: capacity and allocatable, the four conditions
//! (the pressure ones from kubelet's eviction signals: available memory, disk, PIDs),
//! addresses, daemon endpoints and nodeInfo. Allocatable is capacity less kubelet's default hard
//! eviction thresholds (`memory.available<100Mi`, `nodefs.available<10%`), so a scheduler does
//! not fill a device to the brim. A condition keeps its `lastTransitionTime` until its status
//! changes; [`significant`] strips the heartbeat times, so a report is sent only when something a
//! reader could notice changed.

use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::facts::Facts;

/// `nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.32.0-ledge";
/// `nodeInfo.containerRuntimeVersion`.
pub const RUNTIME_VERSION: &str = concat!("ledge://", env!("CARGO_PKG_VERSION"));
/// Pods a node accepts (kubelet's `--max-pods` default).
pub const MAX_PODS: u32 = 110;
/// Memory kept free by kubelet's default hard eviction threshold, KiB (100Mi).
const EVICTION_MEMORY_KIB: u64 = 100 * 1024;

fn quantity_kib(bytes_or_kib: u64) -> String {
    format!("{bytes_or_kib}Ki")
}

/// Capacity and allocatable resources.
fn resources(facts: &Facts) -> (Value, Value) {
    let mut capacity = Map::new();
    let mut allocatable = Map::new();
    capacity.insert("cpu".into(), json!(facts.cpus.to_string()));
    allocatable.insert("cpu".into(), json!(facts.cpus.to_string()));
    if let Some(kib) = facts.memory_kib {
        capacity.insert("memory".into(), json!(quantity_kib(kib)));
        allocatable.insert(
            "memory".into(),
            json!(quantity_kib(kib.saturating_sub(EVICTION_MEMORY_KIB))),
        );
    }
    if let Some(bytes) = facts.storage_bytes {
        let kib = bytes / 1024;
        capacity.insert("ephemeral-storage".into(), json!(quantity_kib(kib)));
        allocatable.insert(
            "ephemeral-storage".into(),
            json!(quantity_kib(kib - kib / 10)),
        );
    }
    capacity.insert("pods".into(), json!(MAX_PODS.to_string()));
    allocatable.insert("pods".into(), json!(MAX_PODS.to_string()));
    (Value::Object(capacity), Value::Object(allocatable))
}

/// Share of `pid_max` that must stay free, else `PIDPressure` (kubelet sets no default
/// `pid.available` threshold; an edge device that runs out of PIDs stops being manageable, so
/// ledge warns the scheduler away from it at 10 %).
const PID_RESERVE_PERCENT: u64 = 10;

/// Which of kubelet's eviction signals are past their default hard thresholds:
/// `memory.available<100Mi`, `nodefs.available<10%`, and [`PID_RESERVE_PERCENT`]. A signal that
/// cannot be read is not pressure.
fn pressure(facts: &Facts) -> [bool; 3] {
    let memory = facts
        .memory_available_kib
        .is_some_and(|kib| kib < EVICTION_MEMORY_KIB);
    let disk = facts
        .storage_available_bytes
        .zip(facts.storage_bytes)
        .is_some_and(|(free, size)| free < size / 10);
    let pids = facts
        .pids
        .is_some_and(|(alive, max)| max.saturating_sub(alive) < max * PID_RESERVE_PERCENT / 100);
    [memory, disk, pids]
}

/// One condition kubelet reports: type, then (reason, message) without and with pressure.
struct Condition {
    kind: &'static str,
    fine: (&'static str, &'static str),
    pressed: (&'static str, &'static str),
}

/// The pressure conditions with upstream's reasons and messages (kubelet's nodestatus setters),
/// in the order of [`pressure`].
const PRESSURE_CONDITIONS: [Condition; 3] = [
    Condition {
        kind: "MemoryPressure",
        fine: (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        pressed: (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
    },
    Condition {
        kind: "DiskPressure",
        fine: ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        pressed: ("KubeletHasDiskPressure", "kubelet has disk pressure"),
    },
    Condition {
        kind: "PIDPressure",
        fine: (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        pressed: (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
    },
];

/// (type, status, reason, message) of every condition for these facts.
fn conditions(facts: &Facts) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let mut all: Vec<_> = PRESSURE_CONDITIONS
        .iter()
        .zip(pressure(facts))
        .map(|(c, pressed)| {
            let (status, (reason, message)) = if pressed {
                ("True", c.pressed)
            } else {
                ("False", c.fine)
            };
            (c.kind, status, reason, message)
        })
        .collect();
    all.push((
        "Ready",
        "True",
        "KubeletReady",
        "ledge agent is posting ready status",
    ));
    all
}

fn previous_condition<'a>(previous: Option<&'a Value>, kind: &str) -> Option<&'a Value> {
    previous?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// Build the status at `now` (RFC 3339); `previous` is the last reported status, whose
/// transition times are kept for conditions that did not change.
pub fn build(facts: &Facts, ip: Option<IpAddr>, now: &str, previous: Option<&Value>) -> Value {
    let (capacity, allocatable) = resources(facts);
    let conditions: Vec<Value> = conditions(facts)
        .into_iter()
        .map(|(kind, status, reason, message)| {
            let transition = previous_condition(previous, kind)
                .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
            json!({
                "type": kind,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": transition,
                "reason": reason,
                "message": message,
            })
        })
        .collect();
    let mut addresses = Vec::new();
    if let Some(ip) = ip {
        addresses.push(json!({"type": "InternalIP", "address": ip.to_string()}));
    }
    addresses.push(json!({"type": "Hostname", "address": facts.hostname}));
    json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions,
        "addresses": addresses,
        // No kubelet port: the agent never listens (logs and exec ride its own connection).
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": "",
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
    })
}

/// The pressure conditions `current` reports that `previous` did not, with their messages, for
/// the agent's log: the node is about to be tainted, and an operator should know why.
pub fn new_pressure(previous: &Value, current: &Value) -> Vec<&'static str> {
    let pressed = |status: &Value, kind: &str| {
        previous_condition(Some(status), kind)
            .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
    };
    PRESSURE_CONDITIONS
        .iter()
        .filter(|c| pressed(current, c.kind) && !pressed(previous, c.kind))
        .map(|c| c.kind)
        .collect()
}

/// The status without heartbeat times: what must differ for a report to be worth sending.
pub fn significant(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conditions) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastHeartbeatTime");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            hostname: "edge-1".into(),
            cpus: 4,
            memory_kib: Some(4_000_000),
            storage_bytes: Some(32 * 1024 * 1024 * 1024),
            memory_available_kib: Some(2_000_000),
            storage_available_bytes: Some(16 * 1024 * 1024 * 1024),
            pids: Some((300, 4_194_304)),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            architecture: "arm64",
            machine_id: "m".into(),
            boot_id: "b".into(),
        }
    }

    #[test]
    fn capacity_and_allocatable_are_kubernetes_quantities() {
        let ip = "192.0.2.10".parse().ok();
        let s = build(&facts(), ip, "2025-01-01T00:00:00Z", None);
        assert_eq!(s["capacity"]["cpu"], "4");
        assert_eq!(s["capacity"]["memory"], "4000000Ki");
        assert_eq!(s["allocatable"]["memory"], "3897600Ki");
        assert_eq!(s["capacity"]["ephemeral-storage"], "33554432Ki");
        assert_eq!(s["allocatable"]["ephemeral-storage"], "30198989Ki");
        assert_eq!(s["capacity"]["pods"], "110");
        assert_eq!(
            s["addresses"],
            json!([{"type": "InternalIP", "address": "192.0.2.10"}, {"type": "Hostname", "address": "edge-1"}])
        );
        assert_eq!(s["nodeInfo"]["architecture"], "arm64");
        assert_eq!(s["nodeInfo"]["kubeletVersion"], "v1.32.0-ledge");
        let ready = &s["conditions"][3];
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(ready["reason"], "KubeletReady");
    }

    #[test]
    fn heartbeats_alone_are_not_a_change_and_transitions_are_kept() {
        let first = build(&facts(), None, "2025-01-01T00:00:00Z", None);
        let second = build(&facts(), None, "2025-01-01T00:00:10Z", Some(&first));
        assert_ne!(first, second);
        assert_eq!(significant(&first), significant(&second));
        assert_eq!(
            second["conditions"][3]["lastTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            second["conditions"][3]["lastHeartbeatTime"],
            "2025-01-01T00:00:10Z"
        );
        let mut more = facts();
        more.memory_kib = Some(8_000_000);
        let third = build(&more, None, "2025-01-01T00:00:20Z", Some(&second));
        assert_ne!(significant(&second), significant(&third));
    }

    #[test]
    fn pressure_conditions_follow_kubelets_eviction_thresholds() {
        let status_of = |facts: &Facts, kind: &str| {
            let s = build(facts, None, "2025-01-01T00:00:00Z", None);
            let c = s["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
                .unwrap_or_default();
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        };
        let fine = facts();
        for (kind, reason) in [
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ] {
            assert_eq!(status_of(&fine, kind), ("False".into(), reason.into()));
        }

        let mut low = facts();
        low.memory_available_kib = Some(99 * 1024);
        assert_eq!(
            status_of(&low, "MemoryPressure"),
            ("True".into(), "KubeletHasInsufficientMemory".into())
        );
        low.storage_available_bytes = Some(3 * 1024 * 1024 * 1024);
        assert_eq!(
            status_of(&low, "DiskPressure"),
            ("True".into(), "KubeletHasDiskPressure".into())
        );
        low.pids = Some((3_900_000, 4_194_304));
        assert_eq!(
            status_of(&low, "PIDPressure"),
            ("True".into(), "KubeletHasInsufficientPID".into())
        );
        // Pressure does not make the node NotReady: kubelet keeps reporting Ready.
        assert_eq!(status_of(&low, "Ready").0, "True");

        // A signal that cannot be read is no pressure.
        let mut unknown = facts();
        unknown.memory_available_kib = None;
        unknown.storage_available_bytes = None;
        unknown.pids = None;
        assert_eq!(status_of(&unknown, "MemoryPressure").0, "False");
        assert_eq!(status_of(&unknown, "DiskPressure").0, "False");
        assert_eq!(status_of(&unknown, "PIDPressure").0, "False");

        // A change of pressure is a change worth reporting, with a new transition time.
        let before = build(&fine, None, "2025-01-01T00:00:00Z", None);
        let after = build(&low, None, "2025-01-01T00:00:10Z", Some(&before));
        assert_ne!(significant(&before), significant(&after));
        assert_eq!(
            new_pressure(&before, &after),
            ["MemoryPressure", "DiskPressure", "PIDPressure"]
        );
        assert!(new_pressure(&after, &after).is_empty());
        assert_eq!(
            after["conditions"][0]["lastTransitionTime"],
            "2025-01-01T00:00:10Z"
        );
    }
}
