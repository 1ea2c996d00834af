//! The node lifecycle controller (upstream `pkg/controller/nodelifecycle` with
//! TaintBasedEvictions): watches Nodes and their Leases in `kube-node-lease`. A node whose Lease
//! has not been renewed (nor a new status posted) for the grace period (`--node-monitor-grace-period`, 40 s by default)
//! gets its agent-posted conditions set `Unknown` (`NodeStatusUnknown`, "Kubelet stopped posting
//! node status.") and the `node.kubernetes.io/unreachable` taints (`NoExecute` with `timeAdded`,
//! and `NoSchedule`); a node reporting Ready False gets the `not-ready` taints instead. When the
//! Lease is renewed and the agent reports Ready again, they are removed. Pods on a node that is
//! not Ready are marked not Ready, and `NoExecute` taints evict pods by ledge's edge rule
//! ([`health`]): by default nothing is evicted for losing contact.
//!
//! Two rules differ from upstream and are deliberate:
//! - a node without any Lease is left alone (never turned Unknown, never tainted) — upstream
//!   falls back on status heartbeats; ledge's agent always renews a Lease, so a lease-less Node is
//!   an API object someone manages by hand;
//! - a pod without a toleration for `unreachable`/`not-ready` is not evicted (see [`health`]).
//!
//! The only memory kept between reconciles is when each node's heartbeat was last seen to change
//! (upstream's `nodeHealthMap` probe time), so clock skew between node and server does not
//! matter. After a restart every node gets a full grace period again.

pub mod health;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledge_controller::{
    Client, EventRecorder, Expectations, Informer, ObjectKey, WorkQueue, enqueue_all,
    enqueue_changes, itself,
};
use tokio_util::sync::CancellationToken;

use self::health::Probe;
use crate::clock::Clock;
use crate::{Informers, meta};

/// The name events are signed with.
pub const COMPONENT: &str = "node-controller";
/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream `--node-monitor-grace-period` default.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// Parallel reconciles.
const WORKERS: usize = 2;

/// The controller: its client, caches, clock, and the Lease probe times.
pub struct NodeLifecycleController {
    client: Arc<dyn Client>,
    nodes: Arc<Informer>,
    leases: Arc<Informer>,
    pods: Arc<Informer>,
    clock: Arc<dyn Clock>,
    grace: chrono::Duration,
    probes: Mutex<HashMap<String, Probe>>,
    /// Evictions the pod cache does not show yet, per node (no pod is evicted twice).
    evictions: Expectations,
    events: EventRecorder,
}

/// Start the node lifecycle controller on shared informers with a Lease grace period; it stops
/// with `cancel`.
pub fn start(
    client: Arc<dyn Client>,
    informers: &Informers,
    grace: Duration,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let ctl = Arc::new(NodeLifecycleController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        nodes: informers.nodes.clone(),
        leases: informers.leases.clone(),
        pods: informers.pods.clone(),
        clock,
        grace: chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::seconds(40)),
        probes: Mutex::default(),
        evictions: Expectations::new(),
    });
    let queue = WorkQueue::new();
    let nodes = ctl.nodes.clone();
    enqueue_changes(&nodes, nodes.clone(), queue.clone(), cancel.clone(), itself);
    enqueue_changes(
        &ctl.leases,
        nodes.clone(),
        queue.clone(),
        cancel.clone(),
        |lease| {
            if meta::namespace(lease) == Some(LEASE_NAMESPACE) {
                vec![ObjectKey::new(None, meta::name(lease))]
            } else {
                Vec::new()
            }
        },
    );
    // Pods matter only on nodes that are not Ready or carry NoExecute taints.
    let watched = nodes.clone();
    enqueue_changes(
        &ctl.pods,
        nodes.clone(),
        queue.clone(),
        cancel.clone(),
        move |pod| {
            let node = meta::str_at(pod, "/spec/nodeName");
            if node.is_empty() {
                return Vec::new();
            }
            let key = ObjectKey::new(None, node);
            match watched.store().get(&key) {
                Some(n)
                    if health::ready_status(&n) != "True"
                        || crate::taints::of_node(&n)
                            .iter()
                            .any(|t| crate::taints::effect(t) == crate::taints::NO_EXECUTE) =>
                {
                    vec![key]
                }
                _ => Vec::new(),
            }
        },
    );
    let (leases, pods) = (ctl.leases.clone(), ctl.pods.clone());
    tokio::spawn(async move {
        nodes.wait_synced().await;
        leases.wait_synced().await;
        pods.wait_synced().await;
        enqueue_all(&nodes, &queue);
        ledge_controller::run("nodelifecycle", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}
