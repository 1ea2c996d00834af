//! Pods as a test or benchmark on the bed reads them (through the real `kubectl`): listing by
//! label, readiness, and the fingerprint that must not change for a pod nobody restarted.

use serde_json::Value;

use crate::{Cluster, Result};

/// The pods matching a label selector in the default namespace.
///
/// # Errors
/// `kubectl` failed or printed something that is not a list.
pub fn list(cluster: &Cluster, selector: &str) -> Result<Vec<Value>> {
    let list = cluster.kubectl_json(&["get", "pods", "-l", selector])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// What must not change for a pod that was not restarted: its uid, node, first container's
/// restart count and start time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fingerprint {
    /// `metadata.uid`.
    pub uid: String,
    /// `spec.nodeName`.
    pub node: String,
    /// The first container's `restartCount` (-1 when absent).
    pub restarts: i64,
    /// The first container's `state.running.startedAt` (empty when not running).
    pub started_at: String,
}

/// The pod's [`Fingerprint`].
pub fn fingerprint(pod: &Value) -> Fingerprint {
    let c = &pod["status"]["containerStatuses"][0];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    Fingerprint {
        uid: text(&pod["metadata"]["uid"]),
        node: text(&pod["spec"]["nodeName"]),
        restarts: c["restartCount"].as_i64().unwrap_or(-1),
        started_at: text(&c["state"]["running"]["startedAt"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_termination_and_fingerprints_come_from_the_pod() {
        let pod = json!({
            "metadata": {"uid": "u1"},
            "spec": {"nodeName": "edge-1"},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"restartCount": 2,
                                        "state": {"running": {"startedAt": "T"}}}],
            },
        });
        assert!(is_ready(&pod) && !is_terminating(&pod));
        let f = fingerprint(&pod);
        assert_eq!(
            (f.uid.as_str(), f.node.as_str(), f.restarts),
            ("u1", "edge-1", 2)
        );
        assert_eq!(f.started_at, "T");
        let mut gone = pod.clone();
        gone["metadata"]["deletionTimestamp"] = json!("T");
        gone["status"]["conditions"][0]["status"] = json!("False");
        assert!(!is_ready(&gone) && is_terminating(&gone));
    }
}
