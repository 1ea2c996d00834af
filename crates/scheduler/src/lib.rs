//! ledge's scheduler: pending pods are taken from a priority queue, every node is checked by
//! the filter plugins, feasible nodes are ranked by the score plugins, and the pod is bound to
//! the best one through `pods/binding` — the upstream framework's shape
//! (`pkg/scheduler/schedule_one.go`). A pod that fits nowhere may preempt lower-priority pods
//! (`plugins/default_preemption.rs`); otherwise it gets an upstream-style `FailedScheduling`
//! event and a `PodScheduled=False` condition and waits for the cluster to change.

pub mod cache;
pub mod events;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod schedule;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ledge_api::Pointer as _;
use ledge_api::time::now;
use ledge_controller::kinds::{EVENT, NODE, POD, POD_DISRUPTION_BUDGET, RUNTIME_CLASS};
use ledge_controller::{Client, Informer, ObjectKey};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, pod_key};
use crate::framework::{Cluster, PlacedPod, PodInfo, str_at};
use crate::plugins::default_preemption::{self, Candidate, DISRUPTION_REASON, Outcome};
use crate::queue::SchedulingQueue;
use crate::schedule::{Profile, Rotation};

/// The scheduler name pods select by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// How often parked pods are retried even if nothing changed.
const FLUSH_EVERY: Duration = Duration::from_secs(15);

/// Bindings in flight at once. Beyond this the scheduling loop waits for one to finish, so a
/// backlog of pending pods cannot flood the runtime with binding tasks and starve the API's
/// watches and the event writer of their turn.
const BINDINGS_IN_FLIGHT: usize = 512;

