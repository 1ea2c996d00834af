//! ledge's controllers, one module each, all on the `ledge-controller` harness: watch →
//! enqueue keys → reconcile(key) → `Action`. They run in the server process against the
//! in-process client, and would run unchanged against the HTTPS API.
//!
//! - [`replicaset`]: keeps a ReplicaSet's pods at `spec.replicas`.
//! - [`deployment`]: rolls a Deployment's template out through ReplicaSets.
//! - [`cronjob`]: starts Jobs on a cron schedule (UTC).
//! - [`daemonset`]: one pod per eligible node, rolled out through ControllerRevisions.
//! - [`endpoints`]: EndpointSlices and legacy Endpoints of every Service with a selector.
//! - [`job`]: runs a Job's pods to completion, counts them exactly, deletes it after its TTL.
//! - [`nodelifecycle`]: Lease-based node health, the `unreachable`/`not-ready` taints, and
//!   ledge's edge eviction rule.
//!
//! Shared readers of JSON objects live in [`meta`] and [`pod`]; taint and node-selection rules
//! in [`taints`]; the time seam in [`clock`].

pub mod clock;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod job;
pub mod meta;
pub mod nodelifecycle;
pub mod pod;
pub mod replicaset;
pub mod taints;

use std::sync::Arc;
use std::time::Duration;

use ledge_controller::kinds::{
    CONTROLLER_REVISION, CRON_JOB, DAEMON_SET, DEPLOYMENT, ENDPOINT_SLICE, ENDPOINTS, JOB, LEASE,
    NODE, POD, REPLICA_SET, SERVICE,
};
use ledge_controller::{Client, Informer};
use tokio_util::sync::CancellationToken;

/// The informers the controllers share, so each kind is listed and watched once.
pub struct Informers {
    /// Every pod.
    pub pods: Arc<Informer>,
    /// Every ReplicaSet.
    pub replica_sets: Arc<Informer>,
    /// Every Deployment.
    pub deployments: Arc<Informer>,
    /// Every Service.
    pub services: Arc<Informer>,
    /// Every EndpointSlice.
    pub endpoint_slices: Arc<Informer>,
    /// Every Endpoints.
    pub endpoints: Arc<Informer>,
    /// Every Node.
    pub nodes: Arc<Informer>,
    /// Every Lease (node Leases live in `kube-node-lease`).
    pub leases: Arc<Informer>,
    /// Every DaemonSet.
    pub daemon_sets: Arc<Informer>,
    /// Every ControllerRevision.
    pub controller_revisions: Arc<Informer>,
    /// Every Job.
    pub jobs: Arc<Informer>,
    /// Every CronJob.
    pub cron_jobs: Arc<Informer>,
}

impl Informers {
    /// Start following every kind the controllers read, until `cancel`.
    pub fn start(client: &Arc<dyn Client>, cancel: &CancellationToken) -> Self {
        let follow = |kind| Informer::start(client.clone(), kind, cancel.child_token());
        Self {
            pods: follow(POD),
            replica_sets: follow(REPLICA_SET),
            deployments: follow(DEPLOYMENT),
            services: follow(SERVICE),
            endpoint_slices: follow(ENDPOINT_SLICE),
            endpoints: follow(ENDPOINTS),
            nodes: follow(NODE),
            leases: follow(LEASE),
            daemon_sets: follow(DAEMON_SET),
            controller_revisions: follow(CONTROLLER_REVISION),
            jobs: follow(JOB),
            cron_jobs: follow(CRON_JOB),
        }
    }
}

/// Settings of the controllers (`ledge server` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node's Lease may go unrenewed before the node is marked Unknown and tainted
    /// unreachable (upstream `--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: nodelifecycle::DEFAULT_GRACE_PERIOD,
        }
    }
}

/// Start every controller; they stop with `cancel`.
pub fn start(client: Arc<dyn Client>, config: Config, cancel: CancellationToken) {
    let informers = Informers::start(&client, &cancel);
    let clock: Arc<dyn clock::Clock> = Arc::new(clock::SystemClock);
    replicaset::start(client.clone(), &informers, cancel.child_token());
    deployment::start(client.clone(), &informers, cancel.child_token());
    endpoints::start(client.clone(), &informers, cancel.child_token());
    daemonset::start(
        client.clone(),
        &informers,
        clock.clone(),
        cancel.child_token(),
    );
    job::start(
        client.clone(),
        &informers,
        clock.clone(),
        cancel.child_token(),
    );
    cronjob::start(
        client.clone(),
        &informers,
        clock.clone(),
        cancel.child_token(),
    );
    nodelifecycle::start(
        client,
        &informers,
        config.node_monitor_grace_period,
        clock,
        cancel.child_token(),
    );
}
