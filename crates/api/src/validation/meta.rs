//! `ObjectMeta` and `LabelSelector` validation shared by every kind (upstream
//! `api/validation/objectmeta.go` and `apis/meta/v1/validation`), working on the JSON form of
//! the object so it runs before any typed decoding.

use serde_json::{Map, Value};

use super::{
    FieldError, FieldPath, IMMUTABLE_MSG, NameValidator, TOTAL_ANNOTATION_SIZE_LIMIT,
    is_dns1123_label, is_qualified_name, is_valid_label_value,
};

const ORPHAN_FINALIZER: &str = "orphan";
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

fn str_field<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Reads an optional map field; a present non-object is reported instead of ignored.
fn map_field<'a>(
    obj: &'a Value,
    key: &str,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> Option<&'a Map<String, Value>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            errs.push(FieldError::invalid(
                path,
                other.clone(),
                "must be a map of strings",
            ));
            None
        }
    }
}

fn list_field<'a>(
    obj: &'a Value,
    key: &str,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> &'a [Value] {
    match obj.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => {
            errs.push(FieldError::invalid(path, other.clone(), "must be a list"));
            &[]
        }
    }
}

/// Validates one label key (also used for selector keys).
pub fn validate_label_name(key: &str, path: &FieldPath) -> Vec<FieldError> {
    is_qualified_name(key)
        .iter()
        .map(|msg| FieldError::invalid(path, key, msg))
        .collect()
}

/// Validates `metadata.labels`: qualified-name keys and label values, errors at `path` itself.
pub fn validate_labels(labels: &Map<String, Value>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        errs.extend(validate_label_name(k, path));
        match v.as_str() {
            Some(s) => errs.extend(
                is_valid_label_value(s)
                    .iter()
                    .map(|m| FieldError::invalid(path, s, m)),
            ),
            None => errs.push(FieldError::invalid(
                path.key(k),
                v.clone(),
                "must be a string",
            )),
        }
    }
    errs
}

