//! ledge's object model: the resource registry (kinds, scopes, verbs, short names), label and
//! field selectors, name/label validation, patch algorithms, and the Kubernetes `Status` error.
//! Pure logic: no IO, no tokio, no hyper.

pub mod json;
pub mod patch;
pub mod quantity;
pub mod resource;
pub mod selector;
pub mod status;
pub mod stream;
pub mod time;
pub mod tunnel;
pub mod validation;

pub use json::Pointer;
pub use resource::{ResourceDef, Subresource};
pub use status::{ApiError, GroupResource, StatusCause};
