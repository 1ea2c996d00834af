//! Watch support for the embedded store: the in-memory history ring, the registry of live
//! watchers, and the stream each watcher reads. Nothing here touches the disk.
//!
//! The writer publishes committed events and a watcher subscribes under one mutex, so a new
//! watcher's history replay and its live registration are a single step with respect to
//! publication: every event is either in the replay or sent live, never both, never neither.
//! Each watcher's live channel is bounded. When it fills, the hub drops that watcher and its
//! stream, once it has drained what was buffered, subscribes again after its last delivered
//! revision, replaying the missed events from history (etcd's "unsynced watcher" catching up).
//! Only when history no longer reaches back that far does the stream end with `Compacted`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use crate::{Event, Revision, StoreError, WatchStream};

/// History and live watchers of one embedded store, shared by the writer and every watch.
pub(super) struct Hub {
    state: Mutex<HubState>,
    /// Mirrors `HubState::revision` for lock-free reads.
    revision: AtomicI64,
    /// Mirrors `HubState::compacted` for lock-free reads.
    compacted: AtomicI64,
}

struct HubState {
    /// The newest events, oldest first, with contiguous revisions `compacted + 1 ..= revision`.
    history: VecDeque<Event>,
    /// How many events `history` keeps.
    capacity: usize,
    /// Capacity of each watcher's live channel.
    watch_buffer: usize,
    compacted: Revision,
    revision: Revision,
    watchers: Vec<LiveWatcher>,
    closed: bool,
}

/// A registered watcher, fed by the writer as events are published.
struct LiveWatcher {
    prefix: String,
    events: mpsc::Sender<Event>,
}

