//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps `spec.replicas` active
//! pods that match `spec.selector` and are controlled by the ReplicaSet — adopting matching
//! orphans, releasing pods that stopped matching, creating pods from `spec.template`, deleting
//! the least valuable ones first — and reports their counts in `status`.
//!
//! It watches ReplicaSets and pods; a pod change queues its controller (or, for an orphan,
//! every ReplicaSet in its namespace that selects it). What lives elsewhere: ranking pods for
//! deletion ([`rank`]), the status arithmetic ([`status`]), the reconcile itself (`sync.rs`).

pub mod rank;
pub mod status;
mod sync;

use std::sync::Arc;

use ledge_controller::kinds::REPLICA_SET;
use ledge_controller::{
    EventRecorder, Expectations, Informer, WorkQueue, enqueue_all, enqueue_changes, itself, owner,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{Informers, meta};

/// The name events are signed with.
pub const COMPONENT: &str = "replicaset-controller";
/// Parallel reconciles (upstream `--concurrent-replicaset-syncs`).
const WORKERS: usize = 5;

/// The controller's state: what it reads and writes through. Nothing here remembers cluster
/// state except the expectations of its own in-flight writes.
pub struct ReplicaSetController {
    client: Arc<dyn ledge_controller::Client>,
    replica_sets: Arc<Informer>,
    pods: Arc<Informer>,
    expectations: Expectations,
    events: EventRecorder,
}

/// Start the ReplicaSet controller on shared informers; it stops with `cancel`.
pub fn start(
    client: Arc<dyn ledge_controller::Client>,
    informers: &Informers,
    cancel: CancellationToken,
) {
    let ctl = Arc::new(ReplicaSetController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        replica_sets: informers.replica_sets.clone(),
        pods: informers.pods.clone(),
        expectations: Expectations::new(),
    });
    let queue = WorkQueue::new();
    let rs = ctl.replica_sets.clone();
    enqueue_changes(&rs, rs.clone(), queue.clone(), cancel.clone(), itself);
    let owners = rs.clone();
    enqueue_changes(
        &ctl.pods,
        rs.clone(),
        queue.clone(),
        cancel.clone(),
        move |pod| owner::owner_keys(pod, &REPLICA_SET, |ns| owners.store().list(ns)),
    );
    let pods = ctl.pods.clone();
    tokio::spawn(async move {
        rs.wait_synced().await;
        pods.wait_synced().await;
        enqueue_all(&rs, &queue);
        ledge_controller::run("replicaset", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}

impl ReplicaSetController {
    /// The pods of the ReplicaSets controlled by the same owner as `rs` (a Deployment's other
    /// ReplicaSets), for ranking doubled-up pods (upstream `getIndirectlyRelatedPods`).
    fn related_pods(&self, rs: &Value) -> Vec<Arc<Value>> {
        let Some(owner_uid) = owner::controller_uid(rs) else {
            return Vec::new();
        };
        let ns = meta::namespace(rs);
        let siblings: Vec<String> = self
            .replica_sets
            .store()
            .list(ns)
            .iter()
            .filter(|s| owner::is_controlled_by(s, owner_uid))
            .map(|s| meta::uid(s).to_string())
            .collect();
        self.pods
            .store()
            .list(ns)
            .into_iter()
            .filter(|p| owner::controller_uid(p).is_some_and(|u| siblings.iter().any(|s| s == u)))
            .collect()
    }
}
