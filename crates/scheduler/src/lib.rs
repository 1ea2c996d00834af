//! ledge's scheduler: pending pods are taken from a priority queue, every node is checked by
//! the filter plugins, feasible nodes are ranked by the score plugins, and the pod is bound to
//! the best one through `pods/binding` — the upstream framework's shape
//! (`pkg/scheduler/schedule_one.go`). A pod that fits nowhere gets an upstream-style
//! `FailedScheduling` event and a `PodScheduled=False` condition and waits for the cluster to
//! change.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod queue;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ledge_api::time::now;
use ledge_controller::kinds::{EVENT, NODE, POD};
use ledge_controller::{Client, Informer, ObjectKey};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, pod_key};
use crate::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status};
use crate::queue::SchedulingQueue;

/// The scheduler name pods select by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// How often parked pods are retried even if nothing changed.
const FLUSH_EVERY: Duration = Duration::from_secs(15);

/// Whether this scheduler should place the pod.
fn is_pending_for_us(pod: &Value) -> bool {
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let ours = pod
        .pointer("/spec/schedulerName")
        .and_then(Value::as_str)
        .is_none_or(|s| s == DEFAULT_SCHEDULER);
    let alive = pod.pointer("/metadata/deletionTimestamp").is_none();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    unbound && ours && alive && !matches!(phase, "Succeeded" | "Failed")
}

/// The outcome of one scheduling attempt.
pub enum Decision {
    /// Bind here.
    Node(String),
    /// No node fits; the upstream-style message.
    Unschedulable(String),
}

/// Run the filters and scores for one pod over every node.
pub fn decide(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    filters: &[Box<dyn FilterPlugin>],
    scores: &[Box<dyn ScorePlugin>],
) -> Decision {
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut best: Option<(i64, &str)> = None;
    for node in nodes {
        let verdict = filters
            .iter()
            .map(|f| f.filter(pod, node))
            .find(|s| *s != Status::Fit);
        if let Some(Status::Unfit(reason)) = verdict {
            *reasons.entry(reason).or_default() += 1;
            continue;
        }
        let score: i64 = scores.iter().map(|s| s.score(pod, node) * s.weight()).sum();
        // Ties go to the lexically smallest name, so decisions are reproducible.
        let better = match best {
            None => true,
            Some((b, name)) => score > b || (score == b && node.name.as_str() < name),
        };
        if better {
            best = Some((score, &node.name));
        }
    }
    match best {
        Some((_, name)) => Decision::Node(name.to_string()),
        None => Decision::Unschedulable(unschedulable_message(nodes.len(), &reasons)),
    }
}

