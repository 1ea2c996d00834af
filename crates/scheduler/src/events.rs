//! How the scheduler records `Scheduled` events: off the binding path, through a bounded
//! queue that one task drains, as upstream's event broadcaster does (`client-go/tools/events`:
//! a queue of 1,000 events, `DropIfChannelFull`, written to the API one at a time). A binding
//! never waits for its event; in a burst that outruns the writer, events beyond the queue are
//! dropped and counted, and a warning says how many.
//!
//! `FailedScheduling` events do not come here: the scheduler bumps their count in place
//! (upstream's correlator), which needs the created event's name, so it writes them itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledge_api::time::format_time;
use ledge_controller::Client;
use ledge_controller::kinds::EVENT;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::DEFAULT_SCHEDULER;
use crate::framework::str_at;

/// Events queued before new ones are dropped (upstream `maxQueuedEvents`).
pub const QUEUE: usize = 1_000;

/// How often a warning about dropped events may be logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The sending half; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(String, Value)>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Start the task writing queued events; it stops with `cancel`.
    pub fn start(client: Arc<dyn Client>, cancel: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_events(client, rx, dropped.clone(), cancel));
        Self { tx, dropped }
    }

    /// Queue an event about `pod`; dropped (and counted) when the queue is full.
    pub fn record(&self, pod: &Value, kind: &str, reason: &str, message: &str) {
        // The event is built only once it has a place in the queue.
        let Ok(slot) = self.tx.try_reserve() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (_, event) = event_object(pod, kind, reason, message);
        slot.send((str_at(pod, "/metadata/namespace").to_string(), event));
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_events(
    client: Arc<dyn Client>,
    mut rx: mpsc::Receiver<(String, Value)>,
    dropped: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    // (when last warned, drops counted then): the first drops are reported at once.
    let start = Instant::now();
    let mut warned = (start.checked_sub(WARN_EVERY).unwrap_or(start), 0u64);
    loop {
        let (ns, event) = tokio::select! {
            _ = cancel.cancelled() => return,
            next = rx.recv() => match next {
                Some(e) => e,
                None => return,
            },
        };
        if let Err(e) = client.create(&EVENT, Some(&ns), event).await {
            tracing::debug!(error = %e, "could not record event");
        }
        let total = dropped.load(Ordering::Relaxed);
        if total > warned.1 && warned.0.elapsed() >= WARN_EVERY {
            tracing::warn!(
                dropped = total - warned.1,
                queue = QUEUE,
                "scheduler events dropped: more bindings than the event queue holds"
            );
            warned = (Instant::now(), total);
        }
    }
}

/// A core/v1 Event about a pod from the scheduler, and its name.
pub fn event_object(pod: &Value, kind: &str, reason: &str, message: &str) -> (String, Value) {
    // Built from borrowed fields of the shared pod. Named as upstream's recorder names events,
    // `<pod>.<UnixNano in hex>`, so that events of one second list in the order they happened.
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let t = chrono::Utc::now();
    let event_name = format!("{name}.{:x}", t.timestamp_nanos_opt().unwrap_or_default());
    let at = format_time(t);
    let event = json!({
        "metadata": {"name": event_name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name,
                           "uid": str_at(pod, "/metadata/uid"), "apiVersion": "v1",
                           "resourceVersion": str_at(pod, "/metadata/resourceVersion")},
        "reason": reason, "message": message, "type": kind,
        "source": {"component": DEFAULT_SCHEDULER},
        "reportingComponent": DEFAULT_SCHEDULER, "reportingInstance": DEFAULT_SCHEDULER,
        "firstTimestamp": at, "lastTimestamp": at, "count": 1,
    });
    (event_name, event)
}

#[cfg(test)]
mod tests {
    use ledge_controller::testing::FakeApi;

    use super::*;

    fn pod(name: &str) -> Value {
        json!({"metadata": {"namespace": "d", "name": name, "uid": format!("u-{name}")}})
    }

    #[tokio::test]
    async fn queued_events_are_written_and_a_full_queue_drops_the_rest() {
        let api = FakeApi::default();
        let cancel = CancellationToken::new();
        let recorder = Recorder::start(api.client(), cancel.clone());
        // More than the queue holds, faster than the writer can take them: no await between.
        let burst = QUEUE + 500;
        for i in 0..burst {
            recorder.record(&pod(&format!("p{i}")), "Normal", "Scheduled", "assigned");
        }
        let dropped = recorder.dropped() as usize;
        assert!(dropped > 0 && dropped <= 500 + 1, "dropped {dropped}");
        let written = burst - dropped;
        let deadline = Instant::now() + Duration::from_secs(30);
        let count = || api.all(&EVENT).len();
        while count() < written && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count(), written);
        let events = api.all(&EVENT);
        let first = events
            .iter()
            .find(|e| str_at(e, "/involvedObject/name") == "p0")
            .expect("the first event was kept");
        assert_eq!(str_at(first, "/reason"), "Scheduled");
        assert_eq!(str_at(first, "/involvedObject/uid"), "u-p0");
        assert_eq!(str_at(first, "/source/component"), DEFAULT_SCHEDULER);
        cancel.cancel();
    }
}
