//! The Node's `.status` as kubelet reports it: capacity and allocatable, the four conditions,
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

/// The conditions kubelet reports: (type, status, reason, message).
const CONDITIONS: &[(&str, &str, &str, &str)] = &[
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "ledge agent is posting ready status",
    ),
];

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
    let conditions: Vec<Value> = CONDITIONS
        .iter()
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
}