impl LiveWatcher {
    /// Hand `event` over if it matches; false when the watcher must be dropped (gone or lagging).
    fn offer(&self, event: &Event) -> bool {
        if !event.kv.key.starts_with(&self.prefix) {
            return true;
        }
        match self.events.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(prefix = %self.prefix, revision = event.revision(), "watcher lagging; it will resume from history");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What a new watcher starts from: matching history to replay, then its live channel.
struct Subscription {
    backlog: VecDeque<Event>,
    live: mpsc::Receiver<Event>,
}

impl Hub {
    /// A hub for a store whose newest revision is `revision`; no history before it is known.
    pub(super) fn new(revision: Revision, capacity: usize, watch_buffer: usize) -> Self {
        Hub {
            state: Mutex::new(HubState {
                history: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                watch_buffer: watch_buffer.max(1),
                compacted: revision,
                revision,
                watchers: Vec::new(),
                closed: false,
            }),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(revision),
        }
    }

    /// The revision of the newest published event.
    pub(super) fn revision(&self) -> Revision {
        self.revision.load(Ordering::Acquire)
    }

    /// The oldest revision a watch may start after.
    pub(super) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    /// Record committed `events` (in revision order) and send them to matching watchers.
    pub(super) fn publish(&self, events: Vec<Event>) {
        let mut state = self.lock();
        for event in events {
            let revision = event.revision();
            if revision != state.revision + 1 {
                // Only possible if a commit reported failure yet took effect: the events in
                // between are unknown, so no watcher may claim to have seen them.
                tracing::error!(
                    expected = state.revision + 1,
                    revision,
                    "gap in published revisions; dropping watch history"
                );
                state.history.clear();
                state.watchers.clear();
                state.compacted = state.compacted.max(revision - 1);
            }
            state.watchers.retain(|watcher| watcher.offer(&event));
            if state.capacity == 0 {
                state.compacted = revision;
            } else {
                if state.history.len() >= state.capacity
                    && let Some(oldest) = state.history.pop_front()
                {
                    state.compacted = state.compacted.max(oldest.revision());
                }
                state.history.push_back(event);
            }
            state.revision = revision;
        }
        self.mirror(&state);
    }

    /// Forget history up to `revision` (clamped to the newest revision; never moves back).
    pub(super) fn compact(&self, revision: Revision) {
        let mut state = self.lock();
        let target = revision.min(state.revision);
        if target <= state.compacted {
            return;
        }
        state.compacted = target;
        while state
            .history
            .front()
            .is_some_and(|event| event.revision() <= target)
        {
            state.history.pop_front();
        }
        self.mirror(&state);
    }

    /// End every watch stream and refuse new ones; called when the writer stops.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.watchers.clear();
    }

    /// A stream of events under `prefix` with revision greater than `after`.
    pub(super) fn watch(
        self: &Arc<Self>,
        prefix: &str,
        after: Revision,
    ) -> Result<WatchStream, StoreError> {
        let Subscription { backlog, live } = self.subscribe(prefix, after)?;
        let cursor = Cursor {
            hub: Arc::clone(self),
            prefix: prefix.to_owned(),
            last: after,
            backlog,
            live: Some(live),
        };
        Ok(Box::pin(futures_util::stream::unfold(
            cursor,
            |mut cursor| async move {
                let item = cursor.next().await?;
                Some((item, cursor))
            },
        )))
    }

    fn subscribe(&self, prefix: &str, after: Revision) -> Result<Subscription, StoreError> {
        let mut state = self.lock();
        if state.closed {
            return Err(StoreError::Unavailable("store is shut down".to_owned()));
        }
        if after < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        let start = state
            .history
            .partition_point(|event| event.revision() <= after);
        let backlog = state
            .history
            .range(start..)
            .filter(|event| event.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (events, live) = mpsc::channel(state.watch_buffer);
        state.watchers.push(LiveWatcher {
            prefix: prefix.to_owned(),
            events,
        });
        Ok(Subscription { backlog, live })
    }

    fn mirror(&self, state: &HubState) {
        self.revision.store(state.revision, Ordering::Release);
        self.compacted.store(state.compacted, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing under this lock panics by design; should it ever, the ring and the watcher
        // list are still each consistent, so keep serving rather than poisoning every caller.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One watch stream's position: what it delivered last and where the next events come from.
struct Cursor {
    hub: Arc<Hub>,
    prefix: String,
    /// Revision of the last delivered event (or the start revision); nothing at or below it is
    /// delivered again.
    last: Revision,
    backlog: VecDeque<Event>,
    /// `None` once the stream has ended.
    live: Option<mpsc::Receiver<Event>>,
}

impl Cursor {
    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            let event = match self.backlog.pop_front() {
                Some(event) => event,
                None => match self.live.as_mut()?.recv().await {
                    Some(event) => event,
                    // The hub dropped us: either the store closed or we lagged behind.
                    None => match self.hub.subscribe(&self.prefix, self.last) {
                        Ok(Subscription { backlog, live }) => {
                            self.backlog = backlog;
                            self.live = Some(live);
                            continue;
                        }
                        Err(StoreError::Unavailable(_)) => {
                            self.live = None;
                            return None;
                        }
                        Err(error) => {
                            self.live = None;
                            return Some(Err(error));
                        }
                    },
                },
            };
            // A live event can predate the start revision (a watch started from a range read
            // whose revision was committed but not yet published); skip, don't repeat.
            if event.revision() <= self.last {
                continue;
            }
            self.last = event.revision();
            return Some(Ok(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::*;
    use crate::{EventKind, KeyValue};

    fn put(key: &str, revision: Revision) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.to_owned(),
                value: Bytes::from(format!("v{revision}")),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        }
    }

    fn revisions(events: &VecDeque<Event>) -> Vec<Revision> {
        events.iter().map(Event::revision).collect()
    }

    #[test]
    fn subscribe_replays_matching_history_after_start() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(vec![
            put("/a/1", 1),
            put("/b/1", 2),
            put("/a/2", 3),
            put("/a/3", 4),
        ]);
        let sub = hub.subscribe("/a/", 1).expect("in history");
        assert_eq!(revisions(&sub.backlog), vec![3, 4]);
    }

    #[test]
    fn live_events_follow_replay_without_overlap() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(vec![put("/a", 1)]);
        let mut sub = hub.subscribe("/", 0).expect("in history");
        hub.publish(vec![put("/b", 2), put("/c", 3)]);
        assert_eq!(revisions(&sub.backlog), vec![1]);
        assert_eq!(sub.live.try_recv().map(|e| e.revision()), Ok(2));
        assert_eq!(sub.live.try_recv().map(|e| e.revision()), Ok(3));
        assert!(sub.live.try_recv().is_err());
    }

    #[test]
    fn ring_eviction_moves_compacted_revision() {
        let hub = Hub::new(5, 2, 10);
        assert_eq!(hub.compacted(), 5);
        hub.publish(vec![put("/a", 6), put("/a", 7), put("/a", 8)]);
        assert_eq!(hub.revision(), 8);
        assert_eq!(hub.compacted(), 6);
        assert!(matches!(
            hub.subscribe("/", 5),
            Err(StoreError::Compacted {
                requested: 5,
                compacted: 6
            })
        ));
        let sub = hub.subscribe("/", 6).expect("in history");
        assert_eq!(revisions(&sub.backlog), vec![7, 8]);
    }

    #[test]
    fn zero_history_still_serves_live_watchers() {
        let hub = Hub::new(0, 0, 10);
        let mut sub = hub.subscribe("/", 0).expect("current revision");
        hub.publish(vec![put("/a", 1)]);
        assert_eq!(hub.compacted(), 1);
        assert_eq!(sub.live.try_recv().map(|e| e.revision()), Ok(1));
    }

    #[test]
    fn compact_clamps_to_revision_and_never_moves_back() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(vec![put("/a", 1), put("/a", 2), put("/a", 3)]);
        hub.compact(2);
        assert_eq!(hub.compacted(), 2);
        hub.compact(1);
        assert_eq!(hub.compacted(), 2);
        hub.compact(99);
        assert_eq!(hub.compacted(), 3);
        let sub = hub.subscribe("/", 3).expect("current revision");
        assert!(sub.backlog.is_empty());
    }

    #[test]
    fn revision_gap_compacts_and_drops_watchers() {
        let hub = Hub::new(0, 10, 10);
        hub.publish(vec![put("/a", 1)]);
        let mut sub = hub.subscribe("/", 1).expect("current revision");
        hub.publish(vec![put("/a", 4)]);
        assert_eq!(hub.compacted(), 3);
        assert!(
            sub.live.try_recv().is_err(),
            "a watcher must not see across a gap"
        );
        assert!(matches!(
            hub.subscribe("/", 1),
            Err(StoreError::Compacted { .. })
        ));
        let sub = hub.subscribe("/", 3).expect("after the gap");
        assert_eq!(revisions(&sub.backlog), vec![4]);
    }

    #[test]
    fn closed_hub_refuses_watchers() {
        let hub = Hub::new(0, 10, 10);
        hub.close();
        assert!(matches!(
            hub.subscribe("/", 0),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn lagging_watcher_catches_up_from_history() {
        let hub = Arc::new(Hub::new(0, 100, 2));
        let mut stream = hub.watch("/", 0).expect("current revision");
        hub.publish((1..=10).map(|r| put("/k", r)).collect());
        hub.publish(vec![put("/k", 11)]);
        let mut seen = Vec::new();
        for _ in 0..11 {
            let event = stream.next().await.expect("stream open").expect("no error");
            seen.push(event.revision());
        }
        assert_eq!(seen, (1..=11).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn watcher_lagging_past_history_ends_with_compacted() {
        let hub = Arc::new(Hub::new(0, 3, 2));
        let mut stream = hub.watch("/", 0).expect("current revision");
        hub.publish((1..=10).map(|r| put("/k", r)).collect());
        assert_eq!(
            stream.next().await.map(|r| r.map(|e| e.revision()).ok()),
            Some(Some(1))
        );
        assert_eq!(
            stream.next().await.map(|r| r.map(|e| e.revision()).ok()),
            Some(Some(2))
        );
        match stream.next().await {
            Some(Err(StoreError::Compacted {
                requested,
                compacted,
            })) => {
                assert_eq!(requested, 2);
                assert_eq!(compacted, 7);
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(
            stream.next().await.is_none(),
            "an error must be the last item"
        );
    }

    #[tokio::test]
    async fn close_ends_streams() {
        let hub = Arc::new(Hub::new(0, 10, 10));
        let mut stream = hub.watch("/", 0).expect("current revision");
        hub.publish(vec![put("/a", 1)]);
        hub.close();
        assert_eq!(
            stream
                .next()
                .await
                .and_then(|r| r.ok())
                .map(|e| e.revision()),
            Some(1)
        );
        assert!(stream.next().await.is_none());
    }
}
