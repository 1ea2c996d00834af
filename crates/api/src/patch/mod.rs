//! The three PATCH algorithms of the Kubernetes API (kube-api.md §2): JSON patch (RFC 6902,
//! `application/json-patch+json`), JSON merge patch (RFC 7386, `application/merge-patch+json`)
//! and strategic merge patch (`application/strategic-merge-patch+json`, built-in kinds only).
//!
//! Strategic merge patch needs per-field metadata ([`PatchSchema`]); [`builtin_schema`] carries
//! the merge keys of the built-in kinds. Server-side apply (`application/apply-patch+yaml`) and
//! `fieldValidation` do not live here.
//!
//! # Strategic merge patch in short
//! - Maps merge recursively; `null` deletes a key.
//! - Lists are replaced whole unless the schema says `merge`: lists of objects then merge by
//!   their merge key, lists of scalars become an ordered set union.
//! - Directives: `$patch: replace | delete | merge` on maps and list elements, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`.
//! - Order of merged lists follows upstream: elements named in the patch (or the
//!   `$setElementOrder` list) take that order, server-only elements keep their live positions
//!   relative to them, and elements new to the list land before later server-only ones.

mod order;
mod schema;
mod strategic;

pub use schema::{FieldStrategy, PatchSchema, builtin_schema};
pub use strategic::strategic_merge;

use serde_json::Value;

/// Why a patch could not be applied; `Display` names the field and is meant for the Status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document has the wrong shape for its patch type.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
    /// A JSON patch `test` operation found a different value.
    #[error("json patch operation {index} (test) failed: the value at {path:?} did not match")]
    TestFailed {
        /// Position of the operation in the patch.
        index: usize,
        /// JSON pointer of the tested location.
        path: String,
    },
    /// A JSON patch operation could not be applied (missing path, index out of range, …).
    #[error("json patch operation {index} ({op}) failed at {path:?}: {reason}")]
    OperationFailed {
        /// Position of the operation in the patch.
        index: usize,
        /// The operation name (`add`, `remove`, …).
        op: String,
        /// JSON pointer of the operation's target.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A `$patch` directive other than `replace`, `delete` or `merge`.
    #[error("{field}: unknown patch type: {value}")]
    UnknownPatchType {
        /// Where the directive was found.
        field: String,
        /// The directive's value.
        value: String,
    },
    /// A malformed `$retainKeys`, `$setElementOrder` or `$deleteFromPrimitiveList` directive.
    #[error("{field}: invalid patch format of {directive}: {reason}")]
    BadDirective {
        /// The field the directive applies to.
        field: String,
        /// The directive (`$retainKeys`, …).
        directive: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The patch list names elements in a different order than its `$setElementOrder` list.
    #[error("{field}: the order in the patch list doesn't match the $setElementOrder list")]
    OrderMismatch {
        /// The list field.
        field: String,
    },
    /// An element of a merged list of objects lacks the merge key.
    #[error("{field}: map {element} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// The list element (or list) concerned.
        field: String,
        /// The merge key the schema declares.
        key: String,
        /// The element, as JSON.
        element: String,
    },
    /// A list to merge contains lists.
    #[error("{field}: lists of lists are not supported")]
    ListOfLists {
        /// The list field.
        field: String,
    },
    /// A list to merge mixes element types.
    #[error("{field}: list element types are not identical")]
    MixedList {
        /// The list field.
        field: String,
    },
    /// A merge list of objects has no merge key in the schema.
    #[error("{field}: cannot merge lists without merge key")]
    NoMergeKeyForObjects {
        /// The list field.
        field: String,
    },
    /// A `$setElementOrder` target is not a list in the object or the patch.
    #[error("{field}: expected a list")]
    NotAList {
        /// The field.
        field: String,
    },
}

impl PatchError {
    /// The field path the error is about, for `details.causes[].field`.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidPatch(_) => None,
            Self::TestFailed { path, .. } | Self::OperationFailed { path, .. } => Some(path),
            Self::UnknownPatchType { field, .. }
            | Self::BadDirective { field, .. }
            | Self::OrderMismatch { field }
            | Self::MissingMergeKey { field, .. }
            | Self::ListOfLists { field }
            | Self::MixedList { field }
            | Self::NoMergeKeyForObjects { field }
            | Self::NotAList { field } => Some(field),
        }
    }

    /// The HTTP status to answer with: 400 BadRequest for a malformed patch document,
    /// 422 Unprocessable Entity for a well-formed patch that does not apply to this object
    /// (upstream answers JSON patch application failures and lists of lists with 422).
    pub fn status_code(&self) -> u16 {
        match self {
            Self::InvalidPatch(_)
            | Self::UnknownPatchType { .. }
            | Self::BadDirective { .. }
            | Self::OrderMismatch { .. } => 400,
            Self::TestFailed { .. }
            | Self::OperationFailed { .. }
            | Self::MissingMergeKey { .. }
            | Self::ListOfLists { .. }
            | Self::MixedList { .. }
            | Self::NoMergeKeyForObjects { .. }
            | Self::NotAList { .. } => 422,
        }
    }
}

/// Applies an RFC 6902 JSON patch (`patch` must be a list of operations) to a copy of `doc`.
///
/// # Errors
/// [`PatchError::InvalidPatch`] when the operations cannot be decoded,
/// [`PatchError::TestFailed`] or [`PatchError::OperationFailed`] when one does not apply.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidPatch(format!("not a JSON patch operation list: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| {
        let path = e.path.to_string();
        let op = ops.get(e.operation).map_or("unknown", |op| match op {
            json_patch::PatchOperation::Add(_) => "add",
            json_patch::PatchOperation::Remove(_) => "remove",
            json_patch::PatchOperation::Replace(_) => "replace",
            json_patch::PatchOperation::Move(_) => "move",
            json_patch::PatchOperation::Copy(_) => "copy",
            json_patch::PatchOperation::Test(_) => "test",
        });
        match e.kind {
            json_patch::PatchErrorKind::TestFailed => PatchError::TestFailed {
                index: e.operation,
                path,
            },
            kind => PatchError::OperationFailed {
                index: e.operation,
                op: op.to_string(),
                path,
                reason: kind.to_string(),
            },
        }
    })?;
    Ok(out)
}

/// Applies an RFC 7386 JSON merge patch: maps merge, `null` deletes, everything else replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

#[cfg(test)]
mod tests;
