//! The API a controller talks to. In the server it is served in process by the API server's
//! own pipeline (same validation, same watch cache); on a node it is the HTTPS API. Objects are
//! JSON, errors are Kubernetes `Status` errors.

use std::pin::Pin;
use std::sync::Arc;

use ledge_api::ApiError;
use serde_json::Value;

/// A boxed future, keeping [`Client`] object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A boxed stream.
pub type BoxStream<T> = Pin<Box<dyn futures_util::Stream<Item = T> + Send + 'static>>;

/// A resource a controller reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Kind name.
    pub kind: &'static str,
    /// Whether objects are namespaced.
    pub namespaced: bool,
}

impl Kind {
    /// Describe a resource.
    pub const fn new(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        kind: &'static str,
        namespaced: bool,
    ) -> Self {
        Self {
            group,
            version,
            plural,
            kind,
            namespaced,
        }
    }

    /// `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// One watch event. Objects are shared, not copied: an in-process watch hands every subscriber
/// the watch cache's own decoded object.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent {
    /// Created, or entered the watched set.
    Added(Arc<Value>),
    /// Changed.
    Modified(Arc<Value>),
    /// Deleted, or left the watched set (last state).
    Deleted(Arc<Value>),
    /// Progress marker with a resourceVersion.
    Bookmark(String),
}

/// The Kubernetes API, as controllers use it.
pub trait Client: Send + Sync + 'static {
    /// GET one object; `None` when it does not exist.
    fn get<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>>;

    /// LIST objects (all namespaces when `namespace` is `None`), with an optional label
    /// selector; returns the items and the list's resourceVersion.
    fn list<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        labels: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(Vec<Value>, String), ApiError>>;

    /// POST.
    fn create<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// PUT (optimistic concurrency on the object's resourceVersion).
    fn update<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// PUT `/status`.
    fn update_status<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        obj: Value,
    ) -> BoxFuture<'a, Result<Value, ApiError>>;

    /// DELETE with a propagation policy (`Background` when `None`).
    fn delete<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        name: &'a str,
        propagation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// POST `pods/<name>/binding`: assign a pending pod to a node (409 if already bound).
    fn bind<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;

    /// WATCH from `resource_version` (all namespaces when `namespace` is `None`). The stream
    /// ends on timeout or error; a 410 arrives as an `Err` with code 410.
    fn watch<'a>(
        &'a self,
        kind: &'a Kind,
        namespace: Option<&'a str>,
        resource_version: &'a str,
    ) -> BoxFuture<'a, Result<BoxStream<Result<WatchEvent, ApiError>>, ApiError>>;
}

/// The API refused a creation because the namespace is being deleted: nothing more can be
/// created there, so there is nothing to retry (upstream checks the `NamespaceTerminating`
/// status cause; ledge's message says the same).
pub fn is_namespace_terminating(e: &ApiError) -> bool {
    e.code == 403
        && (e.causes.iter().any(|c| c.reason == "NamespaceTerminating")
            || e.message.contains("because it is being terminated"))
}
