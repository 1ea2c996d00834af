//! ledge's controllers, one module each, all on the `ledge-controller` harness: watch →
//! enqueue keys → reconcile(key) → `Action`. They run in the server process against the
//! in-process client, and would run unchanged against the HTTPS API.
//!
//! - [`replicaset`]: keeps a ReplicaSet's pods at `spec.replicas`.
//! - [`deployment`]: rolls a Deployment's template out through ReplicaSets.
//!
//! Shared readers of JSON objects live in [`meta`] and [`pod`].

pub mod deployment;
pub mod meta;
pub mod pod;
pub mod replicaset;

use std::sync::Arc;

use ledge_controller::kinds::{DEPLOYMENT, POD, REPLICA_SET};
use ledge_controller::{Client, Informer};
use tokio_util::sync::CancellationToken;

/// The informers the workload controllers share, so each kind is listed and watched once.
pub struct Informers {
    /// Every pod.
    pub pods: Arc<Informer>,
    /// Every ReplicaSet.
    pub replica_sets: Arc<Informer>,
    /// Every Deployment.
    pub deployments: Arc<Informer>,
}

impl Informers {
    /// Start following pods, ReplicaSets and Deployments until `cancel`.
    pub fn start(client: &Arc<dyn Client>, cancel: &CancellationToken) -> Self {
        Self {
            pods: Informer::start(client.clone(), POD, cancel.child_token()),
            replica_sets: Informer::start(client.clone(), REPLICA_SET, cancel.child_token()),
            deployments: Informer::start(client.clone(), DEPLOYMENT, cancel.child_token()),
        }
    }
}

/// Start every controller; they stop with `cancel`.
pub fn start(client: Arc<dyn Client>, cancel: CancellationToken) {
    let informers = Informers::start(&client, &cancel);
    replicaset::start(client.clone(), &informers, cancel.child_token());
    deployment::start(client, &informers, cancel.child_token());
}
