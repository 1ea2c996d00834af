//! The envelope of a Kubernetes protobuf body: the magic `k8s\0` followed by
//! a `runtime.Unknown` message.
//!
//! ```text
//! message Unknown {
//!   optional TypeMeta typeMeta = 1;        // {apiVersion = 1; kind = 2}
//!   optional bytes raw = 2;                // the object's own message
//!   optional string contentEncoding = 3;
//!   optional string contentType = 4;
//! }
//! ```
//!
//! See apimachinery `pkg/runtime/serializer/protobuf/protobuf.go` (`Decode`).

use crate::error::{DecodeError, FieldError};
use crate::special::{bytes, string};
use crate::wire::Reader;

/// The 4 bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The parts of the envelope the decoder needs.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) raw: &'a [u8],
}

/// Checks the magic and reads the `runtime.Unknown` after it.
pub(crate) fn parse(body: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    let unknown = body.strip_prefix(&MAGIC).ok_or(DecodeError::MissingMagic)?;
    if unknown.is_empty() {
        return Err(DecodeError::EmptyBody);
    }
    let mut env = Envelope {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
    };
    let (mut encoding, mut content_type) = (String::new(), String::new());
    let mut reader = Reader::new(unknown);
    while let Some((number, payload)) = reader.next_field().map_err(DecodeError::Envelope)? {
        match number {
            1 => type_meta(bytes(payload), &mut env).map_err(DecodeError::Envelope)?,
            2 => env.raw = bytes(payload).map_err(DecodeError::Envelope)?,
            3 => encoding = string(payload).map_err(DecodeError::Envelope)?,
            4 => content_type = string(payload).map_err(DecodeError::Envelope)?,
            _ => {}
        }
    }
    // Upstream ignores both fields and parses `raw` as protobuf regardless;
    // refusing anything else explains the failure instead of mis-decoding.
    if !encoding.is_empty() {
        return Err(DecodeError::Encoding {
            field: "contentEncoding",
            value: encoding,
        });
    }
    if !content_type.is_empty() && content_type != MEDIA_TYPE {
        return Err(DecodeError::Encoding {
            field: "contentType",
            value: content_type,
        });
    }
    if env.kind.is_empty() {
        return Err(DecodeError::MissingTypeMeta("kind"));
    }
    if env.api_version.is_empty() {
        return Err(DecodeError::MissingTypeMeta("apiVersion"));
    }
    Ok(env)
}

fn type_meta(buf: Result<&[u8], FieldError>, env: &mut Envelope<'_>) -> Result<(), FieldError> {
    let mut reader = Reader::new(buf?);
    while let Some((number, payload)) = reader.next_field()? {
        match number {
            1 => env.api_version = string(payload)?,
            2 => env.kind = string(payload)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_type_meta_and_raw() {
        let body = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x02\x0a\x00";
        let env = parse(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (env.api_version.as_str(), env.kind.as_str()),
            ("v1", "Namespace")
        );
        assert_eq!(env.raw, b"\x0a\x00");
    }

    #[test]
    fn explains_what_is_wrong() {
        let msg = |body: &[u8]| parse(body).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            msg(b"{}"),
            r#"protobuf body is missing the "k8s\x00" prefix"#
        );
        assert_eq!(
            msg(b"k8s\0"),
            r#"protobuf body is empty after the "k8s\x00" prefix"#
        );
        assert_eq!(
            msg(b"k8s\0\x12\x00"),
            "protobuf body has no kind in its typeMeta"
        );
        assert_eq!(
            msg(b"k8s\0\x0a\x06\x12\x04Node\x1a\x04gzip"),
            r#"unsupported contentEncoding "gzip" in a protobuf body; send JSON instead"#
        );
        assert_eq!(
            msg(b"k8s\0\x0a\x05"),
            "malformed protobuf envelope (runtime.Unknown): unexpected end of data"
        );
    }
}
