//! The scheduling queue: pending pods ordered by priority (highest first), then by arrival;
//! pods that did not fit wait in an unschedulable set until the cluster changes (a node
//! appears or changes, a pod goes away) or a periodic flush retries them.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use ledge_api::Pointer as _;
use serde_json::Value;

/// The queue.
#[derive(Default)]
pub struct SchedulingQueue {
    active: BTreeSet<(Reverse<i64>, u64, String)>,
    index: HashMap<String, (i64, u64)>,
    unschedulable: HashMap<String, Value>,
    seq: u64,
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
    /// Queue a pending pod (no-op if already active).
    pub fn add(&mut self, key: String, pod: &Value) {
        if let Some(shape) = self.unschedulable.get(&key) {
            if *shape == scheduling_shape(pod) {
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
    }

    /// The next pod to schedule.
    pub fn pop(&mut self) -> Option<String> {
        let first = self.active.pop_first()?;
        self.index.remove(&first.2);
        Some(first.2)
    }

    /// Park a pod that fits nowhere now.
    pub fn park(&mut self, key: String, pod: &Value) {
        self.unschedulable.insert(key, scheduling_shape(pod));
    }

    /// Keys of every parked pod, emptying the set (the caller re-adds them).
    pub fn take_parked(&mut self) -> Vec<String> {
        self.unschedulable.drain().map(|(k, _)| k).collect()
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
    fn parked_pods_return_only_when_their_spec_changes_or_on_flush() {
        let mut q = SchedulingQueue::default();
        let pod = json!({"spec": {"nodeSelector": {"a": "b"}}});
        q.park("p".into(), &pod);
        q.add("p".into(), &pod);
        assert!(
            q.is_empty(),
            "a status-only update does not retry an unschedulable pod"
        );
        q.add("p".into(), &json!({"spec": {}}));
        assert_eq!(q.pop(), Some("p".into()));
        q.park("p".into(), &pod);
        assert_eq!(q.take_parked(), vec!["p".to_string()]);
    }
}
