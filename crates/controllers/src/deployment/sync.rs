//! The Deployment controller's writes (upstream `pkg/controller/deployment/sync.go` and
//! `progress.go`): finding or creating the new ReplicaSet and keeping revisions, scaling
//! ReplicaSets with their size annotations and `ScalingReplicaSet` events, removing history
//! beyond `revisionHistoryLimit`, and writing the status.
//!
//! `rss` is the reconcile's list of claimed ReplicaSets; every ReplicaSet written replaces its
//! entry, so later steps of the same reconcile never write from a stale resourceVersion.

use chrono::Utc;
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{DEPLOYMENT, REPLICA_SET};
use ledge_controller::{Action, is_namespace_terminating, owner};
use serde_json::{Value, json};

use super::hash::{HASH_LABEL, equal_ignore_hash, template_hash};
use super::plan::{self, Rs};
use super::revision::{self, REVISION};
use super::status::{
    self, Condition, FOUND_NEW_RS, NEW_RS_CREATED, PROGRESSING, RS_CREATE_ERROR, Status,
};
use super::{Dep, DeploymentController};
use crate::meta;

/// The condition type ReplicaSets report failed pod writes with.
const REPLICA_FAILURE: &str = "ReplicaFailure";

impl DeploymentController {
    /// The new ReplicaSet (the one with the Deployment's template; created when `create` and
    /// missing) and all old ones, with revisions brought up to date (upstream
    /// `getAllReplicaSetsAndSyncRevision`).
    pub(super) async fn new_and_old(
        &self,
        d: &mut Dep,
        rss: &mut Vec<Value>,
        create: bool,
    ) -> Result<(Option<Value>, Vec<Value>), ApiError> {
        rss.sort_by(meta::by_creation);
        let template = d.obj.at("/spec/template").cloned().unwrap_or_default();
        // Oldest first, so two ReplicaSets with the same template resolve the same way each time.
        let new_index = rss.iter().position(|rs| {
            equal_ignore_hash(rs.at("/spec/template").unwrap_or(&Value::Null), &template)
        });
        let old: Vec<Value> = rss
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_index)
            .map(|(_, rs)| rs.clone())
            .collect();
        let old_views: Vec<Rs> = old.iter().map(Rs::of).collect();
        let new_revision = plan::max_revision(&old_views) + 1;
        let ns = d.namespace().map(str::to_string);
        let new = match new_index {
            Some(i) => {
                let mut rs = rss[i].clone();
                let annotated =
                    revision::set_new_rs_annotations(&d.obj, &mut rs, new_revision, true, 0, 0);
                let min_ready = meta::int_at(&rs, "/spec/minReadySeconds");
                if annotated || min_ready != d.spec.min_ready_seconds {
                    meta::set(
                        &mut rs,
                        &["spec", "minReadySeconds"],
                        json!(d.spec.min_ready_seconds),
                    );
                    rs = self.client.update(&REPLICA_SET, ns.as_deref(), rs).await?;
                    rss[i] = rs.clone();
                }
                let rev = meta::annotation(&rs, REVISION).unwrap_or("").to_string();
                self.set_deployment_revision(d, &rev).await?;
                if d.spec.has_progress_deadline() && d.status.condition(PROGRESSING).is_none() {
                    let mut s = d.status.clone();
                    let msg = format!("Found new replica set {:?}", meta::name(&rs));
                    s.set_condition(Condition::new(
                        PROGRESSING,
                        "True",
                        FOUND_NEW_RS,
                        msg,
                        Utc::now(),
                    ));
                    self.write_status(d, s).await?;
                }
                Some(rs)
            }
            None if create => Some(self.create_new_rs(d, rss, &old_views, new_revision).await?),
            None => None,
        };
        Ok((new, old))
    }

    /// Create the ReplicaSet for the current template (upstream `getNewReplicaSet`, creation
    /// half), handling a twin created by an earlier reconcile and hash collisions.
    async fn create_new_rs(
        &self,
        d: &mut Dep,
        rss: &mut Vec<Value>,
        old: &[Rs],
        new_revision: i64,
    ) -> Result<Value, ApiError> {
        let ns = d.namespace().map(str::to_string);
        let mut template = d.obj.at("/spec/template").cloned().unwrap_or_default();
        let hash = template_hash(&template, d.status.collision_count);
        meta::set(
            &mut template,
            &["metadata", "labels", HASH_LABEL],
            json!(hash),
        );
        let mut selector = d.obj.at("/spec/selector").cloned().unwrap_or_default();
        meta::set(&mut selector, &["matchLabels", HASH_LABEL], json!(hash));
        let name = format!("{}-{hash}", d.spec.name);
        let placeholder = Rs {
            name: name.clone(),
            replicas: 0,
            ..Rs::default()
        };
        let all: Vec<&Rs> = old.iter().chain([&placeholder]).collect();
        let replicas = plan::new_rs_replicas(&d.spec, &all, &placeholder);
        let mut rs = json!({
            "apiVersion": REPLICA_SET.api_version(),
            "kind": REPLICA_SET.kind,
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": template.at("/metadata/labels").cloned().unwrap_or_default(),
                "ownerReferences": [owner::controller_ref(&DEPLOYMENT, &d.obj)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": d.spec.min_ready_seconds,
                "selector": selector,
                "template": template,
            },
        });
        let max = d.spec.replicas + d.spec.max_surge();
        revision::set_new_rs_annotations(
            &d.obj,
            &mut rs,
            new_revision,
            false,
            d.spec.replicas,
            max,
        );
        let (created, already_existed) =
            match self.client.create(&REPLICA_SET, ns.as_deref(), rs).await {
                Ok(created) => (created, false),
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {
                    let existing = self
                        .client
                        .get(&REPLICA_SET, ns.as_deref(), &name)
                        .await?
                        .ok_or_else(|| e.clone())?;
                    let ours = owner::is_controlled_by(&existing, meta::uid(&d.obj));
                    let same = equal_ignore_hash(
                        existing.at("/spec/template").unwrap_or(&Value::Null),
                        d.obj.at("/spec/template").unwrap_or(&Value::Null),
                    );
                    if !(ours && same) {
                        // A hash collision: another template (or owner) has this name. A new
                        // collision count gives a new hash on the next try.
                        let mut s = d.status.clone();
                        s.collision_count = Some(s.collision_count.unwrap_or(0).saturating_add(1));
                        self.write_status(d, s).await?;
                        return Err(e);
                    }
                    (existing, true)
                }
                Err(e) if is_namespace_terminating(&e) => return Err(e),
                Err(e) => {
                    let msg = format!("Failed to create new replica set {name:?}: {}", e.message);
                    if d.spec.has_progress_deadline() {
                        let mut s = d.status.clone();
                        s.set_condition(Condition::new(
                            PROGRESSING,
                            "False",
                            RS_CREATE_ERROR,
                            msg.clone(),
                            Utc::now(),
                        ));
                        // The creation error is the one to report.
                        let _ = self.write_status(d, s).await;
                    }
                    self.events
                        .warning(&DEPLOYMENT, &d.obj, RS_CREATE_ERROR, msg);
                    return Err(e);
                }
            };
        if !already_existed && replicas > 0 {
            self.events.normal(
                &DEPLOYMENT,
                &d.obj,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {replicas}"),
            );
        }
        rss.retain(|r| meta::uid(r) != meta::uid(&created));
        rss.push(created.clone());
        self.set_deployment_revision(d, &new_revision.to_string())
            .await?;
        if !already_existed && d.spec.has_progress_deadline() {
            let mut s = d.status.clone();
            let msg = format!("Created new replica set {name:?}");
            s.set_condition(Condition::new(
                PROGRESSING,
                "True",
                NEW_RS_CREATED,
                msg,
                Utc::now(),
            ));
            self.write_status(d, s).await?;
        }
        Ok(created)
    }

    /// Copy the new ReplicaSet's revision onto the Deployment. ledge's status subresource keeps
    /// metadata from the stored object (upstream's Deployment status strategy lets annotations
    /// through), so this is a write of the object itself; it does not bump `generation`.
    async fn set_deployment_revision(&self, d: &mut Dep, rev: &str) -> Result<(), ApiError> {
        if rev.is_empty() || meta::annotation(&d.obj, REVISION) == Some(rev) {
            return Ok(());
        }
        let mut obj = d.obj.clone();
        meta::set(&mut obj, &["metadata", "annotations", REVISION], json!(rev));
        let ns = d.namespace().map(str::to_string);
        let stored = self.client.update(&DEPLOYMENT, ns.as_deref(), obj).await?;
        d.obj = stored;
        Ok(())
    }

    /// Write `status` now.
    pub(super) async fn write_status(&self, d: &mut Dep, status: Status) -> Result<(), ApiError> {
        let mut obj = d.obj.clone();
        meta::set(&mut obj, &["status"], status.to_json());
        let ns = d.namespace().map(str::to_string);
        let stored = self
            .client
            .update_status(&DEPLOYMENT, ns.as_deref(), obj)
            .await?;
        d.status = Status::of(&stored);
        d.obj = stored;
        Ok(())
    }

    /// Scale `rs` to `to` if that changes its size; true if it did.
    pub(super) async fn scale_and_record(
        &self,
        d: &Dep,
        rss: &mut [Value],
        rs: &Value,
        to: i32,
    ) -> Result<bool, ApiError> {
        let from = Rs::of(rs).replicas;
        if from == to {
            return Ok(false);
        }
        let op = if from < to { "up" } else { "down" };
        self.scale_replica_set(d, rss, rs, to, op).await
    }

    /// Set `rs`'s size and size annotations; an event if the size changed (true then).
    async fn scale_replica_set(
        &self,
        d: &Dep,
        rss: &mut [Value],
        rs: &Value,
        to: i32,
        op: &str,
    ) -> Result<bool, ApiError> {
        let from = Rs::of(rs).replicas;
        let (desired, max) = (d.spec.replicas, d.spec.replicas + d.spec.max_surge());
        let resize = from != to;
        if !resize && !revision::replicas_annotations_differ(rs, desired, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        meta::set(&mut copy, &["spec", "replicas"], json!(to));
        revision::set_replicas_annotations(&mut copy, desired, max);
        let updated = self
            .client
            .update(&REPLICA_SET, meta::namespace(rs), copy)
            .await?;
        if let Some(slot) = rss.iter_mut().find(|r| meta::uid(r) == meta::uid(&updated)) {
            *slot = updated.clone();
        }
        if resize {
            self.events.normal(
                &DEPLOYMENT,
                &d.obj,
                "ScalingReplicaSet",
                format!(
                    "Scaled {op} replica set {} from {from} to {to}",
                    meta::name(rs)
                ),
            );
        }
        Ok(resize)
    }

    /// Resize without rolling out (upstream `scale`): one active ReplicaSet (or the newest)
    /// takes the whole size; a saturated new one leaves old ones at zero; otherwise sizes change
    /// in proportion (RollingUpdate).
    async fn scale(
        &self,
        d: &Dep,
        rss: &mut [Value],
        new: Option<&Value>,
        old: &[Value],
    ) -> Result<(), ApiError> {
        let new_view = new.map(Rs::of);
        let old_views: Vec<Rs> = old.iter().map(Rs::of).collect();
        if let Some(target) = plan::active_or_latest(new_view.as_ref(), &old_views) {
            if target.replicas != d.spec.replicas
                && let Some(obj) = find(rss, &target.uid)
            {
                self.scale_and_record(d, rss, &obj, d.spec.replicas).await?;
            }
            return Ok(());
        }
        if plan::is_saturated(&d.spec, new_view.as_ref()) {
            for o in old_views.iter().filter(|r| r.is_active()) {
                if let Some(obj) = find(rss, &o.uid) {
                    self.scale_and_record(d, rss, &obj, 0).await?;
                }
            }
            return Ok(());
        }
        if d.spec.is_rolling() {
            let active: Vec<Rs> = old_views
                .into_iter()
                .chain(new_view)
                .filter(Rs::is_active)
                .collect();
            let current: i32 = active.iter().map(|r| r.replicas).sum();
            let sizes = plan::proportional_sizes(&d.spec, d.status.replicas, &active);
            let total: i32 = sizes.iter().map(|(_, n)| n).sum();
            let op = if total > current { "up" } else { "down" };
            for (name, to) in sizes {
                if let Some(obj) = rss.iter().find(|r| meta::name(r) == name).cloned() {
                    self.scale_replica_set(d, rss, &obj, to, op).await?;
                }
            }
        }
        Ok(())
    }

    /// A paused or resized Deployment: scale, trim history when paused, write status (upstream
    /// `sync`).
    pub(super) async fn sync(&self, d: &mut Dep, rss: &mut Vec<Value>) -> Result<Action, ApiError> {
        let (new, old) = self.new_and_old(d, rss, false).await?;
        self.scale(d, rss, new.as_ref(), &old).await?;
        if d.spec.paused {
            self.cleanup(d, rss, &old).await?;
        }
        let new_uid = new.as_ref().map(|r| meta::uid(r).to_string());
        self.write_counts(d, rss, new_uid.as_deref()).await?;
        Ok(Action::AwaitChange)
    }

    /// A deleting Deployment: status only (upstream `syncStatusOnly`).
    pub(super) async fn sync_status_only(
        &self,
        d: &mut Dep,
        rss: &mut Vec<Value>,
    ) -> Result<Action, ApiError> {
        let (new, _) = self.new_and_old(d, rss, false).await?;
        let new_uid = new.as_ref().map(|r| meta::uid(r).to_string());
        self.write_counts(d, rss, new_uid.as_deref()).await?;
        Ok(Action::AwaitChange)
    }

    /// Write the counts and the Available condition if they changed (upstream
    /// `syncDeploymentStatus`).
    async fn write_counts(
        &self,
        d: &mut Dep,
        rss: &[Value],
        new_uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let (new, all) = views(rss, new_uid);
        let refs: Vec<&Rs> = all.iter().collect();
        let s = status::calculate(&d.spec, &d.status, &refs, new.as_ref(), Utc::now());
        if s != d.status {
            self.write_status(d, s).await?;
        }
        Ok(())
    }

    /// Write the status after a rollout step, with progress against the deadline (upstream
    /// `syncRolloutStatus`); a stuck rollout is looked at again when its deadline passes.
    pub(super) async fn sync_rollout_status(
        &self,
        d: &mut Dep,
        rss: &[Value],
        new_uid: Option<&str>,
    ) -> Result<Action, ApiError> {
        let now = Utc::now();
        let (new, all) = views(rss, new_uid);
        let refs: Vec<&Rs> = all.iter().collect();
        let mut s = status::rollout(&d.spec, &d.status, &refs, new.as_ref(), now);
        match replica_failure(rss, new_uid) {
            Some(c) => s.set_condition(c),
            None => s.remove_condition(REPLICA_FAILURE),
        }
        if s == d.status {
            return Ok(match status::recheck_after(&d.spec, &d.status, &s, now) {
                Some(after) => Action::RequeueAfter(after),
                None => Action::AwaitChange,
            });
        }
        self.write_status(d, s).await?;
        Ok(Action::AwaitChange)
    }

    /// Delete old ReplicaSets beyond `revisionHistoryLimit` (upstream `cleanupDeployment`).
    pub(super) async fn cleanup(
        &self,
        d: &Dep,
        rss: &mut Vec<Value>,
        old: &[Value],
    ) -> Result<(), ApiError> {
        let views: Vec<Rs> = old
            .iter()
            .filter_map(|o| find(rss, meta::uid(o)))
            .map(|o| Rs::of(&o))
            .collect();
        for name in plan::history_to_remove(&d.spec, &views) {
            match self
                .client
                .delete(&REPLICA_SET, d.namespace(), &name, None)
                .await
            {
                Ok(()) => rss.retain(|r| meta::name(r) != name),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The ReplicaSet with `uid` in `rss`.
pub(super) fn find(rss: &[Value], uid: &str) -> Option<Value> {
    rss.iter().find(|r| meta::uid(r) == uid).cloned()
}

/// Views of the new ReplicaSet (by uid) and of all of them.
pub(super) fn views(rss: &[Value], new_uid: Option<&str>) -> (Option<Rs>, Vec<Rs>) {
    let new = new_uid.and_then(|u| find(rss, u)).map(|r| Rs::of(&r));
    (new, rss.iter().map(Rs::of).collect())
}

/// A ReplicaSet's `ReplicaFailure` as the Deployment's, the new ReplicaSet's first (upstream
/// `getReplicaFailures`).
fn replica_failure(rss: &[Value], new_uid: Option<&str>) -> Option<Condition> {
    let of = |rs: &Value| {
        meta::condition(rs, REPLICA_FAILURE).map(|c| {
            let t = meta::str_at(c, "/lastTransitionTime").to_string();
            Condition {
                type_: REPLICA_FAILURE.into(),
                status: meta::str_at(c, "/status").into(),
                reason: meta::str_at(c, "/reason").into(),
                message: meta::str_at(c, "/message").into(),
                last_update_time: t.clone(),
                last_transition_time: t,
            }
        })
    };
    new_uid
        .and_then(|u| rss.iter().find(|r| meta::uid(r) == u))
        .and_then(of)
        .or_else(|| rss.iter().find_map(of))
}