/// Validates `metadata.annotations`: case-insensitive qualified-name keys and the 256 KiB total.
pub fn validate_annotations(annotations: &Map<String, Value>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        errs.extend(
            is_qualified_name(&k.to_lowercase())
                .iter()
                .map(|m| FieldError::invalid(path, k.as_str(), m)),
        );
        match v.as_str() {
            Some(s) => total = total.saturating_add(k.len()).saturating_add(s.len()),
            None => errs.push(FieldError::invalid(
                path.key(k),
                v.clone(),
                "must be a string",
            )),
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Validates `metadata.finalizers`: qualified names, and not both `orphan` and `foregroundDeletion`.
pub fn validate_finalizers(finalizers: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, f) in finalizers.iter().enumerate() {
        match f.as_str() {
            Some(s) => errs.extend(
                is_qualified_name(s)
                    .iter()
                    .map(|m| FieldError::invalid(path, s, m)),
            ),
            None => errs.push(FieldError::invalid(
                path.index(i),
                f.clone(),
                "must be a string",
            )),
        }
    }
    let has = |name: &str| finalizers.iter().any(|f| f.as_str() == Some(name));
    if has(ORPHAN_FINALIZER) && has(FOREGROUND_FINALIZER) {
        let msg =
            format!("finalizer {ORPHAN_FINALIZER} and {FOREGROUND_FINALIZER} cannot be both set");
        errs.push(FieldError::invalid(
            path,
            Value::Array(finalizers.to_vec()),
            &msg,
        ));
    }
    errs
}

/// Validates `metadata.ownerReferences`: required fields, no Event owners, one controller at most.
pub fn validate_owner_references(refs: &[Value], path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_field(r, "apiVersion");
        let kind = str_field(r, "kind");
        let name = str_field(r, "name");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                kind,
                "kind must not be empty",
            ));
        }
        if name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                name,
                "name must not be empty",
            ));
        }
        let uid = str_field(r, "uid");
        if uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                uid,
                "uid must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            let msg = format!("{group}/{version}, Kind={kind} is disallowed from being an owner");
            errs.push(FieldError::invalid(path, r.clone(), &msg));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => {
                    let msg = format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    );
                    errs.push(FieldError::invalid(path, Value::Array(refs.to_vec()), &msg));
                }
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// Validates the `metadata` of an object being created, after `generateName` was expanded.
///
/// `namespaced` says whether the kind lives in namespaces; `name_fn` is the kind's
/// [`NameValidator`]. Field paths start at `metadata`.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_fn: NameValidator,
) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    let generate_name = str_field(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName"),
                generate_name,
                &msg,
            ));
        }
    }
    let name = str_field(meta, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(path.child("name"), name, &msg));
        }
    }
    let namespace = str_field(meta, "namespace");
    match (namespaced, namespace.is_empty()) {
        (true, true) => errs.push(FieldError::required(path.child("namespace"), "")),
        (true, false) => errs.extend(
            is_dns1123_label(namespace)
                .iter()
                .map(|m| FieldError::invalid(path.child("namespace"), namespace, m)),
        ),
        (false, false) => errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        )),
        (false, true) => {}
    }
    if let Some(generation) = meta
        .get("generation")
        .and_then(Value::as_i64)
        .filter(|g| *g < 0)
    {
        errs.push(FieldError::invalid(
            path.child("generation"),
            generation,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_meta_collections(meta, &path));
    let finalizers_path = path.child("finalizers");
    let finalizers = list_field(meta, "finalizers", &finalizers_path, &mut errs);
    errs.extend(validate_finalizers(finalizers, &finalizers_path));
    errs
}

/// Labels, annotations and owner references: checked on both create and update.
fn validate_meta_collections(meta: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let labels_path = path.child("labels");
    if let Some(labels) = map_field(meta, "labels", &labels_path, &mut errs) {
        errs.extend(validate_labels(labels, &labels_path));
    }
    let annotations_path = path.child("annotations");
    if let Some(annotations) = map_field(meta, "annotations", &annotations_path, &mut errs) {
        errs.extend(validate_annotations(annotations, &annotations_path));
    }
    let owners_path = path.child("ownerReferences");
    let owners = list_field(meta, "ownerReferences", &owners_path, &mut errs);
    errs.extend(validate_owner_references(owners, &owners_path));
    errs
}

/// Validates `metadata` on update against the stored object's `metadata`.
///
/// Checks immutable fields (name, namespace, uid, creationTimestamp, deletionTimestamp,
/// deletionGracePeriodSeconds), that generation does not go down, that no finalizer is added
/// once deletion started, and re-validates labels, annotations and owner references.
/// `resourceVersion` preconditions are the caller's business.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    let is_set = |v: &Value, k: &str| !matches!(v.get(k), None | Some(Value::Null));
    if is_set(old, "deletionTimestamp") {
        let old_finalizers = old.get("finalizers").and_then(Value::as_array);
        let added: Vec<String> = new
            .get("finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| !old_finalizers.is_some_and(|o| o.contains(f)))
            .map(super::error::render_value)
            .collect();
        if !added.is_empty() {
            let msg = format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                added.join(", ")
            );
            errs.push(FieldError::forbidden(path.child("finalizers"), &msg));
        }
    }
    let generation = |v: &Value| v.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if generation(new) < generation(old) {
        errs.push(FieldError::invalid(
            path.child("generation"),
            generation(new),
            "must not be decremented",
        ));
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        // Typed Go fields cannot tell "absent" from "" or null, so neither can we.
        let normalized = |v: &Value| match v.get(field) {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) if s.is_empty() => Value::Null,
            Some(other) => other.clone(),
        };
        let new_v = normalized(new);
        if new_v != normalized(old) {
            errs.push(FieldError::invalid(path.child(field), new_v, IMMUTABLE_MSG));
        }
    }
    errs.extend(validate_meta_collections(new, &path));
    errs
}

