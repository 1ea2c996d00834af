//! Label and field selectors: the `labelSelector` / `fieldSelector` query parameters of list and
//! watch requests, and `metav1.LabelSelector` objects inside specs (Deployment, ReplicaSet,
//! Service-like controllers).
//!
//! Parsing follows `k8s.io/apimachinery` `labels.Parse` and `fields.ParseSelector`, including
//! their validation and error wording, so the API server can answer 400 BadRequest with the
//! message of a [`SelectorError`]. Which field paths a kind supports in field selectors is the
//! registry's decision, not this module's: [`FieldSelector::requirements`] exposes them.

mod field;
mod label;
mod parse;

pub use field::{
    FieldOperator, FieldRequirement, FieldSelector, escape_value, field_value, unescape_value,
};
pub use label::{LabelSelector, Labels, Operator, Requirement};

/// Why a selector string or object was rejected; `Display` is the message for a 400 Status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector string does not follow the grammar outside a single requirement.
    #[error("{0}")]
    Syntax(String),
    /// One requirement of a label selector string is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A requirement built from parts (e.g. `matchExpressions`) failed validation.
    #[error("{0}")]
    InvalidRequirement(String),
    /// A `matchExpressions` operator is not In, NotIn, Exists or DoesNotExist.
    #[error("{0:?} is not a valid label selector operator")]
    UnknownOperator(String),
    /// A `metav1.LabelSelector` object has the wrong JSON shape.
    #[error("invalid label selector: {0}")]
    Malformed(String),
    /// A field selector term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm {
        /// The whole selector as sent.
        selector: String,
        /// The term that could not be split.
        term: String,
    },
    /// A field selector value contains a backslash escape other than `\\`, `\,` or `\=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value contains an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0:?}")]
    UnescapedCharacter(char),
}

#[cfg(test)]
mod tests;
