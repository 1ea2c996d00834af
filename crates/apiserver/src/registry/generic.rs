//! The strategy for kinds with no special behaviour, and the pod-template helpers shared by the
//! workload kinds.

use ledge_api::Pointer as _;
use ledge_api::StatusCause;
use serde_json::{Value, json};

use super::Strategy;
use crate::table::{self, Column, col};

/// A kind that is stored as sent and printed as `NAME AGE`.
pub struct Generic;

impl Strategy for Generic {}

/// Small kinds whose tables are one or two fields.
pub struct Simple {
    /// Columns after Name.
    pub columns: &'static [(&'static str, &'static str)],
    /// Where each column's value lives.
    pub paths: &'static [&'static str],
}

impl Strategy for Simple {
    fn columns(&self) -> Vec<Column> {
        self.columns.iter().map(|(n, t)| col(n, t, "")).collect()
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        self.paths.iter().map(|p| table::cell(obj, p)).collect()
    }
}

/// A `required` cause.
pub fn required(field: &str) -> StatusCause {
    StatusCause {
        reason: "FieldValueRequired".into(),
        message: format!("{field}: Required value"),
        field: field.into(),
    }
}

/// An `invalid` cause.
pub fn invalid(field: &str, value: &Value, why: &str) -> StatusCause {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    StatusCause {
        reason: "FieldValueInvalid".into(),
        message: format!("{field}: Invalid value: {shown}: {why}"),
        field: field.into(),
    }
}

/// Defaults upstream applies to every pod spec (`pkg/apis/core/v1/defaults.go`).
pub fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    m.entry("restartPolicy").or_insert(json!("Always"));
    m.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    m.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    m.entry("securityContext").or_insert(json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                let resources = c.entry("resources").or_insert(json!({}));
                default_requests_from_limits(resources);
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let latest = !image.contains('@')
                    && image
                        .rsplit('/')
                        .next()
                        .is_none_or(|last| !last.contains(':') || last.ends_with(":latest"));
                c.entry("imagePullPolicy").or_insert(json!(if latest {
                    "Always"
                } else {
                    "IfNotPresent"
                }));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert(json!("TCP"));
                    }
                }
                for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    if let Some(probe) = c.get_mut(kind).and_then(Value::as_object_mut) {
                        default_probe(probe);
                    }
                }
            }
        }
    }
}

/// Upstream `SetDefaults_Pod`: a resource with a limit and no request requests its limit.
fn default_requests_from_limits(resources: &mut Value) {
    let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let Some(r) = resources.as_object_mut() else {
        return;
    };
    let requests = r.entry("requests").or_insert(json!({}));
    if let Some(requests) = requests.as_object_mut() {
        for (name, limit) in limits {
            requests.entry(name).or_insert(limit);
        }
    }
}

/// Upstream `GetPodQOS` of a defaulted pod spec: `BestEffort` without CPU or memory requests
/// and limits, `Guaranteed` when every container's CPU and memory requests equal its limits,
/// `Burstable` otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let quantity =
        |c: &Value, kind: &str, name: &str| match c.at(&format!("/resources/{kind}/{name}")) {
            Some(Value::String(q)) => Some(ledge_api::quantity::milli_value(q).unwrap_or(0)),
            Some(Value::Number(n)) => n.as_i64().map(|n| n * 1000),
            _ => None,
        };
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| spec.get(*list).and_then(Value::as_array))
        .flatten();
    let (mut any, mut guaranteed) = (false, true);
    for c in containers {
        for name in ["cpu", "memory"] {
            let request = quantity(c, "requests", name).filter(|q| *q != 0);
            let limit = quantity(c, "limits", name).filter(|q| *q != 0);
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// Upstream `SetDefaults_Probe` and `SetDefaults_HTTPGetAction`.
fn default_probe(probe: &mut serde_json::Map<String, Value>) {
    for (field, value) in [
        ("timeoutSeconds", 1),
        ("periodSeconds", 10),
        ("successThreshold", 1),
        ("failureThreshold", 3),
    ] {
        probe.entry(field).or_insert(json!(value));
    }
    if let Some(get) = probe.get_mut("httpGet").and_then(Value::as_object_mut) {
        get.entry("path").or_insert(json!("/"));
        get.entry("scheme").or_insert(json!("HTTP"));
    }
}

/// Validate a pod spec at `base` (e.g. `spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: Option<&Value>, base: &str) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let Some(spec) = spec else {
        causes.push(required(base));
        return causes;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(required(&format!("{base}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(required(&format!("{base}.containers"))),
        Some(cs) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let at = format!("{base}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => causes.push(required(&format!("{at}.name"))),
                    Some(n) => {
                        if !seen.insert(n.to_string()) {
                            causes.push(StatusCause {
                                reason: "FieldValueDuplicate".into(),
                                message: format!("{at}.name: Duplicate value: {n:?}"),
                                field: format!("{at}.name"),
                            });
                        }
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(required(&format!("{at}.image")));
                }
            }
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(p, "Always" | "OnFailure" | "Never")
    {
        causes.push(StatusCause {
            reason: "FieldValueNotSupported".into(),
            message: format!("{base}.restartPolicy: Unsupported value: {p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""),
            field: format!("{base}.restartPolicy"),
        });
    }
    causes
}

/// `CONTAINERS`, `IMAGES` cells for a pod template at `spec_path`.
pub fn containers_images(obj: &Value, spec_path: &str) -> (Value, Value) {
    let cs = table::path(obj, &format!("{spec_path}.containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c.get("name")?.as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c.get("image")?.as_str()).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_get_upstreams_defaults_and_keep_what_is_set() {
        let mut spec = json!({"containers": [{"name": "c", "image": "x:1",
            "readinessProbe": {"httpGet": {"port": 80}},
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 2}}]});
        default_pod_spec(&mut spec);
        let c = &spec["containers"][0];
        assert_eq!(
            c["readinessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["livenessProbe"]["periodSeconds"], 2);
        assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
        assert!(c.get("startupProbe").is_none());
    }

    #[test]
    fn requests_default_to_limits_and_set_the_qos_class() {
        let spec = |resources: Value| {
            let mut spec = json!({"containers": [{"name": "c", "image": "x:1",
                                                  "resources": resources}]});
            default_pod_spec(&mut spec);
            spec
        };
        let guaranteed = spec(json!({"limits": {"cpu": "500m", "memory": "32Mi"}}));
        assert_eq!(
            guaranteed["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "32Mi"})
        );
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = spec(json!({"requests": {"cpu": "100m"},
                                    "limits": {"cpu": "500m", "memory": "32Mi"}}));
        assert_eq!(
            burstable["containers"][0]["resources"]["requests"]["memory"],
            "32Mi"
        );
        assert_eq!(qos_class(&burstable), "Burstable");
        assert_eq!(
            qos_class(&spec(json!({"requests": {"memory": "1Gi"}}))),
            "Burstable"
        );
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        // Other resources do not count.
        assert_eq!(
            qos_class(&spec(json!({"limits": {"ephemeral-storage": "1Gi"}}))),
            "BestEffort"
        );
    }
}
