//! One DaemonSet reconcile (upstream `syncDaemonSet`): claim its revisions and find or create
//! the current one, claim its pods, create and delete what [`plan::manage`] says — or, when
//! nothing is missing, take one [`plan::rolling`] step — then prune history and write status.

use std::sync::Arc;

use futures_util::future::join_all;
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{CONTROLLER_REVISION, DAEMON_SET, POD};
use ledge_controller::{Action, ObjectKey, is_namespace_terminating, owner};
use serde_json::{Value, json};

use super::DaemonSetController;
use super::history::{self, HASH_LABEL, POD_TEMPLATE_GENERATION, TEMPLATE_GENERATION};
use super::placement::{pod_spec_for, should_run, target_node};
use super::plan::{self, Plan, PodsByNode};
use super::status;
use crate::{meta, pod};

/// Most pods created in one reconcile (upstream `BurstReplicas`).
const BURST: usize = 250;

impl DaemonSetController {
    /// Reconcile one DaemonSet.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let Some(cached) = self.daemon_sets.store().get(&key) else {
            self.expectations.forget(&key);
            return Ok(Action::AwaitChange);
        };
        let mut ds = (*cached).clone();
        let selector = meta::selector(&ds);
        if selector.is_empty() {
            self.events.warning(
                &DAEMON_SET,
                &ds,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Action::AwaitChange);
        }
        let ns = key.namespace.as_deref();
        let revisions = owner::claim(
            &*self.client,
            &DAEMON_SET,
            &CONTROLLER_REVISION,
            &ds,
            &selector,
            self.revisions.store().list(ns),
        )
        .await?;
        let (hash, old) = self.construct_history(&mut ds, &revisions).await?;
        let pods = owner::claim(
            &*self.client,
            &DAEMON_SET,
            &POD,
            &ds,
            &selector,
            self.pods.store().list(ns),
        )
        .await?;
        let mut nodes = self.nodes.store().list(None);
        nodes.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        let by_node = group_by_node(&pods);
        let now = self.clock.now();
        let mut failure = None;
        if !meta::is_deleting(&ds) && self.expectations.satisfied(&key, &self.pods) {
            let mut todo = plan::manage(&ds, &nodes, &by_node, &hash);
            if todo.is_empty() && plan::is_rolling(&ds) {
                let rolling_nodes: PodsByNode = nodes
                    .iter()
                    .filter_map(|n| {
                        let (run, keep) = should_run(&ds, n);
                        let pods = by_node.get(meta::name(n)).cloned().unwrap_or_default();
                        (run || (keep && !pods.is_empty()))
                            .then(|| (meta::name(n).to_string(), pods))
                    })
                    .collect();
                todo = plan::rolling(&ds, &rolling_nodes, &hash, now);
            }
            failure = self.execute(&key, &ds, &hash, todo).await.err();
        }
        let live: Vec<&str> = pods
            .iter()
            .map(|p| meta::str_at(p, &format!("/metadata/labels/{HASH_LABEL}")))
            .collect();
        let limit = usize::try_from(
            ds.at("/spec/revisionHistoryLimit")
                .and_then(Value::as_i64)
                .unwrap_or(10),
        )
        .unwrap_or(0);
        for r in history::to_delete(&old, &live, limit) {
            match self
                .client
                .delete(&CONTROLLER_REVISION, ns, meta::name(r), None)
                .await
            {
                Ok(()) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let new_status = status::compute(&ds, &nodes, &by_node, &hash, now);
        if ds.get("status") != Some(&new_status) {
            meta::set(&mut ds, &["status"], new_status);
            self.client
                .update_status(&DAEMON_SET, ns, ds.clone())
                .await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // Ready pods turning available after minReadySeconds change the counts: look again.
        let min_ready = meta::int_at(&ds, "/spec/minReadySeconds");
        let next = pods
            .iter()
            .filter_map(|p| pod::available_at(p, min_ready, now))
            .min();
        Ok(match next {
            Some(t) => Action::RequeueAfter(
                (t - now).to_std().unwrap_or_default() + std::time::Duration::from_secs(1),
            ),
            None => Action::AwaitChange,
        })
    }

    /// Find (or create) the revision of the current template, renumbering a reused one to be
    /// the newest (upstream `constructHistory`); its hash and the other revisions.
    async fn construct_history(
        &self,
        ds: &mut Value,
        revisions: &[Arc<Value>],
    ) -> Result<(String, Vec<Value>), ApiError> {
        let ns = meta::namespace(ds).map(str::to_string);
        let ns = ns.as_deref();
        let max = revisions
            .iter()
            .map(|r| history::number(r))
            .max()
            .unwrap_or(0);
        let current = revisions
            .iter()
            .filter(|r| history::matches(r, ds))
            .max_by_key(|r| history::number(r))
            .cloned();
        let old: Vec<Value> = revisions
            .iter()
            .filter(|r| {
                current
                    .as_ref()
                    .is_none_or(|c| meta::uid(c) != meta::uid(r))
            })
            .map(|r| (**r).clone())
            .collect();
        if let Some(cur) = current {
            let label = format!("/metadata/labels/{HASH_LABEL}");
            let hash = match meta::str_at(&cur, &label) {
                "" => history::current_hash(ds),
                h => h.to_string(),
            };
            if history::number(&cur) < max {
                let mut renumbered = (*cur).clone();
                renumbered["revision"] = json!(max + 1);
                self.client
                    .update(&CONTROLLER_REVISION, ns, renumbered)
                    .await?;
            }
            return Ok((hash, old));
        }
        let hash = history::current_hash(ds);
        let revision =
            history::new_revision(ds, &hash, max + 1, owner::controller_ref(&DAEMON_SET, ds));
        match self
            .client
            .create(&CONTROLLER_REVISION, ns, revision.clone())
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 409 => {
                let existing = self
                    .client
                    .get(&CONTROLLER_REVISION, ns, meta::name(&revision))
                    .await?;
                let ours = existing.as_ref().is_some_and(|r| {
                    history::matches(r, ds) && owner::is_controlled_by(r, meta::uid(ds))
                });
                if !ours {
                    // A hash collision: perturb the hash and try again (upstream bumps
                    // `status.collisionCount`).
                    let count = ds
                        .at("/status/collisionCount")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    meta::set(ds, &["status", "collisionCount"], json!(count + 1));
                    self.client
                        .update_status(&DAEMON_SET, ns, ds.clone())
                        .await?;
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!("controller revision {} exists", meta::name(&revision)),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        // The generation the template last changed at, as upstream's annotation (pods carry it
        // as `pod-template-generation`).
        let generation = meta::generation(ds).to_string();
        if meta::annotation(ds, TEMPLATE_GENERATION) != Some(generation.as_str()) {
            meta::set(
                ds,
                &["metadata", "annotations", TEMPLATE_GENERATION],
                json!(generation),
            );
            *ds = self.client.update(&DAEMON_SET, ns, ds.clone()).await?;
        }
        Ok((hash, old))
    }

    /// Create and delete what `todo` says.
    async fn execute(
        &self,
        key: &ObjectKey,
        ds: &Value,
        hash: &str,
        todo: Plan,
    ) -> Result<(), ApiError> {
        let ns = meta::namespace(ds).unwrap_or("");
        let template = ds.at("/spec/template").cloned().unwrap_or_default();
        let reference = owner::controller_ref(&DAEMON_SET, ds);
        let generation = meta::annotation(ds, TEMPLATE_GENERATION).map(str::to_string);
        let creates = todo.create.iter().take(BURST).map(|node| {
            let mut p = pod::from_template(&template, ns, meta::name(ds), reference.clone());
            p["spec"] = pod_spec_for(ds, node);
            meta::set(&mut p, &["metadata", "labels", HASH_LABEL], json!(hash));
            if let Some(g) = &generation {
                meta::set(
                    &mut p,
                    &["metadata", "labels", POD_TEMPLATE_GENERATION],
                    json!(g),
                );
            }
            self.client.create(&POD, Some(ns), p)
        });
        let mut first_error = None;
        for result in join_all(creates).await {
            match result {
                Ok(created) => {
                    self.expectations.created(key, &created);
                    self.events.normal(
                        &DAEMON_SET,
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {}", meta::name(&created)),
                    );
                }
                Err(e) if is_namespace_terminating(&e) => return Ok(()),
                Err(e) => {
                    self.events.warning(
                        &DAEMON_SET,
                        ds,
                        "FailedCreate",
                        format!("Error creating: {}", e.message),
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        let deletes = todo.delete.iter().map(|p| async move {
            let r = self
                .client
                .delete(&POD, meta::namespace(p), meta::name(p), None)
                .await;
            (p, r)
        });
        for (p, result) in join_all(deletes).await {
            match result {
                Ok(()) => {
                    self.expectations.deleted(key, p);
                    self.events.normal(
                        &DAEMON_SET,
                        ds,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", meta::name(p)),
                    );
                }
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Claimed pods by the node they are for, oldest first (pods naming no node are ignored, as
/// upstream).
fn group_by_node(pods: &[Arc<Value>]) -> PodsByNode {
    let mut by_node = PodsByNode::new();
    for p in pods {
        if let Some(node) = target_node(p) {
            by_node.entry(node.to_string()).or_default().push(p.clone());
        }
    }
    for list in by_node.values_mut() {
        list.sort_by(|a, b| meta::by_creation(a, b));
    }
    by_node
}
