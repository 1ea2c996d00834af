//! The embedded store's single writer thread and its group commit.
//!
//! Every write request goes over one channel to one `std::thread`. The thread takes whatever is
//! queued (up to `max_batch`), applies it in one redb write transaction with immediate
//! durability, commits once (one fsync) and only then publishes the events and answers the
//! callers. An idle store therefore does one fsync per write, a busy one shares an fsync across
//! many. Each request's precondition is checked against the in-transaction state, so requests in
//! one batch behave exactly as if they had run one after another, and one request's failure
//! leaves the others untouched. Reads do not come here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, StorageError, Table};
use tokio::sync::oneshot;

use super::codec::{KV, META, REVISION_KEY, decode_row, encode_row};
use super::hub::Hub;
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError};

/// One write, as the API asked for it.
#[derive(Debug)]
pub(super) enum Op {
    /// Create the key if absent.
    Create { key: String, value: Bytes },
    /// Replace the key if its mod revision is `expected`.
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    /// Delete the key, if `expected` is set only at that mod revision.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// A write waiting for the writer thread, with the channel its answer goes back on.
pub(super) struct Request {
    /// What to write.
    pub(super) op: Op,
    /// Receives the written (or deleted) value once it is durable, or why it was refused.
    pub(super) reply: oneshot::Sender<Result<KeyValue>>,
}

/// Write counters, shared between the writer and [`super::EmbeddedStore::stats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Write transactions committed.
    pub(super) commits: AtomicU64,
    /// Writes that got a revision.
    pub(super) writes: AtomicU64,
}

/// The state the writer thread owns.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) requests: mpsc::Receiver<Request>,
    pub(super) hub: Arc<Hub>,
    pub(super) counters: Arc<Counters>,
    pub(super) max_batch: usize,
}

impl Drop for Writer {
    /// End every watch when the writer stops, also if it stops by panicking: no event can
    /// follow, and a stream that waited forever would hide that.
    fn drop(&mut self) {
        self.hub.close();
    }
}

impl Writer {
    /// Serve requests until every sender is gone; dropping the writer then ends all watches.
    pub(super) fn run(self) {
        let extra = self.max_batch.max(1) - 1;
        // `recv` keeps returning queued requests after the senders are dropped, so a shutdown
        // still answers everything already submitted.
        while let Ok(first) = self.requests.recv() {
            let mut batch = Vec::with_capacity(1 + extra.min(64));
            batch.push(first);
            batch.extend(self.requests.try_iter().take(extra));
            self.commit(batch);
        }
        tracing::debug!("store writer stopped");
    }

    fn commit(&self, batch: Vec<Request>) {
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        match self.apply(&ops) {
            Ok(outcomes) => {
                let events: Vec<Event> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().cloned())
                    .collect();
                if !events.is_empty() {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .writes
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    tracing::trace!(
                        requests = ops.len(),
                        writes = events.len(),
                        "store batch committed"
                    );
                    // Publish before answering: a caller that watches from just before its own
                    // write's revision must find that write in history.
                    self.hub.publish(events);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have stopped waiting; the write stands either way.
                    let _ = reply.send(outcome.map(|event| event.kv));
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = replies.len(), "store write batch failed");
                let error = Arc::new(error);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(Box::new(Arc::clone(&error)))));
                }
            }
        }
    }

    /// Apply `ops` in one transaction. The outer error fails the whole batch: nothing is
    /// acknowledged, and nothing is published (should a failed commit have taken effect after
    /// all, the hub sees the revision gap at the next publish and compacts over it).
    fn apply(&self, ops: &[Op]) -> Result<Vec<Result<Event>>, redb::Error> {
        let mut txn = self.db.begin_write()?;
        // Immediate is redb's default; spelled out because every acknowledgement relies on it.
        txn.set_durability(Durability::Immediate)?;
        let mut outcomes = Vec::with_capacity(ops.len());
        let (start, end) = {
            let mut kv = txn.open_table(KV)?;
            let mut meta = txn.open_table(META)?;
            let start = meta
                .get(REVISION_KEY)?
                .map(|guard| guard.value())
                .unwrap_or(0);
            let mut revision = start;
            for op in ops {
                outcomes.push(apply_op(&mut kv, &mut revision, op)?);
            }
            if revision != start {
                meta.insert(REVISION_KEY, revision)?;
            }
            (start, revision)
        };
        if start == end {
            // Every request was refused: nothing to make durable.
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok(outcomes)
    }
}

