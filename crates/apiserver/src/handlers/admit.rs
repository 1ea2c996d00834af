//! Admission checks every write runs: the body's type matches the resource, generic
//! ObjectMeta validation plus the kind's own, and the namespace exists and is not terminating
//! (upstream `NamespaceLifecycle`).

use ledge_api::Pointer as _;
use ledge_api::{ApiError, GroupResource, StatusCause};
use serde_json::{Value, json};

use crate::object;
use crate::registry::Resource;
use crate::state::ApiState;

fn to_causes(field: &str, messages: Vec<String>, value: &str) -> Vec<StatusCause> {
    messages
        .into_iter()
        .map(|m| StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("{field}: Invalid value: {value:?}: {m}"),
            field: field.into(),
        })
        .collect()
}

/// Generic ObjectMeta validation (upstream `ValidateObjectMeta`).
fn validate_meta(res: &Resource, obj: &Value) -> Vec<StatusCause> {
    use ledge_api::validation as v;
    let mut causes = Vec::new();
    let name = object::name(obj);
    if name.is_empty() {
        causes.push(StatusCause {
            reason: "FieldValueRequired".into(),
            message: "metadata.name: Required value: name or generateName is required".into(),
            field: "metadata.name".into(),
        });
    } else {
        let errs = if res.strategy.name_is_label() {
            v::name_is_dns_label(name, false)
        } else if res.custom
            || res.def.group.is_empty()
            || res.def.group.ends_with("k8s.io")
            || res.def.group == "apps"
            || res.def.group == "batch"
            || res.def.group == "policy"
        {
            v::name_is_dns_subdomain(name, false)
        } else {
            v::is_path_segment_name(name)
        };
        causes.extend(to_causes("metadata.name", errs, name));
    }
    for (k, val) in object::labels(obj) {
        causes.extend(to_causes("metadata.labels", v::is_qualified_name(&k), &k));
        match val.as_str() {
            Some(s) => causes.extend(to_causes("metadata.labels", v::is_valid_label_value(s), s)),
            None => causes.push(StatusCause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "metadata.labels: Invalid value: {val}: label values must be strings"
                ),
                field: "metadata.labels".into(),
            }),
        }
    }
    if let Some(ann) = obj.at("/metadata/annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, val) in ann {
            causes.extend(to_causes(
                "metadata.annotations",
                v::is_qualified_name(&k.to_lowercase()),
                k,
            ));
            total += k.len() + val.as_str().map_or(0, str::len);
            if !val.is_string() {
                causes.push(StatusCause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("metadata.annotations: Invalid value: {val}: annotation values must be strings"),
                    field: "metadata.annotations".into(),
                });
            }
        }
        if total > 256 * 1024 {
            causes.push(StatusCause {
                reason: "FieldValueTooLong".into(),
                message: "metadata.annotations: Too long: must have at most 262144 bytes".into(),
                field: "metadata.annotations".into(),
            });
        }
    }
    causes
}

/// Check `apiVersion`/`kind` of a body against the resource, filling them when absent.
pub(super) fn check_type(res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON or YAML object",
        ));
    }
    let want_av = res.def.api_version();
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !av.is_empty() && av != want_av {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        )));
    }
    if !kind.is_empty() && kind != res.def.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.def.kind
        )));
    }
    obj["apiVersion"] = json!(want_av);
    obj["kind"] = json!(res.def.kind);
    Ok(())
}

/// Refuse writes into a namespace that is missing or terminating (upstream NamespaceLifecycle).
pub(super) async fn check_namespace(
    state: &ApiState,
    res: &Resource,
    ns: Option<&str>,
    creating: bool,
) -> Result<(), ApiError> {
    let Some(ns) = ns.filter(|_| res.def.namespaced) else {
        return Ok(());
    };
    let key = format!("/registry/core/namespaces/{ns}");
    let gr = GroupResource {
        group: "",
        resource: "namespaces",
    };
    let mut found = state.cache.get(&key);
    if found.is_none() {
        // A namespace this server (or, on a shared store, another one) just created may not
        // have reached the cache yet: catch up before calling it missing.
        state.cache.wait_for(state.store.current_revision()).await;
        found = state.cache.get(&key);
    }
    match found {
        None => Err(ApiError::not_found(gr, ns)),
        Some(n) if creating && object::is_deleting(&n) => {
            let mut e = ApiError::forbidden(format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                res.def.plural
            ));
            // Clients (and controllers) recognise this case by the cause, as upstream sends it.
            e.causes.push(StatusCause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {ns} is being terminated"),
                field: "metadata.namespace".into(),
            });
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

pub(super) fn validate_all(
    res: &Resource,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let mut causes = validate_meta(res, obj);
    causes.extend(res.strategy.validate(obj, old));
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &res.def.group,
            &res.def.kind,
            object::name(obj),
            causes,
        ))
    }
}