/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.`
pub fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    if total == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// Start the scheduler; it stops with `cancel`.
pub fn start(client: Arc<dyn Client>, cancel: CancellationToken) {
    let pods = Informer::start(client.clone(), POD, cancel.child_token());
    let nodes = Informer::start(client.clone(), NODE, cancel.child_token());
    tokio::spawn(run(client, pods, nodes, cancel));
}

struct Scheduler {
    client: Arc<dyn Client>,
    pods: Arc<Informer>,
    cache: Cache,
    queue: SchedulingQueue,
    filters: Vec<Box<dyn FilterPlugin>>,
    scores: Vec<Box<dyn ScorePlugin>>,
    /// Last FailedScheduling event per pod uid: (event name, message).
    failures: std::collections::HashMap<String, (String, String)>,
}

async fn run(
    client: Arc<dyn Client>,
    pods: Arc<Informer>,
    nodes: Arc<Informer>,
    cancel: CancellationToken,
) {
    let mut pod_changes = pods.subscribe();
    let mut node_changes = nodes.subscribe();
    pods.wait_synced().await;
    nodes.wait_synced().await;
    let mut s = Scheduler {
        client,
        pods: pods.clone(),
        cache: Cache::default(),
        queue: SchedulingQueue::default(),
        filters: plugins::default_filters(),
        scores: plugins::default_scores(),
        failures: Default::default(),
    };
    for n in nodes.store().list(None) {
        s.cache.set_node(n);
    }
    for p in pods.store().list(None) {
        s.observe_pod(&p, false);
    }
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        while let Some(key) = s.queue.pop() {
            s.schedule_one(&key).await;
            // Stay responsive to changes between pods.
            s.drain_changes(&mut pod_changes, &mut node_changes, &nodes);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = flush.tick() => s.retry_parked(),
            p = pod_changes.recv() => match p {
                Ok(p) => s.observe_pod(&p, s.pods.store().get(&ObjectKey::of(&p)).is_none()),
                Err(broadcast::error::RecvError::Lagged(_)) => s.resync(&nodes),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            n = node_changes.recv() => match n {
                Ok(n) => s.observe_node(&nodes, n),
                Err(broadcast::error::RecvError::Lagged(_)) => s.resync(&nodes),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

impl Scheduler {
    fn observe_pod(&mut self, pod: &Value, deleted: bool) {
        let key = pod_key(pod);
        let was_placed = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        self.cache.set_pod(pod, deleted);
        if !deleted && is_pending_for_us(pod) {
            self.queue.add(key, pod);
        } else {
            self.queue.remove(&key);
            if deleted && was_placed {
                // Freed capacity: parked pods may fit now.
                self.retry_parked();
            }
        }
    }

    fn observe_node(&mut self, nodes: &Informer, node: Arc<Value>) {
        let name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match nodes.store().get(&ObjectKey::new(None, &name)) {
            Some(current) => self.cache.set_node(current),
            None => self.cache.remove_node(&name),
        }
        self.retry_parked();
    }

    fn drain_changes(
        &mut self,
        pods: &mut broadcast::Receiver<Arc<Value>>,
        nodes_rx: &mut broadcast::Receiver<Arc<Value>>,
        nodes: &Informer,
    ) {
        while let Ok(p) = pods.try_recv() {
            let deleted = self.pods.store().get(&ObjectKey::of(&p)).is_none();
            self.observe_pod(&p, deleted);
        }
        while let Ok(n) = nodes_rx.try_recv() {
            self.observe_node(nodes, n);
        }
    }

    fn resync(&mut self, nodes: &Informer) {
        self.cache = Cache::default();
        for n in nodes.store().list(None) {
            self.cache.set_node(n);
        }
        for p in self.pods.store().list(None) {
            self.observe_pod(&p, false);
        }
        self.retry_parked();
    }

    fn retry_parked(&mut self) {
        for key in self.queue.take_parked() {
            let (ns, name) = key.split_once('/').unwrap_or(("", &key));
            if let Some(p) = self.pods.store().get(&ObjectKey::new(Some(ns), name))
                && is_pending_for_us(&p)
            {
                self.queue.add(key, &p);
            }
        }
    }

    async fn schedule_one(&mut self, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pod) = self.pods.store().get(&ObjectKey::new(Some(ns), name)) else {
            return;
        };
        if !is_pending_for_us(&pod) {
            return;
        }
        let info = PodInfo::new(pod.clone());
        let nodes: Vec<&NodeInfo> = self.cache.nodes().collect();
        match decide(&info, &nodes, &self.filters, &self.scores) {
            Decision::Node(node) => {
                self.cache.assume(&pod, &node);
                match self.client.bind(ns, name, &node).await {
                    Ok(()) => {
                        tracing::debug!(pod = key, node, "bound");
                        let msg = format!("Successfully assigned {ns}/{name} to {node}");
                        self.event(&pod, "Normal", "Scheduled", &msg).await;
                    }
                    Err(e) => {
                        self.cache.forget(&pod);
                        if e.code != 404 {
                            tracing::warn!(pod = key, node, error = %e, "binding failed; will retry");
                            self.queue.park(key.to_string(), &pod);
                        }
                    }
                }
            }
            Decision::Unschedulable(message) => {
                self.queue.park(key.to_string(), &pod);
                self.mark_unschedulable(&pod, &message).await;
            }
        }
    }

    async fn mark_unschedulable(&mut self, pod: &Value, message: &str) {
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let same = self.failures.get(&uid).is_some_and(|(_, m)| m == message);
        self.event(pod, "Warning", "FailedScheduling", message)
            .await;
        if same {
            return;
        }
        let mut updated = pod.clone();
        let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                          "lastProbeTime": null, "lastTransitionTime": now()});
        let conditions = updated["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut kept: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c.get("type") != Some(&json!("PodScheduled")))
            .collect();
        kept.push(cond);
        updated["status"]["conditions"] = Value::Array(kept);
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str);
        if let Err(e) = self.client.update_status(&POD, ns, updated).await
            && e.code != 404
            && e.code != 409
        {
            tracing::warn!(error = %e, "could not set PodScheduled=False");
        }
    }

    /// Record an event about a pod; a repeat of the same message bumps its count.
    async fn event(&mut self, pod: &Value, kind: &str, reason: &str, message: &str) {
        let s = |p: &str| {
            pod.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (ns, name, uid) = (
            s("/metadata/namespace"),
            s("/metadata/name"),
            s("/metadata/uid"),
        );
        if reason == "FailedScheduling"
            && let Some((event_name, last)) = self.failures.get(&uid)
            && last == message
            && let Ok(Some(mut ev)) = self.client.get(&EVENT, Some(&ns), event_name).await
        {
            let count = ev.get("count").and_then(Value::as_i64).unwrap_or(1);
            ev["count"] = json!(count + 1);
            ev["lastTimestamp"] = json!(now());
            let _ = self.client.update(&EVENT, Some(&ns), ev).await;
            return;
        }
        let event_name = format!(
            "{name}.{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let ev = json!({
            "metadata": {"name": event_name, "namespace": ns},
            "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1",
                               "resourceVersion": s("/metadata/resourceVersion")},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": DEFAULT_SCHEDULER},
            "reportingComponent": DEFAULT_SCHEDULER, "reportingInstance": DEFAULT_SCHEDULER,
            "firstTimestamp": now(), "lastTimestamp": now(), "count": 1,
        });
        match self.client.create(&EVENT, Some(&ns), ev).await {
            Ok(_) if reason == "FailedScheduling" => {
                self.failures.insert(uid, (event_name, message.to_string()));
            }
            Ok(_) => {
                self.failures.remove(&uid);
            }
            Err(e) => tracing::debug!(error = %e, "could not record event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{node, pod};

    #[test]
    fn message_counts_reasons_like_upstream() {
        let nodes = [
            node(
                json!({"metadata": {"name": "a", "labels": {"zone": "x"}}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}}),
            ),
            node(
                json!({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "8", "memory": "1Gi", "pods": "10"}}}),
            ),
            node(
                json!({"metadata": {"name": "c"}, "status": {"allocatable": {"cpu": "8", "memory": "1Gi", "pods": "10"}}}),
            ),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = pod(
            json!({"spec": {"nodeSelector": {"zone": "x"}, "containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        match decide(
            &p,
            &refs,
            &plugins::default_filters(),
            &plugins::default_scores(),
        ) {
            Decision::Unschedulable(m) => assert_eq!(
                m,
                "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
            ),
            Decision::Node(n) => panic!("scheduled on {n}"),
        }
    }

    #[test]
    fn picks_the_least_allocated_node() {
        let mut busy = node(
            json!({"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
        );
        busy.requested.milli_cpu = 3000;
        let idle = node(
            json!({"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
        );
        let p = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        match decide(
            &p,
            &[&busy, &idle],
            &plugins::default_filters(),
            &plugins::default_scores(),
        ) {
            Decision::Node(n) => assert_eq!(n, "b"),
            Decision::Unschedulable(m) => panic!("{m}"),
        }
    }
}
