//! The reconcile loop: workers take keys from a [`WorkQueue`], call `reconcile`, and requeue
//! according to the returned [`Action`] or, on error, with back-off.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ledge_api::ApiError;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::queue::WorkQueue;

/// Which object to reconcile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace (None for cluster-scoped).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of an object.
    pub fn of(obj: &Value) -> Self {
        let meta = obj.get("metadata");
        let s = |f: &str| {
            meta.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        Self {
            namespace: s("namespace"),
            name: s("name").unwrap_or_default(),
        }
    }

    /// A namespaced key.
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        Self {
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What to do after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object or something it watches changes.
    AwaitChange,
    /// Look again after this long (e.g. a deadline or a minimum-ready wait).
    RequeueAfter(Duration),
}

/// Run `workers` workers over `queue` until `cancel`.
pub async fn run<F, Fut>(
    name: &'static str,
    queue: Arc<WorkQueue<ObjectKey>>,
    workers: usize,
    cancel: CancellationToken,
    reconcile: F,
) where
    F: Fn(ObjectKey) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Action, ApiError>> + Send,
{
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let (queue, cancel, reconcile) = (queue.clone(), cancel.clone(), reconcile.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let key = tokio::select! {
                    _ = cancel.cancelled() => return,
                    k = queue.next() => k,
                };
                match reconcile(key.clone()).await {
                    Ok(Action::AwaitChange) => queue.forget(&key),
                    Ok(Action::RequeueAfter(d)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), d);
                    }
                    Err(e) => {
                        // Conflicts are routine (someone else wrote first); anything else is worth a line.
                        if e.code == 409 {
                            tracing::debug!(controller = name, %key, error = %e, "reconcile conflict; retrying");
                        } else {
                            tracing::warn!(controller = name, %key, error = %e, "reconcile failed; retrying with back-off");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}
