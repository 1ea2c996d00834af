//! Static descriptions of the Kubernetes protobuf messages ledge decodes.
//!
//! A [`Message`] lists its fields in Go declaration order (the order Go's
//! `encoding/json` prints them); each [`Field`] joins the protobuf side (field
//! number, type, repeated or map) with the JSON side (name, pointer or value,
//! `omitempty`/`omitzero`, inlined into the parent). The tables in
//! `generated/` come from the upstream `generated.proto` and `types.go` via
//! `tools/gen_schema.py`; this file holds the shapes and the kind lookup only.

// One field per line, as generated: rustfmt would fold short tables and
// explode long ones, blurring the diff of a regeneration.
#[rustfmt::skip]
mod generated;

use crate::special::Special;

/// One protobuf message (a Go struct).
#[derive(Debug)]
pub(crate) struct Message {
    /// Fields in Go declaration order.
    pub(crate) fields: &'static [Field],
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// Protobuf field number.
    pub(crate) number: u32,
    /// JSON member name; empty for an embedded struct inlined into its parent.
    pub(crate) json: &'static str,
    /// Singular (value or pointer), inlined, repeated or map.
    pub(crate) shape: Shape,
    /// Element type (map value type for maps).
    pub(crate) ty: Type,
    /// When Go's JSON encoder leaves the field out.
    pub(crate) omit: Omit,
}

/// How a field holds its type, which decides what "absent" prints as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A Go value field: absent means Go's zero value.
    Val,
    /// A Go pointer field: absent means nil.
    Ptr,
    /// An embedded struct whose JSON members are promoted into the parent.
    Inline,
    /// A Go slice (`repeated`): absent means nil.
    Rep,
    /// A Go map with string keys: absent means nil.
    Map,
}

/// What a field (or each element of it) holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Type {
    /// `string` (or a named string type).
    Str,
    /// `[]byte`, shown as base64.
    Bytes,
    /// `bool`.
    Bool,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// A nested struct.
    Msg(&'static Message),
    /// `metav1.Time`.
    Time,
    /// `metav1.MicroTime`.
    MicroTime,
    /// `metav1.Duration` (no stable kind uses it today; beta ones do).
    #[allow(dead_code)]
    Duration,
    /// `resource.Quantity`.
    Quantity,
    /// `intstr.IntOrString`.
    IntOrString,
    /// `runtime.RawExtension`.
    RawExtension,
    /// `metav1.FieldsV1`.
    FieldsV1,
    /// A named `[]string` wrapped in a message (`ExtraValue`).
    StrList,
}

impl Type {
    /// The custom-marshalled type this is, if any.
    pub(crate) fn special(self) -> Option<Special> {
        Some(match self {
            Type::Time => Special::Time,
            Type::MicroTime => Special::MicroTime,
            Type::Duration => Special::Duration,
            Type::Quantity => Special::Quantity,
            Type::IntOrString => Special::IntOrString,
            Type::RawExtension => Special::RawExtension,
            Type::FieldsV1 => Special::FieldsV1,
            Type::StrList => Special::StrList,
            Type::Str | Type::Bytes | Type::Bool | Type::I32 | Type::I64 | Type::Msg(_) => {
                return None;
            }
        })
    }
}

/// The JSON tag options that drop a field from the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Omit {
    /// Neither: always printed (`null` for nil pointers, slices and maps).
    Never,
    /// `omitempty`: dropped when false, 0, "", nil, or an empty slice or map.
    Empty,
    /// `omitzero`: dropped when the value is its type's zero value.
    Zero,
}

/// Builds a [`Field`]; keeps the generated tables one line per field.
pub(crate) const fn f(
    number: u32,
    json: &'static str,
    shape: Shape,
    ty: Type,
    omit: Omit,
) -> Field {
    Field {
        number,
        json,
        shape,
        ty,
        omit,
    }
}

/// The message of a registered kind; `DeleteOptions` under any apiVersion,
/// as `metav1.AddToGroupVersion` registers it in every group version.
pub(crate) fn lookup(api_version: &str, kind: &str) -> Option<&'static Message> {
    let kinds = generated::KINDS;
    if let Ok(i) = kinds.binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind))) {
        return Some(kinds[i].2);
    }
    generated::META_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, m)| *m)
}

/// Every (apiVersion, kind) with a table, sorted.
pub(crate) fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    generated::KINDS.iter().map(|(v, k, _)| (*v, *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sorted_for_binary_search() {
        let all: Vec<_> = kinds().collect();
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "gen_kinds.rs is not sorted"
        );
    }

    #[test]
    fn looks_up_kinds_and_meta_kinds() {
        assert!(lookup("v1", "ConfigMap").is_some());
        assert!(lookup("apps/v1", "Deployment").is_some());
        assert!(lookup("apps/v1", "DeleteOptions").is_some());
        assert!(lookup("v1", "DeleteOptions").is_some());
        assert!(lookup("apps/v1", "ConfigMap").is_none());
        assert!(lookup("apps/v1beta1", "Deployment").is_none());
    }
}