/// Apply one op inside the batch's transaction, advancing `revision` if it writes.
fn apply_op(
    kv: &mut Table<'_, &'static str, &'static [u8]>,
    revision: &mut Revision,
    op: &Op,
) -> Result<Result<Event>, redb::Error> {
    let key = op.key();
    let current = match kv.get(key)? {
        None => None,
        Some(row) => match decode_row(key, row.value()) {
            Ok(current) => Some(current),
            Err(corrupt) => return Ok(Err(StoreError::Backend(Box::new(corrupt)))),
        },
    };
    let next = *revision + 1;
    let event = match decide(op, current, next) {
        Ok(event) => event,
        Err(refused) => return Ok(Err(refused)),
    };
    match event.kind {
        EventKind::Put => {
            let row = encode_row(
                event.kv.create_revision,
                event.kv.mod_revision,
                &event.kv.value,
            );
            match kv.insert(key, row.as_slice()) {
                Ok(_) => {}
                // Refused before anything changed: this request fails, the batch goes on.
                Err(too_large @ StorageError::ValueTooLarge(_)) => {
                    return Ok(Err(StoreError::Backend(Box::new(too_large))));
                }
                Err(other) => return Err(other.into()),
            }
        }
        EventKind::Delete => {
            kv.remove(key)?;
        }
    }
    *revision = next;
    Ok(Ok(event))
}

/// The event `op` produces on a key whose stored value is `current`, at revision `next`, or
/// why etcd would refuse it.
fn decide(op: &Op, current: Option<KeyValue>, next: Revision) -> Result<Event> {
    let conflict = |key: &str, expected: Revision, current: KeyValue| StoreError::Conflict {
        key: key.to_owned(),
        expected,
        current: Box::new(current),
    };
    match (op, current) {
        (Op::Create { key, .. }, Some(_)) => Err(StoreError::AlreadyExists(key.clone())),
        (Op::Create { key, value }, None) => Ok(Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: next,
                mod_revision: next,
            },
            prev: None,
        }),
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => {
            Err(StoreError::NotFound(key.clone()))
        }
        (
            Op::Update {
                key,
                value,
                expected,
            },
            Some(current),
        ) => {
            if current.mod_revision != *expected {
                return Err(conflict(key, *expected, current));
            }
            Ok(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: current.create_revision,
                    mod_revision: next,
                },
                prev: Some(current),
            })
        }
        (Op::Delete { key, expected }, Some(current)) => {
            if let Some(expected) = *expected
                && current.mod_revision != expected
            {
                return Err(conflict(key, expected, current));
            }
            Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    mod_revision: next,
                    ..current.clone()
                },
                prev: Some(current),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::from_static(b"old"),
            create_revision: create,
            mod_revision: modified,
        }
    }

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.to_owned(),
            value: Bytes::from_static(b"new"),
        }
    }

    fn update(key: &str, expected: Revision) -> Op {
        Op::Update {
            key: key.to_owned(),
            value: Bytes::from_static(b"new"),
            expected,
        }
    }

    fn delete(key: &str, expected: Option<Revision>) -> Op {
        Op::Delete {
            key: key.to_owned(),
            expected,
        }
    }

    #[test]
    fn create_of_absent_key_starts_its_life_at_next() {
        let event = decide(&create("/k"), None, 9).expect("absent key");
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!((event.kv.create_revision, event.kv.mod_revision), (9, 9));
        assert_eq!(event.prev, None);
    }

    #[test]
    fn create_of_present_key_is_already_exists() {
        let err = decide(&create("/k"), Some(stored("/k", 1, 1)), 9).expect_err("present key");
        assert!(matches!(err, StoreError::AlreadyExists(key) if key == "/k"));
    }

    #[test]
    fn update_keeps_create_revision_and_records_prev() {
        let event =
            decide(&update("/k", 4), Some(stored("/k", 2, 4)), 9).expect("revision matches");
        assert_eq!((event.kv.create_revision, event.kv.mod_revision), (2, 9));
        assert_eq!(&event.kv.value[..], b"new");
        assert_eq!(event.prev, Some(stored("/k", 2, 4)));
    }

    #[test]
    fn update_with_stale_revision_conflicts_with_current_value() {
        let err = decide(&update("/k", 3), Some(stored("/k", 2, 4)), 9).expect_err("stale");
        match err {
            StoreError::Conflict {
                key,
                expected,
                current,
            } => {
                assert_eq!(key, "/k");
                assert_eq!(expected, 3);
                assert_eq!(*current, stored("/k", 2, 4));
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
    }

    #[test]
    fn update_and_delete_of_absent_key_are_not_found() {
        assert!(matches!(
            decide(&update("/k", 1), None, 9),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            decide(&delete("/k", None), None, 9),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn delete_carries_last_value_at_delete_revision() {
        let event = decide(&delete("/k", None), Some(stored("/k", 2, 4)), 9).expect("present");
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(&event.kv.value[..], b"old");
        assert_eq!((event.kv.create_revision, event.kv.mod_revision), (2, 9));
        assert_eq!(event.prev, Some(stored("/k", 2, 4)));
    }

    #[test]
    fn delete_precondition_is_checked() {
        assert!(decide(&delete("/k", Some(4)), Some(stored("/k", 2, 4)), 9).is_ok());
        assert!(matches!(
            decide(&delete("/k", Some(3)), Some(stored("/k", 2, 4)), 9),
            Err(StoreError::Conflict { expected: 3, .. })
        ));
    }
}
