//! The endpoints controllers (upstream `pkg/controller/endpointslice` and
//! `pkg/controller/endpoint`, folded into one reconcile per Service): for every Service with a
//! selector, the EndpointSlices (discovery.k8s.io/v1, IPv4, managed by
//! `endpointslice-controller.k8s.io`) and the legacy core/v1 Endpoints of the same name list its
//! pods — each pod its own endpoint even when pods share the node's IP, as ledge's host-network
//! pods do.
//!
//! A Service without a selector is left alone: its endpoints are the user's (the `kubernetes`
//! Service in `default` is one). It watches Services, pods, EndpointSlices and Endpoints; a pod
//! change queues every Service with a selector in its namespace (so a pod whose labels stopped
//! matching is removed too). What lives elsewhere: the desired content ([`desired`]), the writes
//! (`sync.rs`).

pub mod desired;
mod sync;

use std::sync::Arc;

use ledge_controller::{
    Client, EventRecorder, Expectations, Informer, ObjectKey, WorkQueue, enqueue_all,
    enqueue_changes, itself,
};
use tokio_util::sync::CancellationToken;

use crate::{Informers, meta};

/// The name events are signed with.
pub const COMPONENT: &str = "endpointslice-controller";
/// Parallel reconciles (upstream `--concurrent-service-endpoint-syncs`).
const WORKERS: usize = 5;

/// The controller: its client and the caches it reads.
pub struct EndpointsController {
    client: Arc<dyn Client>,
    services: Arc<Informer>,
    pods: Arc<Informer>,
    slices: Arc<Informer>,
    endpoints: Arc<Informer>,
    /// Nodes: the pods of a node that is not Ready are not ready endpoints.
    nodes: Arc<Informer>,
    /// Slices created or deleted and not yet seen by the slice cache.
    expectations: Expectations,
    events: EventRecorder,
}

/// Start the endpoints controller on shared informers; it stops with `cancel`.
pub fn start(client: Arc<dyn Client>, informers: &Informers, cancel: CancellationToken) {
    let ctl = Arc::new(EndpointsController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        services: informers.services.clone(),
        pods: informers.pods.clone(),
        slices: informers.endpoint_slices.clone(),
        endpoints: informers.endpoints.clone(),
        nodes: informers.nodes.clone(),
        expectations: Expectations::new(),
    });
    let queue = WorkQueue::new();
    let services = ctl.services.clone();
    enqueue_changes(
        &services,
        services.clone(),
        queue.clone(),
        cancel.clone(),
        itself,
    );
    let svcs = services.clone();
    enqueue_changes(
        &ctl.pods,
        services.clone(),
        queue.clone(),
        cancel.clone(),
        move |pod| {
            svcs.store()
                .list(meta::namespace(pod))
                .iter()
                .filter(|s| desired::selector(s).is_some())
                .map(|s| ObjectKey::of(s))
                .collect()
        },
    );
    enqueue_changes(
        &ctl.slices,
        services.clone(),
        queue.clone(),
        cancel.clone(),
        |slice| {
            let labels = meta::labels(slice);
            let ours = labels
                .get(desired::MANAGED_BY_LABEL)
                .and_then(|v| v.as_str())
                == Some(desired::MANAGED_BY);
            match labels
                .get(desired::SERVICE_NAME_LABEL)
                .and_then(|v| v.as_str())
            {
                Some(svc) if ours => vec![ObjectKey::new(meta::namespace(slice), svc)],
                _ => Vec::new(),
            }
        },
    );
    enqueue_changes(
        &ctl.endpoints,
        services.clone(),
        queue.clone(),
        cancel.clone(),
        itself,
    );
    // A node turning (not) Ready changes whether its pods serve: look at every Service.
    let svcs = services.clone();
    enqueue_changes(
        &ctl.nodes,
        services.clone(),
        queue.clone(),
        cancel.clone(),
        move |_node| {
            svcs.store()
                .list(None)
                .iter()
                .filter(|s| desired::selector(s).is_some())
                .map(|s| ObjectKey::of(s))
                .collect()
        },
    );
    let (pods, slices, endpoints) = (ctl.pods.clone(), ctl.slices.clone(), ctl.endpoints.clone());
    tokio::spawn(async move {
        services.wait_synced().await;
        pods.wait_synced().await;
        slices.wait_synced().await;
        endpoints.wait_synced().await;
        enqueue_all(&services, &queue);
        ledge_controller::run("endpoints", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}
