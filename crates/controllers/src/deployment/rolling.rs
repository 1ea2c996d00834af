//! The RollingUpdate strategy (upstream `pkg/controller/deployment/rolling.go`): grow the new
//! ReplicaSet as far as `replicas + maxSurge` pods allow; otherwise shrink old ones as far as
//! `replicas - maxUnavailable` available pods allow; once complete, trim history. One step per
//! reconcile; the ReplicaSets' status changes bring the next one.

use ledge_api::ApiError;
use ledge_controller::Action;
use serde_json::Value;

use super::plan::{self, Rs};
use super::status;
use super::sync::find;
use super::{Dep, DeploymentController};
use crate::meta;

impl DeploymentController {
    /// One rolling-update step.
    pub(super) async fn rollout_rolling(
        &self,
        d: &mut Dep,
        rss: &mut Vec<Value>,
    ) -> Result<Action, ApiError> {
        let (new, old) = self.new_and_old(d, rss, true).await?;
        let Some(new) = new else {
            return Ok(Action::AwaitChange);
        };
        let new_uid = meta::uid(&new).to_string();
        let new_view = Rs::of(&new);
        let old_views: Vec<Rs> = old.iter().map(Rs::of).collect();

        // Scale up, if we can.
        let target = if new_view.replicas > d.spec.replicas {
            d.spec.replicas
        } else {
            let all: Vec<&Rs> = old_views.iter().chain([&new_view]).collect();
            plan::new_rs_replicas(&d.spec, &all, &new_view)
        };
        if self.scale_and_record(d, rss, &new, target).await? {
            return self.sync_rollout_status(d, rss, Some(&new_uid)).await;
        }

        // Scale down, if we can.
        let steps = plan::scale_down_old(&d.spec, &old_views, &new_view);
        let mut scaled_down = false;
        for (name, _, to) in steps {
            let uid = old_views
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.uid.as_str());
            if let Some(obj) = uid.and_then(|u| find(rss, u)) {
                scaled_down |= self.scale_and_record(d, rss, &obj, to).await?;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(d, rss, Some(&new_uid)).await;
        }

        if status::is_complete(&d.spec, &d.status) {
            self.cleanup(d, rss, &old).await?;
        }
        self.sync_rollout_status(d, rss, Some(&new_uid)).await
    }
}
