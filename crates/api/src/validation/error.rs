//! [`FieldError`], the field-level validation error, rendered exactly like upstream
//! `k8s.io/apimachinery/pkg/util/validation/field` so Status messages and `details.causes[]`
//! read the same as from a real API server.

use std::fmt;

use serde_json::{Value, json};

/// The machine-readable kind of a [`FieldError`] (upstream `field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    /// A referenced value does not exist.
    NotFound,
    /// A required value is missing.
    Required,
    /// A value that must be unique is repeated.
    Duplicate,
    /// A value is malformed.
    Invalid,
    /// A value is not one of an enumerated set.
    NotSupported,
    /// A well-formed value is not permitted here.
    Forbidden,
    /// A value is longer than allowed.
    TooLong,
    /// A list has more items than allowed.
    TooMany,
    /// The server failed for reasons unrelated to the input.
    Internal,
}

impl FieldErrorKind {
    /// The `details.causes[].reason` string, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
        }
    }

    /// The human wording used in messages, e.g. `Invalid value`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
        }
    }
}

/// One field-level validation failure, rendered like upstream `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Path of the offending field, e.g. `metadata.labels` or `spec.containers[0].name`.
    pub field: String,
    /// What kind of failure this is.
    pub kind: FieldErrorKind,
    /// The offending value; `None` when upstream omits it.
    pub value: Option<Value>,
    /// Explanation appended after the value (may be empty).
    pub message: String,
}

impl FieldError {
    fn new(
        field: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<Value>,
        msg: &str,
    ) -> Self {
        Self {
            field: field.into(),
            kind,
            value,
            message: msg.to_string(),
        }
    }

    /// A required value is missing (`Required value: <msg>`).
    pub fn required(field: impl Into<String>, msg: &str) -> Self {
        Self::new(field, FieldErrorKind::Required, None, msg)
    }

    /// A value is malformed (`Invalid value: "<value>": <msg>`).
    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, msg: &str) -> Self {
        Self::new(field, FieldErrorKind::Invalid, Some(value.into()), msg)
    }

    /// A value is not one of `supported` (`Unsupported value: "x": supported values: "a", "b"`).
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| quote(s)).collect();
        let msg = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(value.into()),
            &msg,
        )
    }

    /// A value is not permitted here (`Forbidden: <msg>`).
    pub fn forbidden(field: impl Into<String>, msg: &str) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, msg)
    }

    /// A value exceeds `max` bytes (`Too long: may not be more than <max> bytes`).
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let msg = format!("may not be more than {max} bytes");
        Self::new(field, FieldErrorKind::TooLong, None, &msg)
    }

    /// A list has `actual` items, more than `max` (`Too many: <actual>: must have at most <max> items`).
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let msg = format!("must have at most {max} items");
        Self::new(field, FieldErrorKind::TooMany, Some(json!(actual)), &msg)
    }

    /// A value repeats one that must be unique (`Duplicate value: "<value>"`).
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::Duplicate, Some(value.into()), "")
    }

    /// A referenced value does not exist (`Not found: "<value>"`).
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(field, FieldErrorKind::NotFound, Some(value.into()), "")
    }

    /// The message without the field path (upstream `ErrorBody`, used as `causes[].message`).
    pub fn body(&self) -> String {
        let hides_value = matches!(
            self.kind,
            FieldErrorKind::Required
                | FieldErrorKind::Forbidden
                | FieldErrorKind::TooLong
                | FieldErrorKind::Internal
        );
        let mut s = match (&self.value, hides_value) {
            (Some(v), false) => format!("{}: {}", self.kind.as_str(), render_value(v)),
            _ => self.kind.as_str().to_string(),
        };
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }

    /// The Status `details.causes[]` entry: `{"reason", "message", "field"}`.
    pub fn to_cause(&self) -> Value {
        json!({"reason": self.kind.reason(), "message": self.body(), "field": self.field})
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// Go `%q`-like quoting (JSON string escaping agrees for everything kubectl users type).
fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

pub(super) fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// Joins errors like upstream `ErrorList.ToAggregate()`: duplicates dropped, one error bare,
/// several as `[a, b]`; empty input gives an empty string.
pub fn aggregate(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let msg = e.to_string();
        if !seen.contains(&msg) {
            seen.push(msg);
        }
    }
    match seen.as_slice() {
        [one] => one.clone(),
        _ if seen.is_empty() => String::new(),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// The 422 Status message: `ConfigMap "x" is invalid: <aggregate>` (`Deployment.apps "x" …`
/// for named groups), as upstream `errors.NewInvalid` words it.
pub fn invalid_message(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let head = format!("{qualified} {} is invalid", quote(name));
    if errors.is_empty() {
        return head;
    }
    format!("{head}: {}", aggregate(errors))
}

/// Builds field paths the way upstream `field.Path` prints them (`a.b[0][key]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at `root`, e.g. `metadata`.
    pub fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    /// The path of a named child field.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return Self(name.to_string());
        }
        Self(format!("{}.{name}", self.0))
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }

    /// The rendered path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> Self {
        p.0
    }
}

impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> Self {
        p.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_render_like_upstream() {
        let invalid = FieldError::invalid("metadata.name", "Foo", "bad");
        assert_eq!(
            invalid.to_string(),
            "metadata.name: Invalid value: \"Foo\": bad"
        );
        assert_eq!(
            FieldError::not_supported("spec.type", "X", &["A", "B"]).to_string(),
            "spec.type: Unsupported value: \"X\": supported values: \"A\", \"B\""
        );
        assert_eq!(
            FieldError::invalid("spec.replicas", -1, "m").body(),
            "Invalid value: -1: m"
        );
        assert_eq!(
            FieldError::duplicate("a", "x").to_string(),
            "a: Duplicate value: \"x\""
        );
        assert_eq!(
            invalid.to_cause(),
            json!({"reason": "FieldValueInvalid", "message": "Invalid value: \"Foo\": bad", "field": "metadata.name"})
        );
    }

    #[test]
    fn invalid_message_aggregates_like_new_invalid() {
        let a = FieldError::required("metadata.name", "x");
        let b = FieldError::forbidden("metadata.namespace", "y");
        assert_eq!(
            invalid_message(
                "apps",
                "Deployment",
                "web",
                &[a.clone(), b.clone(), a.clone()]
            ),
            "Deployment.apps \"web\" is invalid: [metadata.name: Required value: x, metadata.namespace: Forbidden: y]"
        );
        assert_eq!(
            invalid_message("", "ConfigMap", "c", &[a]),
            "ConfigMap \"c\" is invalid: metadata.name: Required value: x"
        );
    }

    #[test]
    fn field_paths_print_like_upstream() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("env")
            .key("A");
        assert_eq!(p.as_str(), "spec.containers[0].env[A]");
    }
}
