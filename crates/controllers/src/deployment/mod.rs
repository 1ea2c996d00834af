//! The Deployment controller (upstream `pkg/controller/deployment`): rolls a Deployment's pod
//! template out through ReplicaSets named `<deployment>-<pod-template-hash>`.
//!
//! Each reconcile claims the Deployment's ReplicaSets, then, like upstream `syncDeployment`:
//! a deleting Deployment only gets its status; a paused one, or one whose size changed, is only
//! scaled (proportionally across ReplicaSets mid-rollout); otherwise the strategy runs —
//! RollingUpdate within `maxSurge`/`maxUnavailable` (`rolling.rs`), or Recreate: old pods gone
//! first (`recreate.rs`). `kubectl rollout undo` copies an old template back, so the ReplicaSet
//! of that template is found again and gets the next revision instead of a twin.
//!
//! Pure rules live in [`hash`], [`spec`], [`plan`], [`revision`] and [`status`]; API writes in
//! `sync.rs`.

pub mod hash;
pub mod plan;
pub mod revision;
pub mod spec;
pub mod status;

mod recreate;
mod rolling;
mod sync;

use std::sync::Arc;

use chrono::Utc;
use ledge_api::ApiError;
use ledge_controller::kinds::{DEPLOYMENT, REPLICA_SET};
use ledge_controller::{
    Action, Client, EventRecorder, Informer, ObjectKey, WorkQueue, enqueue_all, enqueue_changes,
    itself, owner,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::spec::Spec;
use self::status::{Condition, PAUSED, PROGRESSING, RESUMED, Status, TIMED_OUT};
use crate::{Informers, meta};

/// The name events are signed with.
pub const COMPONENT: &str = "deployment-controller";
/// Parallel reconciles (upstream `--concurrent-deployment-syncs`).
const WORKERS: usize = 5;

/// The controller: its client and the caches it reads. It remembers nothing between reconciles.
pub struct DeploymentController {
    client: Arc<dyn Client>,
    deployments: Arc<Informer>,
    replica_sets: Arc<Informer>,
    pods: Arc<Informer>,
    events: EventRecorder,
}

/// One reconcile's Deployment: the object as last read or written, its spec and its status.
/// Every status change is written at once, so `status` is always what the API holds.
struct Dep {
    obj: Value,
    spec: Spec,
    status: Status,
}

impl Dep {
    fn new(obj: Value) -> Self {
        Self {
            spec: Spec::of(&obj),
            status: Status::of(&obj),
            obj,
        }
    }

    fn namespace(&self) -> Option<&str> {
        meta::namespace(&self.obj)
    }
}

/// Start the Deployment controller on shared informers; it stops with `cancel`.
pub fn start(client: Arc<dyn Client>, informers: &Informers, cancel: CancellationToken) {
    let ctl = Arc::new(DeploymentController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        deployments: informers.deployments.clone(),
        replica_sets: informers.replica_sets.clone(),
        pods: informers.pods.clone(),
    });
    let queue = WorkQueue::new();
    let deployments = ctl.deployments.clone();
    enqueue_changes(
        &deployments,
        deployments.clone(),
        queue.clone(),
        cancel.clone(),
        itself,
    );
    let owners = deployments.clone();
    enqueue_changes(
        &ctl.replica_sets,
        deployments.clone(),
        queue.clone(),
        cancel.clone(),
        move |rs| owner::owner_keys(rs, &DEPLOYMENT, |ns| owners.store().list(ns)),
    );
    // A pod that went away may let a Recreate rollout continue (upstream `deletePod`).
    let (pods, replica_sets) = (ctl.pods.clone(), ctl.replica_sets.clone());
    enqueue_changes(
        &ctl.pods,
        deployments.clone(),
        queue.clone(),
        cancel.clone(),
        move |p| {
            if pods.store().get(&ObjectKey::of(p)).is_some() {
                return Vec::new();
            }
            let Some(rs_ref) = owner::controller_of(p) else {
                return Vec::new();
            };
            if meta::str_at(rs_ref, "/kind") != REPLICA_SET.kind {
                return Vec::new();
            }
            replica_sets
                .store()
                .get(&ObjectKey::new(
                    meta::namespace(p),
                    meta::str_at(rs_ref, "/name"),
                ))
                .map(|rs| owner::owner_keys(&rs, &DEPLOYMENT, |_| Vec::new()))
                .unwrap_or_default()
        },
    );
    let (rs, pods) = (ctl.replica_sets.clone(), ctl.pods.clone());
    tokio::spawn(async move {
        deployments.wait_synced().await;
        rs.wait_synced().await;
        pods.wait_synced().await;
        enqueue_all(&deployments, &queue);
        ledge_controller::run("deployment", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}

impl DeploymentController {
    /// Reconcile one Deployment (upstream `syncDeployment`).
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let Some(obj) = self.deployments.store().get(&key) else {
            return Ok(Action::AwaitChange);
        };
        let mut d = Dep::new((*obj).clone());
        let selector = meta::selector(&d.obj);
        if selector.is_empty() {
            self.events.warning(
                &DEPLOYMENT,
                &d.obj,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            if d.status.observed_generation < d.spec.generation {
                let mut s = d.status.clone();
                s.observed_generation = d.spec.generation;
                self.write_status(&mut d, s).await?;
            }
            return Ok(Action::AwaitChange);
        }
        let candidates = self.replica_sets.store().list(key.namespace.as_deref());
        let claimed = owner::claim(
            &*self.client,
            &DEPLOYMENT,
            &REPLICA_SET,
            &d.obj,
            &selector,
            candidates,
        )
        .await?;
        let mut rss: Vec<Value> = claimed.iter().map(|r| (**r).clone()).collect();
        if meta::is_deleting(&d.obj) {
            return self.sync_status_only(&mut d, &mut rss).await;
        }
        self.check_paused_conditions(&mut d).await?;
        if d.spec.paused {
            return self.sync(&mut d, &mut rss).await;
        }
        if self.is_scaling_event(&mut d, &mut rss).await? {
            return self.sync(&mut d, &mut rss).await;
        }
        if d.spec.is_rolling() {
            self.rollout_rolling(&mut d, &mut rss).await
        } else {
            self.rollout_recreate(&mut d, &mut rss).await
        }
    }

    /// Mark pausing and resuming in the Progressing condition, so a paused rollout is not
    /// reported as timed out (upstream `checkPausedConditions`).
    async fn check_paused_conditions(&self, d: &mut Dep) -> Result<(), ApiError> {
        if !d.spec.has_progress_deadline() {
            return Ok(());
        }
        let cond = d.status.condition(PROGRESSING);
        if cond.is_some_and(|c| c.reason == TIMED_OUT) {
            return Ok(());
        }
        let paused_recorded = cond.is_some_and(|c| c.reason == PAUSED);
        let c = if d.spec.paused && !paused_recorded {
            Condition::new(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                Utc::now(),
            )
        } else if !d.spec.paused && paused_recorded {
            Condition::new(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                Utc::now(),
            )
        } else {
            return Ok(());
        };
        let mut s = d.status.clone();
        s.set_condition(c);
        self.write_status(d, s).await
    }

    /// Whether the Deployment was resized rather than changed: an active ReplicaSet was sized
    /// for another `spec.replicas` (upstream `isScalingEvent`).
    async fn is_scaling_event(&self, d: &mut Dep, rss: &mut Vec<Value>) -> Result<bool, ApiError> {
        let (new, old) = self.new_and_old(d, rss, false).await?;
        Ok(new
            .iter()
            .chain(old.iter())
            .map(plan::Rs::of)
            .filter(plan::Rs::is_active)
            .any(|r| r.desired.is_some_and(|n| n != d.spec.replicas)))
    }
}