/// Sleep until `at`, or forever without one (a `select!` branch that never fires).
///
/// # Cancel safety
/// Holds no state: dropping it loses nothing.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether this scheduler should place the pod.
fn is_pending_for_us(pod: &Value) -> bool {
    let unbound = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let ours = pod
        .at("/spec/schedulerName")
        .and_then(Value::as_str)
        .is_none_or(|s| s == DEFAULT_SCHEDULER);
    let alive = pod.at("/metadata/deletionTimestamp").is_none();
    let phase = pod
        .at("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    unbound && ours && alive && !matches!(phase, "Succeeded" | "Failed")
}

/// The informers the scheduler reads.
pub struct Informers {
    /// Pods.
    pub pods: Arc<Informer>,
    /// Nodes.
    pub nodes: Arc<Informer>,
    /// RuntimeClasses (node.k8s.io/v1).
    pub runtime_classes: Arc<Informer>,
    /// PodDisruptionBudgets (policy/v1), which preemption tries not to violate.
    pub pdbs: Arc<Informer>,
}

impl Informers {
    /// Start every informer the scheduler needs.
    pub fn start(client: &Arc<dyn Client>, cancel: &CancellationToken) -> Self {
        Self {
            pods: Informer::start(client.clone(), POD, cancel.child_token()),
            nodes: Informer::start(client.clone(), NODE, cancel.child_token()),
            runtime_classes: Informer::start(client.clone(), RUNTIME_CLASS, cancel.child_token()),
            pdbs: Informer::start(client.clone(), POD_DISRUPTION_BUDGET, cancel.child_token()),
        }
    }
}

/// Start the scheduler; it stops with `cancel`.
pub fn start(client: Arc<dyn Client>, cancel: CancellationToken) {
    let informers = Informers::start(&client, &cancel);
    tokio::spawn(run(client, informers, cancel));
}

struct Scheduler {
    client: Arc<dyn Client>,
    informers: Informers,
    cache: Cache,
    queue: SchedulingQueue,
    profile: Profile,
    rotation: Rotation,
    /// Last FailedScheduling event per pod uid: (event name, message).
    failures: HashMap<String, (String, String)>,
    /// Pods assumed on a node whose binding is not yet seen in the informer.
    assumed: HashSet<String>,
    /// Outcomes of bindings running in the background.
    bound_tx: mpsc::UnboundedSender<Bound>,
    /// Where `Scheduled` events go.
    recorder: events::Recorder,
    /// Permits for bindings in flight ([`BINDINGS_IN_FLIGHT`]).
    binding_slots: Arc<tokio::sync::Semaphore>,
}

/// The outcome of one background binding (upstream's binding cycle runs apart from the
/// scheduling cycle, so the next pod is placed while the API write is in flight).
struct Bound {
    key: String,
    pod: Arc<Value>,
    node: String,
    result: Result<(), ledge_api::ApiError>,
}

/// Run the scheduler on informers that are already started (the benchmark drives it this way).
pub async fn run(client: Arc<dyn Client>, informers: Informers, cancel: CancellationToken) {
    let mut pod_changes = informers.pods.subscribe();
    let mut node_changes = informers.nodes.subscribe();
    let mut class_changes = informers.runtime_classes.subscribe();
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel();
    informers.pods.wait_synced().await;
    informers.nodes.wait_synced().await;
    informers.runtime_classes.wait_synced().await;
    informers.pdbs.wait_synced().await;
    let recorder = events::Recorder::start(client.clone(), cancel.child_token());
    let mut s = Scheduler {
        client,
        informers,
        cache: Cache::default(),
        queue: SchedulingQueue::default(),
        profile: Profile::default(),
        rotation: Rotation::default(),
        failures: Default::default(),
        assumed: HashSet::new(),
        bound_tx,
        recorder,
        binding_slots: Arc::new(tokio::sync::Semaphore::new(BINDINGS_IN_FLIGHT)),
    };
    s.resync();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        while let Some(key) = s.queue.pop() {
            s.schedule_one(&key).await;
            // Stay responsive to changes between pods.
            s.drain_changes(&mut pod_changes, &mut node_changes);
            while let Ok(b) = bound_rx.try_recv() {
                s.binding_done(b);
            }
            // A successful cycle never awaits: give the informers and the bindings this task
            // spawned their turn once its budget is spent, so the change stream does not lag.
            tokio::task::coop::consume_budget().await;
        }
        let backoff_end = s.queue.next_backoff_end();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = flush.tick() => s.retry_parked(),
            () = sleep_until_some(backoff_end) => {
                let keys = s.queue.take_backed_off(Instant::now());
                s.requeue(keys);
            }
            Some(b) = bound_rx.recv() => s.binding_done(b),
            p = pod_changes.recv() => match p {
                Ok(p) => s.observe_pod(p),
                Err(broadcast::error::RecvError::Lagged(_)) => s.resync(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            n = node_changes.recv() => match n {
                Ok(n) => s.observe_node(n),
                Err(broadcast::error::RecvError::Lagged(_)) => s.resync(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            c = class_changes.recv() => match c {
                // A class appeared or changed: pods waiting for it may fit now.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => s.retry_parked(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

impl Scheduler {
    fn observe_pod(&mut self, pod: Arc<Value>) {
        let deleted = self
            .informers
            .pods
            .store()
            .get(&ObjectKey::of(&pod))
            .is_none();
        let key = pod_key(&pod);
        let was_placed = !str_at(&pod, "/spec/nodeName").is_empty();
        if deleted || was_placed {
            self.assumed.remove(&key);
        } else if self.assumed.contains(&key) {
            // Assumed on a node while its binding is in flight: the cache keeps counting it
            // there until the binding (or its failure) is seen (upstream `AssumePod`).
            return;
        }
        let pending = !deleted && is_pending_for_us(&pod);
        if pending {
            self.queue.add(key, &pod);
        } else {
            self.queue.remove(&key);
        }
        self.cache.set_pod(pod, deleted);
        if deleted && was_placed {
            // Freed capacity: parked pods may fit now.
            self.retry_parked();
        }
    }

    fn observe_node(&mut self, node: Arc<Value>) {
        let name = str_at(&node, "/metadata/name").to_string();
        match self
            .informers
            .nodes
            .store()
            .get(&ObjectKey::new(None, &name))
        {
            Some(current) => self.cache.set_node(current),
            None => self.cache.remove_node(&name),
        }
        self.retry_parked();
    }

    fn drain_changes(
        &mut self,
        pods: &mut broadcast::Receiver<Arc<Value>>,
        nodes: &mut broadcast::Receiver<Arc<Value>>,
    ) {
        let mut lagged = false;
        loop {
            match pods.try_recv() {
                Ok(p) => self.observe_pod(p),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        loop {
            match nodes.try_recv() {
                Ok(n) => self.observe_node(n),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        // Missed changes: the informer stores are the truth.
        if lagged {
            self.resync();
        }
    }

    /// Bring the cache in line with the informers after missed changes. Incremental: objects
    /// the cache already holds (the same `Arc`) are not decoded again, and pods assumed on a
    /// node keep their place, so a resync costs a pass over the keys, not a rebuild.
    fn resync(&mut self) {
        tracing::debug!("scheduler cache resync");
        let mut nodes = self.informers.nodes.store().list(None);
        // In name order, so new nodes append to the cache's sorted list.
        nodes.sort_by(|a, b| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")));
        let live: HashSet<&str> = nodes.iter().map(|n| str_at(n, "/metadata/name")).collect();
        let gone: Vec<String> = self
            .cache
            .nodes()
            .iter()
            .filter(|n| !live.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect();
        for name in gone {
            self.cache.remove_node(&name);
        }
        for n in nodes {
            let same = self
                .cache
                .node(str_at(&n, "/metadata/name"))
                .is_some_and(|info| Arc::ptr_eq(&info.node, &n));
            if !same {
                self.cache.set_node(n);
            }
        }
        let pods = self.informers.pods.store().list(None);
        let live: HashSet<String> = pods.iter().map(|p| pod_key(p)).collect();
        for key in self.cache.pod_keys() {
            if !live.contains(&key) {
                self.cache.drop_pod(&key);
                self.assumed.remove(&key);
                self.queue.remove(&key);
            }
        }
        for p in pods {
            self.observe_pod(p);
        }
        self.retry_parked();
    }

    /// The cluster changed: parked pods past their back-off go back to the active queue.
    fn retry_parked(&mut self) {
        let keys = self.queue.take_parked(Instant::now());
        self.requeue(keys);
    }

    /// Queue these parked pods again if they are still pending for this scheduler.
    fn requeue(&mut self, keys: Vec<String>) {
        for key in keys {
            let (ns, name) = key.split_once('/').unwrap_or(("", &key));
            if let Some(p) = self
                .informers
                .pods
                .store()
                .get(&ObjectKey::new(Some(ns), name))
                && is_pending_for_us(&p)
            {
                self.queue.add(key, &p);
            }
        }
    }

    async fn schedule_one(&mut self, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(pod) = self
            .informers
            .pods
            .store()
            .get(&ObjectKey::new(Some(ns), name))
        else {
            return;
        };
        if !is_pending_for_us(&pod) || self.assumed.contains(key) {
            return;
        }
        let info = PodInfo::new(pod.clone());
        // The cycle itself is synchronous; only its outcome is carried across awaits.
        let step = {
            let classes = self.informers.runtime_classes.clone();
            let runtime_class = move |name: &str| classes.store().get(&ObjectKey::new(None, name));
            let cx = Cluster {
                nodes: self.cache.nodes(),
                image_nodes: self.cache.image_nodes(),
                runtime_class: &runtime_class,
            };
            let decision = schedule::schedule(
                &self.profile,
                &cx,
                &info,
                self.cache.nominated(),
                &mut self.rotation,
            );
            match decision {
                Ok(node) => Step::Bind(node),
                Err(mut unschedulable) => {
                    // PostFilter: try to make room by evicting lower-priority pods.
                    let pdbs = self.informers.pdbs.store().list(None);
                    let outcome = default_preemption::preempt(
                        &self.profile,
                        &cx,
                        &info,
                        unschedulable.state.as_ref(),
                        &unschedulable.fit.statuses,
                        &pdbs,
                    );
                    unschedulable.fit.post_filter = match &outcome {
                        Outcome::Preempt(_) => None,
                        Outcome::NotEligible(m) => Some(format!("preemption: {m}")),
                        Outcome::NoCandidate(m) => Some(m.clone()),
                    };
                    Step::Fail(unschedulable.fit.message(), outcome)
                }
            }
        };
        let (message, preemption) = match step {
            Step::Bind(node) => return self.bind(key, &info, &node).await,
            Step::Fail(message, preemption) => (message, preemption),
        };
        self.queue.park(key.to_string(), &pod, Instant::now());
        let nominate = match preemption {
            Outcome::Preempt(candidate) => {
                let node = candidate.node.clone();
                self.carry_out(&pod, &info, candidate).await;
                Nomination::Set(node)
            }
            Outcome::NotEligible(_) => Nomination::Keep,
            Outcome::NoCandidate(_) => Nomination::Clear,
        };
        self.mark_unschedulable(&pod, &message, nominate).await;
    }

    /// Assume the pod on the node and bind it in the background.
    async fn bind(&mut self, key: &str, info: &PodInfo, node: &str) {
        let Ok(slot) = self.binding_slots.clone().acquire_owned().await else {
            return;
        };
        let pod = &info.pod;
        self.cache.assume(info, node);
        self.assumed.insert(key.to_string());
        let (client, tx) = (self.client.clone(), self.bound_tx.clone());
        let recorder = self.recorder.clone();
        let (key, pod, node) = (key.to_string(), pod.clone(), node.to_string());
        tokio::spawn(async move {
            let (ns, name) = (
                str_at(&pod, "/metadata/namespace"),
                str_at(&pod, "/metadata/name"),
            );
            let result = client.bind(ns, name, &node).await;
            drop(slot);
            if result.is_ok() {
                let msg = format!("Successfully assigned {ns}/{name} to {node}");
                recorder.record(&pod, "Normal", "Scheduled", &msg);
            }
            let _ = tx.send(Bound {
                key,
                pod,
                node,
                result,
            });
        });
    }

    fn binding_done(&mut self, b: Bound) {
        match b.result {
            Ok(()) => {
                tracing::debug!(pod = b.key, node = b.node, "bound");
                self.failures.remove(str_at(&b.pod, "/metadata/uid"));
            }
            Err(e) => {
                self.assumed.remove(&b.key);
                self.cache.forget(&b.pod);
                if e.code != 404 {
                    tracing::warn!(pod = b.key, node = b.node, error = %e, "binding failed; will retry");
                    self.queue.park(b.key, &b.pod, Instant::now());
                }
            }
        }
    }

    /// Evict the candidate's victims, as upstream `prepareCandidate`: mark each with a
    /// `DisruptionTarget` condition, delete it with its own grace period, tell it why; and
    /// take the nomination away from lower-priority pods nominated to the same node.
    async fn carry_out(&mut self, preemptor: &Arc<Value>, info: &PodInfo, c: Candidate) {
        self.cache.nominate(preemptor, &c.node);
        let uid = str_at(preemptor, "/metadata/uid").to_string();
        for victim in &c.victims {
            let ns = victim.namespace().to_string();
            let name = str_at(&victim.pod, "/metadata/name").to_string();
            let condition = json!({"type": "DisruptionTarget", "status": "True",
                "reason": DISRUPTION_REASON,
                "message": format!("{DEFAULT_SCHEDULER}: preempting to accommodate a higher priority pod"),
                "lastTransitionTime": now()});
            self.update_pod_status(&ns, &name, |status| {
                set_condition(status, condition.clone());
            })
            .await;
            match self.client.delete(&POD, Some(&ns), &name, None).await {
                Ok(()) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(victim = victim.key, error = %e, "could not delete a preemption victim");
                    continue;
                }
            }
            let msg = format!("Preempted by pod {uid} on node {}", c.node);
            self.event(&victim.pod, "Normal", "Preempted", &msg).await;
        }
        let lower: Vec<Arc<PlacedPod>> = self
            .cache
            .nominated_on(&c.node)
            .filter(|p| p.priority < info.priority)
            .cloned()
            .collect();
        for p in lower {
            let name = str_at(&p.pod, "/metadata/name").to_string();
            self.update_pod_status(p.namespace(), &name, |status| {
                if let Some(s) = status.as_object_mut() {
                    s.remove("nominatedNodeName");
                }
            })
            .await;
        }
    }

    /// Change a pod's status from its latest stored state, retrying once on a conflict.
    async fn update_pod_status(&self, ns: &str, name: &str, change: impl Fn(&mut Value)) {
        for _ in 0..3 {
            let current = match self.client.get(&POD, Some(ns), name).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "could not read pod for a status update");
                    return;
                }
            };
            let mut updated = current;
            if !updated.get("status").is_some_and(Value::is_object) {
                updated["status"] = json!({});
            }
            change(&mut updated["status"]);
            match self.client.update_status(&POD, Some(ns), updated).await {
                Ok(_) => return,
                Err(e) if e.code == 409 => continue,
                Err(e) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(error = %e, pod = name, "could not update pod status");
                    return;
                }
            }
        }
    }

    async fn mark_unschedulable(&mut self, pod: &Value, message: &str, nominate: Nomination) {
        let uid = str_at(pod, "/metadata/uid").to_string();
        let same = self.failures.get(&uid).is_some_and(|(_, m)| m == message);
        self.event(pod, "Warning", "FailedScheduling", message)
            .await;
        let current = str_at(pod, "/status/nominatedNodeName");
        let nomination_changes = match &nominate {
            Nomination::Set(n) => n != current,
            Nomination::Clear => !current.is_empty(),
            Nomination::Keep => false,
        };
        if same && !nomination_changes {
            return;
        }
        let ns = str_at(pod, "/metadata/namespace").to_string();
        let name = str_at(pod, "/metadata/name").to_string();
        let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                          "lastProbeTime": null, "lastTransitionTime": now()});
        self.update_pod_status(&ns, &name, |status| {
            set_condition(status, cond.clone());
            match &nominate {
                Nomination::Set(n) => status["nominatedNodeName"] = json!(n),
                Nomination::Clear => {
                    if let Some(s) = status.as_object_mut() {
                        s.remove("nominatedNodeName");
                    }
                }
                Nomination::Keep => {}
            }
        })
        .await;
    }

    /// Record an event about a pod; a repeat of the same message bumps its count.
    async fn event(&mut self, pod: &Value, kind: &str, reason: &str, message: &str) {
        let s = |p: &str| pod.at(p).and_then(Value::as_str).unwrap_or("").to_string();
        let (ns, uid) = (s("/metadata/namespace"), s("/metadata/uid"));
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
        match create_event(&*self.client, pod, kind, reason, message).await {
            Ok(event_name) if reason == "FailedScheduling" => {
                self.failures.insert(uid, (event_name, message.to_string()));
            }
            Ok(_) => {
                self.failures.remove(&uid);
            }
            Err(e) => tracing::debug!(error = %e, "could not record event"),
        }
    }
}

/// Create a core/v1 Event about a pod from the scheduler; returns its name.
async fn create_event(
    client: &dyn Client,
    pod: &Value,
    kind: &str,
    reason: &str,
    message: &str,
) -> Result<String, ledge_api::ApiError> {
    let (name, event) = events::event_object(pod, kind, reason, message);
    client
        .create(&EVENT, Some(str_at(pod, "/metadata/namespace")), event)
        .await
        .map(|_| name)
}

/// What a scheduling cycle decided.
enum Step {
    /// Bind to this node.
    Bind(String),
    /// Fits nowhere: the FailedScheduling message, and what preemption decided.
    Fail(String, Outcome),
}

/// What to do with a pod's `status.nominatedNodeName` after a failed cycle.
enum Nomination {
    /// Preemption made room here.
    Set(String),
    /// Preemption found no node: drop any nomination.
    Clear,
    /// Preemption did not run to the end (the pod may not preempt now).
    Keep,
}

/// Replace (or add) the condition of the same type in a status.
fn set_condition(status: &mut Value, condition: Value) {
    let kind = condition.get("type").cloned();
    let mut kept: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.get("type") != kind.as_ref())
        .collect();
    kept.push(condition);
    status["conditions"] = Value::Array(kept);
}
