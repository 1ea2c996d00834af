//! Errors of protobuf decoding, worded for the user who sent the body.
//!
//! [`DecodeError`] is what [`crate::decode`] returns; its message goes into
//! the `Status` of a 400 or 415 answer as is. [`FieldError`] says what is wrong
//! with the bytes of one field; the decoder wraps it with the JSON path of the
//! field (`spec.template.spec.containers[0].ports[1].containerPort`).

use std::fmt::Write as _;

/// Why a Kubernetes protobuf body could not be turned into a JSON object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The body does not start with the 4-byte magic `k8s\0`.
    #[error("protobuf body is missing the \"k8s\\x00\" prefix")]
    MissingMagic,
    /// The body is only the magic, with no envelope after it.
    #[error("protobuf body is empty after the \"k8s\\x00\" prefix")]
    EmptyBody,
    /// The `runtime.Unknown` envelope itself is malformed.
    #[error("malformed protobuf envelope (runtime.Unknown): {0}")]
    Envelope(#[source] FieldError),
    /// The envelope's typeMeta carries no kind or no apiVersion.
    #[error("protobuf body has no {0} in its typeMeta")]
    MissingTypeMeta(&'static str),
    /// The envelope declares an encoding of `raw` other than plain protobuf.
    #[error("unsupported {field} {value:?} in a protobuf body; send JSON instead")]
    Encoding {
        /// `contentEncoding` or `contentType`.
        field: &'static str,
        /// What the envelope declared.
        value: String,
    },
    /// The envelope names a kind this crate has no message table for.
    #[error("unsupported kind {api_version} {kind} in a protobuf body; send JSON instead")]
    UnsupportedKind {
        /// The envelope's apiVersion, e.g. `apps/v1`.
        api_version: String,
        /// The envelope's kind, e.g. `Deployment`.
        kind: String,
    },
    /// A field of the object is malformed; `path` is its JSON path.
    #[error(
        "cannot decode {api_version} {kind} from protobuf{}: {source}",
        at(path)
    )]
    Field {
        /// The object's apiVersion.
        api_version: String,
        /// The object's kind.
        kind: String,
        /// JSON path of the field, empty for the object itself.
        path: String,
        /// What is wrong with the field's bytes.
        #[source]
        source: FieldError,
    },
}

impl DecodeError {
    /// True when the body is well-formed but uses something this crate does
    /// not decode (a kind, an encoding): the server should answer 415
    /// Unsupported Media Type rather than 400 Bad Request, so that the user
    /// knows that sending JSON will work.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            DecodeError::UnsupportedKind { .. }
                | DecodeError::Encoding { .. }
                | DecodeError::Field {
                    source: FieldError::Cbor,
                    ..
                }
        )
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// What is wrong with the bytes of one field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// A length or varint runs past the end of its message.
    #[error("unexpected end of data")]
    Truncated,
    /// A varint is longer than 10 bytes.
    #[error("varint longer than 10 bytes")]
    VarintOverflow,
    /// A field key with field number 0 or above 2^29-1.
    #[error("illegal field key {0}")]
    IllegalTag(u64),
    /// Wire type 6 or 7.
    #[error("illegal wire type {0}")]
    IllegalWireType(u8),
    /// An end-group marker without its start-group.
    #[error("end-group marker without a matching start-group")]
    UnmatchedEndGroup,
    /// A known field arrived with a wire type its type cannot have.
    #[error("wrong wire type {found}, expected {expected}")]
    WrongWireType {
        /// The wire type on the wire.
        found: &'static str,
        /// The wire type the field's type needs.
        expected: &'static str,
    },
    /// Messages nested deeper than any Kubernetes type does.
    #[error("messages nested more than {0} deep")]
    TooDeep(usize),
    /// An `IntOrString` whose type is neither 0 (int) nor 1 (string).
    #[error("IntOrString type {0} is neither 0 (int) nor 1 (string)")]
    IntOrStringType(i64),
    /// A `resource.Quantity` string that Kubernetes would not parse.
    #[error(
        "quantity {0:?} does not match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Quantity(String),
    /// A `RawExtension` or `FieldsV1` whose bytes are not JSON.
    #[error("embedded object is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A `RawExtension` or `FieldsV1` whose bytes are neither JSON nor CBOR.
    #[error("embedded object is neither JSON nor CBOR")]
    UnknownEmbedding,
    /// A `RawExtension` or `FieldsV1` holding CBOR, which ledge does not read.
    #[error("embedded object is CBOR, which ledge does not decode; send JSON instead")]
    Cbor,
}

/// One step of a JSON path.
#[derive(Debug)]
pub(crate) enum Seg {
    /// An object member.
    Field(&'static str),
    /// A list element.
    Index(usize),
    /// A map entry.
    Key(String),
}

/// A [`FieldError`] and where it happened, collected while unwinding.
#[derive(Debug)]
pub(crate) struct PathError {
    /// Path segments, innermost first.
    rev_path: Vec<Seg>,
    pub(crate) source: FieldError,
}

impl PathError {
    /// Adds the segment of the enclosing field (called on the way out).
    pub(crate) fn within(mut self, seg: Seg) -> Self {
        if !matches!(seg, Seg::Field("")) {
            self.rev_path.push(seg);
        }
        self
    }

    /// The rendered path and the error.
    pub(crate) fn into_parts(self) -> (String, FieldError) {
        (self.path(), self.source)
    }

    /// Renders the path the way Kubernetes field errors do: `a.b[0].c[key]`.
    pub(crate) fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.rev_path.iter().rev() {
            match seg {
                Seg::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                // Writing to a String cannot fail.
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
                Seg::Key(k) => {
                    let _ = write!(out, "[{k}]");
                }
            }
        }
        out
    }
}

impl From<FieldError> for PathError {
    fn from(source: FieldError) -> Self {
        PathError {
            rev_path: Vec::new(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_kubernetes_field_paths() {
        let err = PathError::from(FieldError::Truncated)
            .within(Seg::Field("containerPort"))
            .within(Seg::Index(1))
            .within(Seg::Field("ports"))
            .within(Seg::Field(""))
            .within(Seg::Key("app".into()))
            .within(Seg::Field("labels"));
        assert_eq!(err.path(), "labels[app].ports[1].containerPort");
    }

    #[test]
    fn messages_name_the_object_and_field() {
        let err = DecodeError::Field {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            path: "spec.replicas".into(),
            source: FieldError::WrongWireType {
                found: "length-delimited",
                expected: "varint",
            },
        };
        assert_eq!(
            err.to_string(),
            "cannot decode apps/v1 Deployment from protobuf at spec.replicas: \
             wrong wire type length-delimited, expected varint"
        );
        assert_eq!(
            DecodeError::MissingMagic.to_string(),
            r#"protobuf body is missing the "k8s\x00" prefix"#
        );
    }
}
