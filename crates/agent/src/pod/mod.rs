//! Pods on this node: the manager follows the pods bound to the node (a field-selected
//! informer) and keeps one [`worker`] per pod uid, handing it every new version of its pod.
//!
//! - [`spec`]: the pod spec as plain structs;
//! - [`refs`], [`env`], [`volumes`]: ConfigMaps/Secrets, environment, volumes, as kubelet;
//! - [`state`]: container states and the upstream `PodStatus` built from them;
//! - [`probe`]: readiness, liveness and startup probes;
//! - [`worker`]: one pod's lifecycle.

pub mod env;
pub mod probe;
pub mod refs;
pub mod spec;
pub mod state;
pub mod volumes;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ledge_controller::kinds::POD;
use ledge_controller::{Client, EventRecorder, Informer};
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::HttpClient;
use crate::image::ImageStore;
use crate::node_store::NodeStore;
use crate::runtime::Runtimes;
pub use env::NodeFacts;
use spec::str_at;
pub use worker::{Backoff, Desired};

/// The runtime of pods that name no RuntimeClass (the cluster default).
pub const DEFAULT_RUNTIME: &str = "wasm";

/// What every pod worker of the node shares.
pub struct Shared {
    /// The API, as the node.
    pub client: Arc<dyn Client>,
    /// The same, for calls beyond the `Client` trait.
    pub http: HttpClient,
    /// Events, signed `kubelet`.
    pub events: EventRecorder,
    /// The node's name.
    pub node_name: String,
    /// Facts for the downward API.
    pub node: NodeFacts,
    /// Runtimes by handler.
    pub runtimes: Runtimes,
    /// The image store.
    pub images: ImageStore,
    /// `<data dir>/pods`: per-pod volumes.
    pub pods_dir: PathBuf,
    /// Container logs (`<data dir>/logs/pods`, as kubelet's `/var/log/pods`).
    pub logs: Arc<crate::logs::Logs>,
    /// Running containers, for `kubectl exec`.
    pub exec: Arc<crate::exec::Targets>,
    /// Container restart back-off.
    pub backoff: Backoff,
}

impl Shared {
    /// The log directory of one pod: `<logs>/<namespace>_<name>_<uid>`.
    pub fn log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.logs.pod_dir(namespace, name, uid)
    }

    /// The runtime handler of a RuntimeClass name (its `handler` field; the name itself when
    /// the class cannot be read; [`DEFAULT_RUNTIME`] for none).
    pub async fn runtime_handler(&self, class: Option<&str>) -> String {
        let Some(class) = class.filter(|c| !c.is_empty()) else {
            return DEFAULT_RUNTIME.to_string();
        };
        match self
            .client
            .get(&ledge_controller::kinds::RUNTIME_CLASS, None, class)
            .await
        {
            Ok(Some(rc)) => rc
                .get("handler")
                .and_then(Value::as_str)
                .unwrap_or(class)
                .to_string(),
            _ => class.to_string(),
        }
    }
}

struct Slot {
    tx: watch::Sender<Desired>,
    task: JoinHandle<()>,
}

/// Follow the node's pods until `cancel`, running each with a worker. `pods` must be a client
/// whose lists and watches select `spec.nodeName=<node>`.
///
/// The pods the node store holds start at once, before the server answers (an offline start);
/// when the informer's first list arrives, it decides: the pods it holds (same uid) carry on
/// untouched, the others stop. Every change the informer sees is kept in the store.
pub async fn run(
    shared: Arc<Shared>,
    pods: Arc<dyn Client>,
    store: Arc<NodeStore>,
    cancel: CancellationToken,
) {
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let workers = cancel.child_token();
    let stored = store.pods();
    if !stored.is_empty() {
        tracing::info!(
            pods = stored.len(),
            "starting the pods of the node store while the server is consulted"
        );
    }
    for pod in stored {
        let id = uid(&pod).to_string();
        start_or_update(
            &shared,
            &mut slots,
            &workers,
            id,
            Desired::Run(Arc::new(pod)),
        );
    }
    let informer =
        Informer::start_with_retry_cap(pods, POD, cancel.child_token(), crate::WATCH_RETRY_CAP);
    let mut changes = informer.subscribe();
    let synced = informer.wait_synced();
    tokio::pin!(synced);
    let mut is_synced = false;
    let mut reap = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut synced, if !is_synced => {
                is_synced = true;
                resync(&shared, &informer, &store, &mut slots, &workers);
            }
            change = changes.recv() => match change {
                // Before the first list is complete, a change says nothing about the pods not
                // listed yet: apply it, but let only the full list stop stored pods.
                Ok(obj) => apply(&shared, &informer, &store, &mut slots, &workers, &obj),
                Err(broadcast::error::RecvError::Lagged(_)) if is_synced => {
                    resync(&shared, &informer, &store, &mut slots, &workers)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = reap.tick() => slots.retain(|_, s| !s.task.is_finished()),
            _ = cancel.cancelled() => break,
        }
    }
    // The agent is stopping: stop every container (bounded), tell the API nothing.
    workers.cancel();
    for (_, slot) in slots.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(10), slot.task).await;
    }
}

fn uid(obj: &Value) -> &str {
    str_at(obj, "/metadata/uid").unwrap_or("")
}

fn apply(
    shared: &Arc<Shared>,
    informer: &Informer,
    store: &NodeStore,
    slots: &mut HashMap<String, Slot>,
    workers: &CancellationToken,
    obj: &Value,
) {
    let key = ledge_controller::ObjectKey::of(obj);
    let id = uid(obj).to_string();
    let current = informer.store().get(&key).filter(|p| uid(p) == id);
    let desired = match current {
        Some(p) => {
            store.put_pod(&p);
            Desired::Run(p)
        }
        None => {
            store.remove_pod(&id);
            Desired::Gone
        }
    };
    start_or_update(shared, slots, workers, id, desired);
}

/// Hand `desired` to its pod's worker, starting one for a pod to run.
fn start_or_update(
    shared: &Arc<Shared>,
    slots: &mut HashMap<String, Slot>,
    workers: &CancellationToken,
    id: String,
    desired: Desired,
) {
    match slots.get(&id) {
        Some(slot) => {
            slot.tx.send_replace(desired);
        }
        None => {
            if let Desired::Run(pod) = desired {
                let (tx, rx) = watch::channel(Desired::Run(pod.clone()));
                let task = tokio::spawn(worker::run(shared.clone(), pod, rx, workers.clone()));
                slots.insert(id, Slot { tx, task });
            }
        }
    }
}

/// Make the workers match the informer's full list: pods it holds run (a worker already
/// running the same uid carries on), the others stop.
fn resync(
    shared: &Arc<Shared>,
    informer: &Informer,
    store: &NodeStore,
    slots: &mut HashMap<String, Slot>,
    workers: &CancellationToken,
) {
    let pods = informer.store().list(None);
    store.replace_pods(pods.iter().map(|p| &**p));
    let live: std::collections::HashSet<String> = pods.iter().map(|p| uid(p).to_string()).collect();
    for p in pods {
        start_or_update(shared, slots, workers, uid(&p).to_string(), Desired::Run(p));
    }
    for (id, slot) in slots.iter() {
        if !live.contains(id) {
            slot.tx.send_replace(Desired::Gone);
        }
    }
}
