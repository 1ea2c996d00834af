//! The Kubernetes `Status` error: every failure the API returns, with the upstream `reason`,
//! `code` and message wording (apimachinery `pkg/api/errors`), so kubectl prints
//! `Error from server (NotFound): configmaps "x" not found` exactly as it would against Kubernetes.

use serde_json::{Value, json};

/// One machine-readable cause of a failure, usually a field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCause {
    /// Upstream cause type, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message for this cause.
    pub message: String,
    /// The field path, e.g. `metadata.name` or `spec.containers[0].image`.
    pub field: String,
}

/// An API failure: HTTP code, upstream `reason` and a message naming what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream `StatusReason` (`NotFound`, `Invalid`, ...); empty for unknown errors.
    pub reason: &'static str,
    /// The message kubectl prints.
    pub message: String,
    /// `details.name`.
    pub name: Option<String>,
    /// `details.group`.
    pub group: Option<String>,
    /// `details.kind` (the resource or kind the error is about).
    pub kind: Option<String>,
    /// `details.causes`.
    pub causes: Vec<StatusCause>,
    /// `details.retryAfterSeconds`.
    pub retry_after_seconds: Option<u32>,
}

/// A group and resource, as errors name them (`deployments.apps`, `configmaps`).
#[derive(Clone, Copy, Debug)]
pub struct GroupResource<'a> {
    /// API group ("" for core).
    pub group: &'a str,
    /// Plural resource name.
    pub resource: &'a str,
}

impl std::fmt::Display for GroupResource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

impl ApiError {
    /// A bare error with a code, reason and message.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after_seconds: None,
        }
    }

    fn about(mut self, gr: GroupResource<'_>, name: &str) -> Self {
        self.name = Some(name.to_string());
        if !gr.group.is_empty() {
            self.group = Some(gr.group.to_string());
        }
        self.kind = Some(gr.resource.to_string());
        self
    }

    /// 404: `configmaps "x" not found`.
    pub fn not_found(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found")).about(gr, name)
    }

    /// 409 on create: `configmaps "x" already exists`.
    pub fn already_exists(gr: GroupResource<'_>, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .about(gr, name)
    }

    /// 409 on a stale write, with the upstream wording test suites grep for.
    pub fn conflict(gr: GroupResource<'_>, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"),
        )
        .about(gr, name)
    }

    /// 409 for a resourceVersion mismatch.
    pub fn modified(gr: GroupResource<'_>, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422: `ConfigMap "x" is invalid: metadata.name: Invalid value: ...`.
    ///
    /// As upstream, `causes[].message` carries the message without the field path (kubectl
    /// prints `* <field>: <message>`), while the top-level message names each field. Causes
    /// whose message already starts with their field are accepted and normalised.
    pub fn invalid(group: &str, kind: &str, name: &str, mut causes: Vec<StatusCause>) -> Self {
        for c in &mut causes {
            if !c.field.is_empty()
                && let Some(body) = c.message.strip_prefix(&format!("{}: ", c.field))
            {
                c.message = body.to_string();
            }
        }
        let shown = |c: &StatusCause| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        };
        let summary = match causes.as_slice() {
            [one] => shown(one),
            many => format!(
                "[{}]",
                many.iter().map(shown).collect::<Vec<_>>().join(", ")
            ),
        };
        let shown = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{shown} \"{name}\" is invalid: {summary}"),
        );
        err.name = Some(name.to_string());
        if !group.is_empty() {
            err.group = Some(group.to_string());
        }
        err.kind = Some(kind.to_string());
        err.causes = causes;
        err
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 for a request without valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 for a path that names no resource.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(verb: &str, gr: GroupResource<'_>) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{gr}\""),
        )
    }

    /// 406 for an Accept header the server cannot produce.
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml; got {accept}"
            ),
        )
    }

    /// 415 for a body type the server cannot read.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {content_type}"
            ),
        )
    }

    /// 413 for a body past the size limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 410 for a resourceVersion older than the kept history.
    pub fn expired(requested: i64, oldest: i64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
        )
    }

    /// 500 for a server-side failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 when the server cannot serve now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut err = Self::new(503, "ServiceUnavailable", message);
        err.retry_after_seconds = Some(1);
        err
    }

    /// The `Status` object sent on the wire.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(name) = &self.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &self.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &self.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(secs) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(secs));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_upstream_wording() {
        let gr = GroupResource {
            group: "apps",
            resource: "deployments",
        };
        let s = ApiError::not_found(gr, "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let cause = |f: &str| StatusCause {
            reason: "FieldValueInvalid".into(),
            message: format!("{f}: Invalid value"),
            field: f.into(),
        };
        let e = ApiError::invalid("", "ConfigMap", "x", vec![cause("metadata.name")]);
        assert_eq!(
            e.message,
            "ConfigMap \"x\" is invalid: metadata.name: Invalid value"
        );
        let e = ApiError::invalid("", "ConfigMap", "x", vec![cause("a"), cause("b")]);
        assert_eq!(
            e.message,
            "ConfigMap \"x\" is invalid: [a: Invalid value, b: Invalid value]"
        );
        assert_eq!(e.to_status()["details"]["causes"][1]["field"], "b");
    }
}
