//! PATCH: the four patch types Kubernetes accepts (`json-patch`, `merge-patch`,
//! `strategic-merge-patch` for built-in kinds, and server-side `apply-patch`), applied to the
//! stored object before the regular update path runs.

mod managed;

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use serde_json::Value;

use crate::registry::Resource;

pub use managed::{apply_create, record_update};

/// The patch type, from the request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 6902 JSON patch.
    Json,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch (built-in kinds only).
    Strategic,
    /// Server-side apply.
    Apply,
}

impl PatchKind {
    /// Pick the patch type from a media type (415 for anything else; SMP only for built-ins).
    pub fn from_content_type(media: &str, res: &Resource) -> Result<Self, ApiError> {
        let kind = match media {
            "application/json-patch+json" => Self::Json,
            "application/merge-patch+json" => Self::Merge,
            "application/strategic-merge-patch+json" => Self::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" => Self::Apply,
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {other:?}"
                    ),
                ));
            }
        };
        if kind == Self::Strategic && res.custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        Ok(kind)
    }
}

/// Decode the patch document.
pub fn decode(kind: PatchKind, raw: &[u8]) -> Result<Value, ApiError> {
    let doc: Value = match kind {
        PatchKind::Apply => serde_yaml::from_slice(raw)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        _ => serde_json::from_slice(raw)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (kind, &doc) {
        (PatchKind::Json, Value::Array(_)) => Ok(doc),
        (PatchKind::Json, _) => Err(ApiError::bad_request(
            "a JSON patch must be a list of operations",
        )),
        (_, Value::Object(_)) => Ok(doc),
        _ => Err(ApiError::bad_request("the patch must be a JSON object")),
    }
}

fn patch_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("the server rejected our request due to an error in our request: {e}"),
    )
}

/// Whether a patch document sets `metadata.resourceVersion` (which makes it a precondition).
pub fn mentions_resource_version(kind: PatchKind, doc: &Value) -> bool {
    match kind {
        PatchKind::Json => doc.as_array().is_some_and(|ops| {
            ops.iter().any(|op| {
                op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
            })
        }),
        _ => doc
            .at("/metadata/resourceVersion")
            .is_some_and(|v| !v.is_null()),
    }
}

/// Apply a patch of `kind` to `current` (the stored object, or its Scale view).
pub fn apply_patch(
    kind: PatchKind,
    res: &Resource,
    current: &Value,
    doc: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    use ledge_api::patch as p;
    let group = if current.get("kind").and_then(Value::as_str) == Some("Scale") {
        "autoscaling"
    } else {
        res.def.group.as_str()
    };
    let kind_name = current
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(&res.def.kind);
    match kind {
        PatchKind::Json => p::json_patch(current, doc).map_err(patch_error),
        PatchKind::Merge => Ok(p::merge_patch(current, doc)),
        PatchKind::Strategic => {
            p::strategic_merge(current, doc, p::builtin_schema(group, kind_name))
                .map_err(patch_error)
        }
        PatchKind::Apply => managed::apply(res, current, doc, manager, force),
    }
}
