//! Turning informer changes into work: each change of a watched kind is mapped to the keys of
//! the objects to reconcile (itself for the controller's own kind, its controller owner for an
//! owned kind) and queued. A subscriber that falls behind the broadcast cannot tell what it
//! missed, so it queues everything instead (slower, never wrong).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::informer::Informer;
use crate::queue::WorkQueue;
use crate::runner::ObjectKey;

/// Queue, until `cancel`, the keys `map` derives from every change `source` reports (for a
/// deletion `map` sees the last state). If the subscription lags, every object of `primary`
/// (the controller's own kind) is queued.
pub fn enqueue_changes<F>(
    source: &Informer,
    primary: Arc<Informer>,
    queue: Arc<WorkQueue<ObjectKey>>,
    cancel: CancellationToken,
    map: F,
) where
    F: Fn(&Value) -> Vec<ObjectKey> + Send + 'static,
{
    let mut rx = source.subscribe();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                n = rx.recv() => n,
            };
            match next {
                Ok(obj) => {
                    for key in map(&obj) {
                        queue.add(key);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => enqueue_all(&primary, &queue),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Queue every object `informer` holds (a full resync).
pub fn enqueue_all(informer: &Informer, queue: &WorkQueue<ObjectKey>) {
    for obj in informer.store().list(None) {
        queue.add(ObjectKey::of(&obj));
    }
}

/// A `map` for [`enqueue_changes`] on the controller's own kind: the object itself.
pub fn itself(obj: &Value) -> Vec<ObjectKey> {
    vec![ObjectKey::of(obj)]
}
