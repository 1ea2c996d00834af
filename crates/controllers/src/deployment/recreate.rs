//! The Recreate strategy (upstream `pkg/controller/deployment/recreate.go`): scale every old
//! ReplicaSet to zero, wait until none of their pods is left running, then create (or reuse)
//! the new ReplicaSet at full size. Old and new pods never run together.

use std::collections::HashSet;

use ledge_api::ApiError;
use ledge_controller::{Action, owner};
use serde_json::Value;

use super::plan::Rs;
use super::status;
use super::{Dep, DeploymentController};
use crate::{meta, pod};

impl DeploymentController {
    /// One Recreate step.
    pub(super) async fn rollout_recreate(
        &self,
        d: &mut Dep,
        rss: &mut Vec<Value>,
    ) -> Result<Action, ApiError> {
        // No new ReplicaSet yet: creating it now would scale up before old pods are gone.
        let (new, old) = self.new_and_old(d, rss, false).await?;
        let new_uid = new.as_ref().map(|r| meta::uid(r).to_string());
        let mut scaled = false;
        for o in old.iter().filter(|o| Rs::of(o).is_active()) {
            scaled |= self.scale_and_record(d, rss, o, 0).await?;
        }
        if scaled || self.old_pods_running(d, rss, new_uid.as_deref()) {
            return self.sync_rollout_status(d, rss, new_uid.as_deref()).await;
        }
        let new = match new {
            Some(n) => n,
            None => match self.new_and_old(d, rss, true).await?.0 {
                Some(n) => n,
                None => return Ok(Action::AwaitChange),
            },
        };
        let new_uid = meta::uid(&new).to_string();
        self.scale_and_record(d, rss, &new, d.spec.replicas).await?;
        if status::is_complete(&d.spec, &d.status) {
            self.cleanup(d, rss, &old).await?;
        }
        self.sync_rollout_status(d, rss, Some(&new_uid)).await
    }

    /// Whether an old ReplicaSet still reports pods, or a pod of one is not finished (upstream
    /// `oldPodsRunning`; a terminating pod still runs).
    fn old_pods_running(&self, d: &Dep, rss: &[Value], new_uid: Option<&str>) -> bool {
        let old: HashSet<&str> = rss
            .iter()
            .map(meta::uid)
            .filter(|u| Some(*u) != new_uid)
            .collect();
        let reported: i32 = rss
            .iter()
            .filter(|r| old.contains(meta::uid(r)))
            .map(|r| Rs::of(r).status_replicas)
            .sum();
        if reported > 0 {
            return true;
        }
        let selector = meta::selector(&d.obj);
        self.pods.store().list(d.namespace()).iter().any(|p| {
            selector.matches_object(p)
                && owner::controller_uid(p).is_some_and(|u| old.contains(u))
                && !matches!(pod::phase(p), "Succeeded" | "Failed")
        })
    }
}