/// Validates a `metav1.LabelSelector` object (e.g. a Deployment's `spec.selector`) at `path`.
pub fn validate_label_selector(selector: &Value, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let labels_path = path.child("matchLabels");
    if let Some(labels) = map_field(selector, "matchLabels", &labels_path, &mut errs) {
        errs.extend(validate_labels(labels, &labels_path));
    }
    let exprs_path = path.child("matchExpressions");
    let exprs = list_field(selector, "matchExpressions", &exprs_path, &mut errs);
    for (i, expr) in exprs.iter().enumerate() {
        let expr_path = exprs_path.index(i);
        let values_path = expr_path.child("values");
        let values = list_field(expr, "values", &values_path, &mut errs);
        let operator = str_field(expr, "operator");
        match operator {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                &values_path,
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                &values_path,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                expr_path.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(
            str_field(expr, "key"),
            &expr_path.child("key"),
        ));
        for (j, v) in values.iter().enumerate() {
            let value = v.as_str().unwrap_or_default();
            errs.extend(
                is_valid_label_value(value)
                    .iter()
                    .map(|m| FieldError::invalid(values_path.index(j), value, m)),
            );
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::validation::{name_is_dns_label, name_is_dns_subdomain};

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn uppercase_name_is_rejected_with_upstream_wording() {
        let errs = validate_object_meta(
            &json!({"name": "Foo", "namespace": "default"}),
            true,
            name_is_dns_subdomain,
        );
        assert_eq!(
            messages(&errs),
            vec![
                "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
    }

    #[test]
    fn missing_name_and_namespace_are_required() {
        let errs = validate_object_meta(&json!({}), true, name_is_dns_subdomain);
        assert_eq!(
            messages(&errs),
            vec![
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value",
            ]
        );
    }

    #[test]
    fn cluster_scoped_kinds_forbid_a_namespace() {
        let errs = validate_object_meta(
            &json!({"name": "n", "namespace": "x"}),
            false,
            name_is_dns_label,
        );
        assert_eq!(
            messages(&errs),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn generate_name_with_trailing_dash_is_accepted() {
        let meta = json!({"generateName": "web-", "name": "web-x7k2p", "namespace": "default"});
        assert!(validate_object_meta(&meta, true, name_is_dns_subdomain).is_empty());
        let bad = json!({"generateName": "Web-", "name": "web-x7k2p", "namespace": "default"});
        let errs = validate_object_meta(&bad, true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.generateName");
    }

    #[test]
    fn bad_label_key_and_value_are_reported_at_labels() {
        let meta =
            json!({"name": "a", "namespace": "d", "labels": {"-bad": "ok", "good": "no pe"}});
        let errs = validate_object_meta(&meta, true, name_is_dns_subdomain);
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.field == "metadata.labels"));
        assert!(
            errs[0]
                .message
                .starts_with("name part must consist of alphanumeric")
        );
        assert!(
            errs[1]
                .message
                .starts_with("a valid label must be an empty string")
        );
    }

    #[test]
    fn oversized_annotations_are_too_long() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let meta = json!({"name": "a", "namespace": "d", "annotations": {"k": big}});
        let errs = validate_object_meta(&meta, true, name_is_dns_subdomain);
        assert_eq!(
            messages(&errs),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn annotation_keys_are_case_insensitive() {
        let annotations = json!({"Example.COM/Key": "v"});
        let Value::Object(map) = annotations else {
            unreachable!()
        };
        assert!(validate_annotations(&map, &FieldPath::new("metadata.annotations")).is_empty());
    }

    #[test]
    fn two_controllers_are_rejected() {
        let refs = [
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}),
        ];
        let errs = validate_owner_references(&refs, &FieldPath::new("metadata.ownerReferences"));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("ReplicaSet/a and ReplicaSet/b"));
    }

    #[test]
    fn update_rejects_renames_and_new_finalizers_while_deleting() {
        let old = json!({"name": "a", "uid": "u", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]});
        let new = json!({"name": "b", "uid": "u", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x", "y"]});
        assert_eq!(
            messages(&validate_object_meta_update(&new, &old)),
            vec![
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"y\"}",
                "metadata.name: Invalid value: \"b\": field is immutable",
            ]
        );
    }

    #[test]
    fn selector_requirements_are_checked() {
        let sel = json!({"matchExpressions": [
            {"key": "a", "operator": "In", "values": []},
            {"key": "b", "operator": "Exists", "values": ["x"]},
            {"key": "c", "operator": "Gt"},
        ]});
        let errs = validate_label_selector(&sel, &FieldPath::new("spec.selector"));
        assert_eq!(
            messages(&errs),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Gt\": not a valid selector operator",
            ]
        );
    }
}
