//! The strategy for kinds with no special behaviour, and the pod-template helpers shared by the
//! workload kinds.

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
                c.entry("resources").or_insert(json!({}));
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
            }
        }
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
