//! Watches on etcd that survive lost connections and members.
//!
//! A [`follow`] stream is fed by a task that holds one etcd watch and, when the connection
//! breaks (a member killed, a network blip, a lost leader), opens a new one from the revision
//! after the last event it delivered, so the consumer sees no gap and no repeat. Only two things
//! end the stream with an error: etcd compacted past the resume point (`Compacted`), or the
//! consumer went away. While etcd is unreachable the task keeps trying with capped back-off and
//! warns once.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{EtcdStore, convert, prefix_end};
use crate::{Event, EventKind, Result, Revision, StoreError, WatchStream};

/// Events buffered between the etcd watch and a slow consumer.
const BUFFER: usize = 1024;
/// The longest pause between attempts to re-open a broken watch.
const RETRY_CAP: Duration = Duration::from_secs(2);

/// A stream of the events under `prefix` after `after`, resuming across broken connections.
pub(super) fn follow(store: EtcdStore, prefix: String, after: Revision) -> WatchStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(pump(store, prefix, after, tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

async fn pump(store: EtcdStore, prefix: String, after: Revision, tx: mpsc::Sender<Result<Event>>) {
    let mut last = after;
    let mut failures: u32 = 0;
    loop {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_start_revision(last + 1)
            .with_prev_key()
            .with_progress_notify();
        let mut client = store.inner.watch_client().watch_client();
        let opened = tokio::select! {
            _ = tx.closed() => return,
            opened = client.watch(prefix.as_str(), Some(options)) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(prefix, error = %e, "cannot open an etcd watch; retrying");
                }
                backoff(failures, &tx).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                _ = tx.closed() => return,
                message = stream.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(prefix, error = %e, "etcd watch broke; resuming");
                    break;
                }
            };
            if failures > 0 && response.created() {
                tracing::info!(prefix, revision = last, "etcd watch resumed");
                failures = 0;
            }
            match deliver(&store, response, &mut last, &tx).await {
                Flow::Continue => {}
                Flow::Reopen => break,
                Flow::Stop => return,
            }
        }
        failures += 1;
        backoff(failures, &tx).await;
    }
}

enum Flow {
    Continue,
    Reopen,
    Stop,
}

/// Hand one watch response's events to the consumer, advancing `last`.
async fn deliver(
    store: &EtcdStore,
    response: WatchResponse,
    last: &mut Revision,
    tx: &mpsc::Sender<Result<Event>>,
) -> Flow {
    if response.compact_revision() > 0 {
        store.learn_compacted(response.compact_revision());
        let _ = tx
            .send(Err(StoreError::Compacted {
                requested: *last,
                compacted: response.compact_revision(),
            }))
            .await;
        return Flow::Stop;
    }
    for event in response.events() {
        let converted = match convert_event(event) {
            Ok(ev) => ev,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return Flow::Stop;
            }
        };
        let revision = converted.revision();
        if revision <= *last {
            continue;
        }
        *last = revision;
        store.seen(revision);
        if tx.send(Ok(converted)).await.is_err() {
            return Flow::Stop;
        }
    }
    if response.canceled() {
        // e.g. "no leader" while a member is cut off: open the watch again elsewhere.
        tracing::debug!(
            reason = response.cancel_reason(),
            "etcd cancelled a watch; resuming"
        );
        return Flow::Reopen;
    }
    Flow::Continue
}

fn convert_event(event: &etcd_client::Event) -> Result<Event> {
    let kv = event
        .kv()
        .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
    let prev = event.prev_kv().map(convert).transpose()?;
    match event.event_type() {
        EventType::Put => Ok(Event {
            kind: EventKind::Put,
            kv: convert(kv)?,
            prev,
        }),
        EventType::Delete => {
            // The store's contract: a delete carries the last value at the delete's revision.
            let mut gone = match &prev {
                Some(prev) => prev.clone(),
                None => convert(kv)?,
            };
            gone.mod_revision = kv.mod_revision();
            Ok(Event {
                kind: EventKind::Delete,
                kv: gone,
                prev,
            })
        }
    }
}

async fn backoff(failures: u32, tx: &mpsc::Sender<Result<Event>>) {
    let exp = 50u64.saturating_mul(1 << failures.min(6));
    let pause = Duration::from_millis(exp).min(RETRY_CAP);
    tokio::select! {
        _ = tx.closed() => {}
        _ = tokio::time::sleep(pause) => {}
    }
}
