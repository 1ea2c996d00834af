//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible node —
//! selected by the template's `nodeSelector` and required node affinity, its taints tolerated
//! (daemon pods tolerate `not-ready`, `unreachable`, the pressure taints and `unschedulable`
//! automatically) — each pinned to its node by a `metadata.name` node affinity term so the
//! scheduler binds it there. Template changes roll out through ControllerRevisions
//! (`controller-revision-hash`) with `RollingUpdate` (`maxUnavailable`, `maxSurge`) or wait
//! for pods to be deleted by hand with `OnDelete`; the status counts what `kubectl rollout
//! status ds/<name>` waits for.
//!
//! It watches DaemonSets, nodes, pods and ControllerRevisions; any node change queues every
//! DaemonSet. Pure rules live in [`placement`], [`history`], [`plan`] and [`status`]; API writes
//! in `sync.rs`.

pub mod history;
pub mod placement;
pub mod plan;
pub mod status;
mod sync;

use std::sync::Arc;

use ledge_controller::kinds::DAEMON_SET;
use ledge_controller::{
    Client, EventRecorder, Expectations, Informer, WorkQueue, enqueue_all, enqueue_changes, itself,
    owner,
};
use tokio_util::sync::CancellationToken;

use crate::Informers;
use crate::clock::Clock;

/// The name events are signed with.
pub const COMPONENT: &str = "daemonset-controller";
/// Parallel reconciles (upstream `--concurrent-daemonset-syncs`).
const WORKERS: usize = 2;

/// The controller: its client, the caches it reads and the expectations of its own writes.
pub struct DaemonSetController {
    client: Arc<dyn Client>,
    daemon_sets: Arc<Informer>,
    nodes: Arc<Informer>,
    pods: Arc<Informer>,
    revisions: Arc<Informer>,
    expectations: Expectations,
    events: EventRecorder,
    clock: Arc<dyn Clock>,
}

/// Start the DaemonSet controller on shared informers; it stops with `cancel`.
pub fn start(
    client: Arc<dyn Client>,
    informers: &Informers,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let ctl = Arc::new(DaemonSetController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        daemon_sets: informers.daemon_sets.clone(),
        nodes: informers.nodes.clone(),
        pods: informers.pods.clone(),
        revisions: informers.controller_revisions.clone(),
        expectations: Expectations::new(),
        clock,
    });
    let queue = WorkQueue::new();
    let ds = ctl.daemon_sets.clone();
    enqueue_changes(&ds, ds.clone(), queue.clone(), cancel.clone(), itself);
    for owned in [ctl.pods.clone(), ctl.revisions.clone()] {
        let owners = ds.clone();
        enqueue_changes(
            &owned,
            ds.clone(),
            queue.clone(),
            cancel.clone(),
            move |o| owner::owner_keys(o, &DAEMON_SET, |ns| owners.store().list(ns)),
        );
    }
    let all = ds.clone();
    enqueue_changes(
        &ctl.nodes,
        ds.clone(),
        queue.clone(),
        cancel.clone(),
        move |_| {
            all.store()
                .list(None)
                .iter()
                .map(|d| ledge_controller::ObjectKey::of(d))
                .collect()
        },
    );
    let (nodes, pods, revisions) = (ctl.nodes.clone(), ctl.pods.clone(), ctl.revisions.clone());
    tokio::spawn(async move {
        ds.wait_synced().await;
        nodes.wait_synced().await;
        pods.wait_synced().await;
        revisions.wait_synced().await;
        enqueue_all(&ds, &queue);
        ledge_controller::run("daemonset", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}
