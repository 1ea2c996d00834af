//! The controller harness: a [`Client`] to the Kubernetes API (in process or over HTTPS),
//! [`Informer`]s that list, watch and cache one kind, a de-duplicating [`WorkQueue`] with
//! back-off, and [`run`], the loop that turns changes into `reconcile(key)` calls — the shape of
//! kube-rs `Controller` and Kubernetes `pkg/controller`. A reconcile reads state and never
//! remembers it; its [`Action`] says when to look again.
//!
//! Helpers every workload controller needs live here too: [`owner`] (controller references,
//! adoption and release), [`Expectations`] (not acting twice on a cache that has not caught up
//! with its own writes), [`EventRecorder`] (core/v1 Events) and [`enqueue_changes`] (mapping
//! watched changes to keys).
//!
//! [`leader`] elects one leader among several servers through a Lease, so work that must not
//! run twice (controllers, the scheduler) runs on one server at a time.

mod client;
mod events;
mod expectations;
mod informer;
pub mod leader;
pub mod owner;
mod queue;
mod runner;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod watches;

pub use client::{BoxFuture, BoxStream, Client, Kind, WatchEvent, is_namespace_terminating};
pub use events::{EventRecorder, EventType, now};
pub use expectations::{Expectations, TTL as EXPECTATIONS_TTL};
pub use informer::{Informer, Store};
pub use queue::WorkQueue;
pub use runner::{Action, ObjectKey, run};
pub use watches::{enqueue_all, enqueue_changes, itself};

/// Standard kinds controllers work with.
pub mod kinds {
    use super::Kind;

    /// core/v1 Pod.
    pub const POD: Kind = Kind::new("", "v1", "pods", "Pod", true);
    /// core/v1 Node.
    pub const NODE: Kind = Kind::new("", "v1", "nodes", "Node", false);
    /// core/v1 Event.
    pub const EVENT: Kind = Kind::new("", "v1", "events", "Event", true);
    /// core/v1 ConfigMap.
    pub const CONFIG_MAP: Kind = Kind::new("", "v1", "configmaps", "ConfigMap", true);
    /// core/v1 Secret.
    pub const SECRET: Kind = Kind::new("", "v1", "secrets", "Secret", true);
    /// core/v1 Service.
    pub const SERVICE: Kind = Kind::new("", "v1", "services", "Service", true);
    /// core/v1 Endpoints.
    pub const ENDPOINTS: Kind = Kind::new("", "v1", "endpoints", "Endpoints", true);
    /// apps/v1 Deployment.
    pub const DEPLOYMENT: Kind = Kind::new("apps", "v1", "deployments", "Deployment", true);
    /// apps/v1 ReplicaSet.
    pub const REPLICA_SET: Kind = Kind::new("apps", "v1", "replicasets", "ReplicaSet", true);
    /// apps/v1 DaemonSet.
    pub const DAEMON_SET: Kind = Kind::new("apps", "v1", "daemonsets", "DaemonSet", true);
    /// apps/v1 ControllerRevision.
    pub const CONTROLLER_REVISION: Kind = Kind::new(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
    );
    /// batch/v1 Job.
    pub const JOB: Kind = Kind::new("batch", "v1", "jobs", "Job", true);
    /// batch/v1 CronJob.
    pub const CRON_JOB: Kind = Kind::new("batch", "v1", "cronjobs", "CronJob", true);
    /// coordination.k8s.io/v1 Lease.
    pub const LEASE: Kind = Kind::new("coordination.k8s.io", "v1", "leases", "Lease", true);
    /// node.k8s.io/v1 RuntimeClass.
    pub const RUNTIME_CLASS: Kind =
        Kind::new("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", false);
    /// policy/v1 PodDisruptionBudget.
    pub const POD_DISRUPTION_BUDGET: Kind = Kind::new(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
    );
    /// discovery.k8s.io/v1 EndpointSlice.
    pub const ENDPOINT_SLICE: Kind = Kind::new(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
    );
}
