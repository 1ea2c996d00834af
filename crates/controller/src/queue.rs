//! A work queue with client-go's guarantees: a key is queued at most once, never processed by
//! two workers at once (a change during processing re-queues it afterwards), and failures are
//! retried with exponential back-off.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

struct State<K> {
    queue: VecDeque<K>,
    queued: HashSet<K>,
    processing: HashSet<K>,
    dirty: HashSet<K>,
    failures: HashMap<K, u32>,
}

/// A de-duplicating queue of keys.
pub struct WorkQueue<K> {
    state: Mutex<State<K>>,
    ready: Notify,
}

/// First retry delay after a failure; doubles per failure.
const BASE_DELAY: Duration = Duration::from_millis(50);
/// Longest retry delay.
const MAX_DELAY: Duration = Duration::from_secs(60);

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    /// An empty queue.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                processing: HashSet::new(),
                dirty: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` now.
    pub fn add(&self, key: K) {
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Queue `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(key);
        });
    }

    /// Queue `key` after its back-off (which grows with each failure until [`forget`](Self::forget)).
    pub fn add_rate_limited(self: &Arc<Self>, key: K) {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BASE_DELAY.saturating_mul(1u32 << n.min(20)).min(MAX_DELAY);
        self.add_after(key, delay);
    }

    /// Reset the back-off of `key`.
    pub fn forget(&self, key: &K) {
        self.lock().failures.remove(key);
    }

    /// Take the next key, waiting for one.
    ///
    /// # Cancel safety
    /// Cancel safe: a key is only taken when the future completes.
    pub async fn next(&self) -> K {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        drop(s);
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Mark `key` processed; it is queued again if it changed meanwhile.
    pub fn done(&self, key: &K) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.remove(key) && s.queued.insert(key.clone()) {
            s.queue.push_back(key.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Number of keys waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_deduplicated_and_requeued_when_dirty() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.next().await;
        assert_eq!(k, "a");
        q.add("a"); // changed while processing: not queued twice, not given to another worker
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, "b");
        q.done(&"a");
        assert_eq!(q.len(), 1, "a is queued again once done");
        assert_eq!(q.next().await, "a");
    }
}
