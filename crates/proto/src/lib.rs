//! Decodes Kubernetes protobuf request bodies into ledge's JSON objects.
//!
//! kubectl ≥ 1.32 and every client-go ≥ 1.32 typed client send creates and
//! updates of built-in kinds as `application/vnd.kubernetes.protobuf`, with no
//! fallback to JSON: the magic `k8s\0`, then a `runtime.Unknown` envelope
//! whose `raw` is the object's message from k8s.io/api `generated.proto`.
//! [`decode`] turns such a body into the object exactly as the Kubernetes
//! JSON API shows it — camelCase members in Go field order, `omitempty`
//! honoured, RFC 3339 times, quantities and int-or-strings as scalars,
//! `[]byte` as base64, embedded objects as JSON — so the rest of ledge only
//! ever sees JSON.
//!
//! What lives here: the wire reader (`wire`), the envelope (`envelope`),
//! table-driven rendering (`render`, `special`, `gofmt`) and the message
//! tables generated from upstream (`schema`, see `tools/gen_schema.py`).
//! What does not: content negotiation, defaulting and validation (those
//! belong to the API server, and apply to JSON bodies alike), and encoding
//! protobuf responses (clients accept JSON answers).
//!
//! Covered: every kind registered in the stable API groups — core/v1, apps,
//! batch, autoscaling v1/v2, policy, rbac, networking, storage, scheduling,
//! node, discovery, events, coordination, certificates, authentication,
//! authorization, admissionregistration, flowcontrol and resource (DRA) v1 —
//! plus `DeleteOptions` under any apiVersion. [`supported_kinds`] lists them.

mod envelope;
mod error;
mod gofmt;
mod render;
mod schema;
mod special;
mod wire;

use serde_json::{Map, Value};

pub use envelope::{MAGIC, MEDIA_TYPE};
pub use error::{DecodeError, FieldError};

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the
/// object's JSON form, with `kind` and `apiVersion` taken from the envelope.
///
/// # Errors
///
/// A [`DecodeError`] whose message says what to fix: a missing prefix, a
/// malformed envelope, a kind without a table (send JSON instead), or the
/// JSON path of a malformed field. Never panics, whatever the input.
///
/// # Example
///
/// ```
/// // What `kubectl create namespace n` sends from kubectl 1.32 on.
/// let body = b"k8s\0\n\x0f\n\x02v1\x12\tNamespace\x12\x19\n\x11\n\x01n\x12\0\x1a\0\"\0*\02\08\0B\0\
///     \x12\0\x1a\x02\n\0\x1a\0\"\0";
/// let object = ledge_proto::decode(body)?;
/// assert_eq!(
///     object,
///     serde_json::json!({
///         "kind": "Namespace", "apiVersion": "v1",
///         "metadata": {"name": "n"}, "spec": {}, "status": {}
///     })
/// );
/// # Ok::<(), ledge_proto::DecodeError>(())
/// ```
pub fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope::Envelope {
        api_version,
        kind,
        raw,
    } = envelope::parse(body)?;
    let Some(message) = schema::lookup(&api_version, &kind) else {
        return Err(DecodeError::UnsupportedKind { api_version, kind });
    };
    let members = match render::object(message, &[raw], 0) {
        Ok(members) => members,
        Err(err) => {
            let (path, source) = err.into_parts();
            return Err(DecodeError::Field {
                api_version,
                kind,
                path,
                source,
            });
        }
    };
    // TypeMeta comes first in every Go object, kind before apiVersion.
    let mut object = Map::with_capacity(members.len() + 2);
    object.insert("kind".to_owned(), Value::String(kind));
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.extend(members);
    Ok(Value::Object(object))
}

/// Whether [`decode`] has a table for this apiVersion and kind.
pub fn is_supported(api_version: &str, kind: &str) -> bool {
    schema::lookup(api_version, kind).is_some()
}

/// Every (apiVersion, kind) [`decode`] accepts, sorted; `DeleteOptions`,
/// accepted under any apiVersion, is not repeated for each group.
pub fn supported_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    schema::kinds()
}
