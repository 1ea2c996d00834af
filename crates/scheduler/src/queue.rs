//! The scheduling queue: pending pods ordered by priority (highest first), then by arrival;
//! pods that did not fit wait in an unschedulable set until the cluster changes (a node
//! appears or changes, a pod goes away) or a periodic flush retries them. As upstream's
//! `PriorityQueue`, a pod is not retried before its back-off has passed — 1 s after its first
//! failed attempt, doubling up to 10 s — so a pod that fits nowhere is not rescheduled on every
//! node heartbeat: a change that comes sooner marks it to be retried when its back-off ends.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ledge_api::Pointer as _;
use serde_json::Value;
use tokio::time::Instant;

/// Back-off after a pod's first failed attempt (upstream `podInitialBackoffDuration`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off (upstream `podMaxBackoffDuration`).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The queue.
#[derive(Default)]
pub struct SchedulingQueue {
    active: BTreeSet<(Reverse<i64>, u64, String)>,
    index: HashMap<String, (i64, u64)>,
    unschedulable: HashMap<String, Parked>,
    /// Failed attempts per pod, kept until it is bound or gone.
    attempts: HashMap<String, u32>,
    seq: u64,
}

/// A pod waiting in the unschedulable set.
struct Parked {
    shape: Value,
    /// When its back-off ends.
    until: Instant,
    /// The cluster changed during its back-off: retry it when the back-off ends.
    moved: bool,
}

/// The back-off after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// A pod's priority (`spec.priority`, filled from its PriorityClass at admission).
pub fn priority(pod: &Value) -> i64 {
    pod.at("/spec/priority")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What identifies a pod's scheduling needs; a change to it is worth a retry.
pub fn scheduling_shape(pod: &Value) -> Value {
    serde_json::json!([pod.get("spec"), pod.at("/metadata/labels")])
}

impl SchedulingQueue {
    /// Queue a pending pod (no-op if already active, or parked with the same needs).
    pub fn add(&mut self, key: String, pod: &Value) {
        if let Some(parked) = self.unschedulable.get(&key) {
            if parked.shape == scheduling_shape(pod) {
                return;
            }
            self.unschedulable.remove(&key);
        }
        if self.index.contains_key(&key) {
            return;
        }
        self.seq += 1;
        let p = priority(pod);
        self.index.insert(key.clone(), (p, self.seq));
        self.active.insert((Reverse(p), self.seq, key));
    }

    /// Drop a pod (bound, deleted or no longer ours).
    pub fn remove(&mut self, key: &str) {
        if let Some((p, s)) = self.index.remove(key) {
            self.active.remove(&(Reverse(p), s, key.to_string()));
        }
        self.unschedulable.remove(key);
        self.attempts.remove(key);
    }

    /// The next pod to schedule.
    pub fn pop(&mut self) -> Option<String> {
        let first = self.active.pop_first()?;
        self.index.remove(&first.2);
        Some(first.2)
    }

    /// Park a pod that fits nowhere now (or whose binding failed), backing it off.
    pub fn park(&mut self, key: String, pod: &Value, now: Instant) {
        let attempts = self.attempts.entry(key.clone()).or_insert(0);
        *attempts += 1;
        let parked = Parked {
            shape: scheduling_shape(pod),
            until: now + backoff(*attempts),
            moved: false,
        };
        self.unschedulable.insert(key, parked);
    }

    /// The cluster changed: the parked pods whose back-off has passed, taken out of the set
    /// (the caller re-adds them); the others are marked to come out when theirs ends.
    pub fn take_parked(&mut self, now: Instant) -> Vec<String> {
        let mut ready = Vec::new();
        self.unschedulable.retain(|key, parked| {
            if parked.until <= now {
                ready.push(key.clone());
                false
            } else {
                parked.moved = true;
                true
            }
        });
        ready
    }

    /// Parked pods marked by a change whose back-off has now passed, taken out of the set.
    pub fn take_backed_off(&mut self, now: Instant) -> Vec<String> {
        let mut ready = Vec::new();
        self.unschedulable.retain(|key, parked| {
            let due = parked.moved && parked.until <= now;
            if due {
                ready.push(key.clone());
            }
            !due
        });
        ready
    }

    /// When the next marked pod's back-off ends, if any is waiting for that.
    pub fn next_backoff_end(&self) -> Option<Instant> {
        self.unschedulable
            .values()
            .filter(|p| p.moved)
            .map(|p| p.until)
            .min()
    }

    /// Whether nothing is active.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut q = SchedulingQueue::default();
        q.add("a".into(), &json!({"spec": {"priority": 0}}));
        q.add("b".into(), &json!({"spec": {"priority": 100}}));
        q.add("c".into(), &json!({"spec": {"priority": 0}}));
        q.add("a".into(), &json!({"spec": {"priority": 0}}));
        assert_eq!(
            [q.pop(), q.pop(), q.pop(), q.pop()],
            [Some("b".into()), Some("a".into()), Some("c".into()), None]
        );
    }

    #[test]
    fn parked_pods_return_only_when_their_spec_changes_or_the_cluster_does() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        let pod = json!({"spec": {"nodeSelector": {"a": "b"}}});
        q.park("p".into(), &pod, t0);
        q.add("p".into(), &pod);
        assert!(
            q.is_empty(),
            "a status-only update does not retry an unschedulable pod"
        );
        q.add("p".into(), &json!({"spec": {}}));
        assert_eq!(q.pop(), Some("p".into()));
        q.park("p".into(), &pod, t0);
        assert_eq!(q.take_parked(t0 + MAX_BACKOFF), vec!["p".to_string()]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let secs: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_change_during_backoff_retries_the_pod_when_it_ends() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        let pod = json!({"spec": {}});
        // Third failure: 4 s of back-off.
        for _ in 0..3 {
            q.park("p".into(), &pod, t0);
        }
        assert_eq!(q.next_backoff_end(), None, "nothing asked for a retry yet");
        let half = t0 + Duration::from_secs(2);
        assert!(q.take_parked(half).is_empty(), "still backing off");
        assert_eq!(q.next_backoff_end(), Some(t0 + Duration::from_secs(4)));
        assert!(q.take_backed_off(half).is_empty());
        let end = t0 + Duration::from_secs(4);
        assert_eq!(q.take_backed_off(end), vec!["p".to_string()]);
        assert_eq!(q.next_backoff_end(), None);
        // Bound or deleted: the count starts again.
        q.remove("p");
        q.park("p".into(), &pod, t0);
        assert_eq!(q.take_parked(t0 + INITIAL_BACKOFF), vec!["p".to_string()]);
    }
}
