//! What workload controllers ask of a pod (upstream `pkg/api/v1/pod/util.go` and
//! `pkg/controller/controller_utils.go`): is it active, ready, available, and how is a pod made
//! from a template.

use chrono::{DateTime, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::meta;

/// Not finished and not being deleted (upstream `IsPodActive`): the pods a workload counts.
pub fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !meta::is_deleting(pod)
}

/// `status.phase` ("Pending" when missing).
pub fn phase(pod: &Value) -> &str {
    pod.at("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
}

/// Whether `spec.nodeName` is set.
pub fn is_assigned(pod: &Value) -> bool {
    !meta::str_at(pod, "/spec/nodeName").is_empty()
}

/// The `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    meta::condition(pod, "Ready")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    if !is_ready(pod) {
        return None;
    }
    let c = meta::condition(pod, "Ready")?;
    meta::time_at(c, "/lastTransitionTime")
}

/// Ready for at least `min_ready_seconds` at `now` (upstream `IsPodAvailable`).
pub fn is_available(pod: &Value, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| t + Duration::seconds(min_ready_seconds.into()) < now)
}

/// When a ready pod becomes available, if it is ready but not yet available at `now`.
pub fn available_at(
    pod: &Value,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if min_ready_seconds <= 0 || !is_ready(pod) || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    // A ready condition without a time never becomes available; look again in a second.
    Some(ready_since(pod).map_or(now + Duration::seconds(1), |t| {
        t + Duration::seconds(min_ready_seconds.into())
    }))
}

/// The highest restart count of the pod's containers.
pub fn max_restarts(pod: &Value) -> i64 {
    pod.at("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .max()
        .unwrap_or(0)
}

/// A pod for `template` (a PodTemplateSpec), named `<prefix>-<random>` by the server and
/// controlled through `owner_ref` (upstream `GetPodFromTemplate`).
pub fn from_template(template: &Value, namespace: &str, prefix: &str, owner_ref: Value) -> Value {
    let mut metadata = json!({
        "generateName": format!("{prefix}-"),
        "namespace": namespace,
        "ownerReferences": [owner_ref],
    });
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.at(&format!("/metadata/{field}"))
            && !v.is_null()
        {
            metadata[field] = v.clone();
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pods in the shapes tests need.

    use serde_json::{Value, json};

    /// A pod created at `created` (seconds past 2024-01-01T00:00:00Z), optionally assigned to
    /// `node`, in `phase`, ready since `ready_at` seconds.
    pub fn pod(name: &str, created: i64, node: &str, phase: &str, ready_at: Option<i64>) -> Value {
        let t = |s: i64| {
            (chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("fixed time")
                + chrono::Duration::seconds(s))
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
        };
        let mut conditions = vec![];
        if let Some(r) = ready_at {
            conditions.push(json!({"type": "Ready", "status": "True", "lastTransitionTime": t(r)}));
        }
        json!({
            "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}"),
                         "creationTimestamp": t(created), "labels": {"app": "web"}},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + Duration::seconds(s)
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", 0, "n", "Running", Some(10));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, at(10)));
        assert!(!is_available(&p, 5, at(15)));
        assert!(is_available(&p, 5, at(16)));
        assert_eq!(available_at(&p, 5, at(12)), Some(at(15)));
        assert_eq!(available_at(&p, 5, at(16)), None);
        let not_ready = pod("q", 0, "", "Pending", None);
        assert!(!is_available(&not_ready, 0, at(100)));
    }

    #[test]
    fn finished_and_deleting_pods_are_not_active() {
        assert!(is_active(&pod("p", 0, "", "Pending", None)));
        assert!(!is_active(&pod("p", 0, "", "Succeeded", None)));
        let mut deleting = pod("p", 0, "", "Running", None);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert!(!is_active(&deleting));
    }

    #[test]
    fn pods_from_templates_carry_labels_and_the_controller_reference() {
        let template = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let p = from_template(
            &template,
            "a",
            "web-abc",
            json!({"uid": "u", "controller": true}),
        );
        assert_eq!(p["metadata"]["generateName"], json!("web-abc-"));
        assert_eq!(p["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], json!("u"));
        assert_eq!(p["spec"]["containers"][0]["image"], json!("i"));
    }
}
