//! CustomResourceDefinitions and the custom resources they define. A CRD is validated here;
//! each served version of an established CRD becomes a [`Resource`](super::Resource) whose
//! strategy applies the version's structural schema: defaults, pruning of unknown fields,
//! validation, and `additionalPrinterColumns` for tables.

use ledge_api::Pointer as _;
use ledge_api::{ResourceDef, StatusCause, Subresource};
use serde_json::{Map, Value, json};

use super::Strategy;
use super::generic::{invalid, required};
use crate::schema;
use crate::table::{self, Column};

/// The strategy of `customresourcedefinitions`.
pub struct CrdStrategy;

/// The finalizer that holds a CRD until its custom resources are deleted.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

impl Strategy for CrdStrategy {
    fn defaults(&self, obj: &mut Value) {
        if !crate::object::is_deleting(obj)
            && !crate::object::finalizers(obj)
                .iter()
                .any(|f| f == CLEANUP_FINALIZER)
        {
            let meta = crate::object::meta_mut(obj);
            let list = meta.entry("finalizers").or_insert(json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(CLEANUP_FINALIZER));
            }
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let plural = names
                .get("plural")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            names
                .entry("singular")
                .or_insert(json!(kind.to_lowercase()));
            names
                .entry("listKind")
                .or_insert(json!(format!("{kind}List")));
            let _ = plural;
        }
        if let Some(versions) = spec.get_mut("versions").and_then(Value::as_array_mut) {
            for v in versions.iter_mut().filter_map(Value::as_object_mut) {
                v.entry("served").or_insert(json!(true));
            }
        }
        spec.entry("conversion")
            .or_insert(json!({"strategy": "None"}));
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<StatusCause> {
        let mut causes = Vec::new();
        let group = table::text(obj, ".spec.group");
        let plural = table::text(obj, ".spec.names.plural");
        let kind = table::text(obj, ".spec.names.kind");
        if group.is_empty() {
            causes.push(required("spec.group"));
        } else if !group.contains('.') {
            causes.push(invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
        if plural.is_empty() {
            causes.push(required("spec.names.plural"));
        }
        if kind.is_empty() {
            causes.push(required("spec.names.kind"));
        }
        let expected = format!("{plural}.{group}");
        let name = crate::object::name(obj);
        if !plural.is_empty() && !group.is_empty() && name != expected {
            causes.push(invalid(
                "metadata.name",
                &json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        let scope = table::text(obj, ".spec.scope");
        if !matches!(scope, "Namespaced" | "Cluster") {
            causes.push(StatusCause {
                reason: "FieldValueNotSupported".into(),
                message: format!("spec.scope: Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
                field: "spec.scope".into(),
            });
        }
        let versions = table::path(obj, ".spec.versions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if versions.is_empty() {
            causes.push(required("spec.versions"));
        }
        let storage = versions
            .iter()
            .filter(|v| v.get("storage") == Some(&json!(true)))
            .count();
        if !versions.is_empty() && storage != 1 {
            causes.push(invalid(
                "spec.versions",
                &json!(storage),
                "must have exactly one version marked as storage version",
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if v.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(required(&format!("spec.versions[{i}].name")));
            }
            if let Some(s) = v.at("/schema/openAPIV3Schema") {
                for e in schema::check_structural(s) {
                    causes.push(invalid(
                        &format!("spec.versions[{i}].schema.openAPIV3Schema{}", e.0),
                        &Value::Null,
                        &e.1,
                    ));
                }
            }
        }
        if let Some(old) = old {
            for f in [".spec.group", ".spec.names.plural", ".spec.scope"] {
                if table::path(obj, f) != table::path(old, f) {
                    causes.push(invalid(
                        &f[1..],
                        table::path(obj, f).unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        causes
    }

    fn columns(&self) -> Vec<Column> {
        vec![table::col("Created At", "date", "Creation timestamp")]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![table::cell(obj, ".metadata.creationTimestamp")]
    }
}

/// One served version of a CRD, ready to register.
pub struct CustomVersion {
    /// The resource definition.
    pub def: ResourceDef,
    /// The behaviour from the version's schema and columns.
    pub strategy: CustomStrategy,
}

/// The behaviour of a custom resource version.
pub struct CustomStrategy {
    schema: Option<Value>,
    columns: Vec<(String, String, String, u8, String)>,
    status: bool,
}

/// The served versions of a CRD, as resources.
pub fn served_versions(crd: &Value) -> Vec<CustomVersion> {
    let spec = crd.get("spec").cloned().unwrap_or(json!({}));
    let text = |p: &str| table::text(&spec, p).to_string();
    let list = |p: &str| -> Vec<String> {
        table::path(&spec, p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let versions = table::path(&spec, ".versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served") != Some(&json!(false)))
        .map(|v| {
            let status = v.at("/subresources/status").is_some();
            let scale = v.at("/subresources/scale").is_some();
            let mut subresources = Vec::new();
            if status {
                subresources.push(Subresource::Status);
            }
            if scale {
                subresources.push(Subresource::Scale);
            }
            let columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| {
                            let s = |k: &str| {
                                c.get(k).and_then(Value::as_str).unwrap_or("").to_string()
                            };
                            let priority = c
                                .get("priority")
                                .and_then(Value::as_u64)
                                .unwrap_or(0)
                                .min(255) as u8;
                            (
                                s("name"),
                                s("type"),
                                s("jsonPath"),
                                priority,
                                s("description"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            CustomVersion {
                def: ResourceDef {
                    group: text(".group"),
                    version: v
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    kind: text(".names.kind"),
                    plural: text(".names.plural"),
                    singular: text(".names.singular"),
                    namespaced: text(".scope") == "Namespaced",
                    short_names: list(".names.shortNames"),
                    categories: list(".names.categories"),
                    subresources,
                },
                strategy: CustomStrategy {
                    schema: v.at("/schema/openAPIV3Schema").cloned(),
                    columns,
                    status,
                },
            }
        })
        .collect()
}

impl CustomStrategy {
    /// Whether the version has a status subresource.
    pub fn has_status(&self) -> bool {
        self.status
    }
}

impl Strategy for CustomStrategy {
    fn defaults(&self, obj: &mut Value) {
        if let Some(s) = &self.schema {
            schema::apply_defaults_and_prune(obj, s, true);
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<StatusCause> {
        let Some(s) = &self.schema else {
            return Vec::new();
        };
        let mut body = obj.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
        }
        schema::validate(&body, s, "")
            .into_iter()
            .map(|e| StatusCause {
                reason: e.reason.into(),
                message: format!("{}: {}", e.field, e.message),
                field: e.field,
            })
            .collect()
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default_age(&self) -> bool {
        self.columns.is_empty()
    }

    fn columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .map(|(name, ty, _, priority, desc)| Column {
                name: name.clone().into(),
                kind: ty.clone().into(),
                priority: *priority,
                description: desc.clone().into(),
            })
            .collect()
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        self.columns
            .iter()
            .map(|(_, ty, path, _, _)| match table::path(obj, path) {
                Some(Value::String(s)) if ty == "date" => table::age_of(Some(s)),
                Some(v) => v.clone(),
                None => Value::Null,
            })
            .collect()
    }
}

/// The status to write on an accepted CRD (`Established`, `NamesAccepted`).
pub fn established_status(crd: &Value) -> Value {
    let now = crate::object::now_rfc3339();
    let names = crd.at("/spec/names").cloned().unwrap_or(json!({}));
    let stored: Vec<Value> = table::path(crd, ".spec.versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .filter_map(|v| v.get("name").cloned())
        .collect();
    let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
    let mut status = Map::new();
    status.insert(
        "conditions".into(),
        json!([
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond(
                "Established",
                "InitialNamesAccepted",
                "the initial names have been accepted"
            ),
        ]),
    );
    status.insert("acceptedNames".into(), names);
    status.insert("storedVersions".into(), Value::Array(stored));
    Value::Object(status)
}
