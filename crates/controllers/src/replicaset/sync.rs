//! One ReplicaSet reconcile (upstream `syncReplicaSet` and `manageReplicas`): claim pods, create
//! or delete the difference to `spec.replicas` unless earlier writes are still on their way
//! to the cache, then write the status the pods give.

use std::sync::Arc;

use chrono::Utc;
use futures_util::future::join_all;
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{POD, REPLICA_SET};
use ledge_controller::{Action, ObjectKey, is_namespace_terminating, owner};
use serde_json::Value;

use super::ReplicaSetController;
use super::rank::pods_to_delete;
use super::status::{self, ReplicaFailure};
use crate::{meta, pod};

/// Most pods created or deleted in one reconcile (upstream `BurstReplicas`).
const BURST: usize = 500;

impl ReplicaSetController {
    /// Reconcile one ReplicaSet.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let Some(rs) = self.replica_sets.store().get(&key) else {
            self.expectations.forget(&key);
            return Ok(Action::AwaitChange);
        };
        let needs_sync = self.expectations.satisfied(&key, &self.pods);
        let Some(selector) = rs
            .at("/spec/selector")
            .and_then(|s| ledge_api::selector::LabelSelector::from_json(s).ok())
        else {
            tracing::warn!(replicaset = %key, "invalid selector; not managing pods");
            return Ok(Action::AwaitChange);
        };
        let ns = key.namespace.as_deref();
        // All active pods of the namespace: matching orphans may be adopted, and pods this
        // ReplicaSet controls that stopped matching must be released.
        let candidates: Vec<Arc<Value>> = self
            .pods
            .store()
            .list(ns)
            .into_iter()
            .filter(|p| pod::is_active(p))
            .collect();
        let pods = owner::claim(
            &*self.client,
            &REPLICA_SET,
            &POD,
            &rs,
            &selector,
            candidates,
        )
        .await?;
        let mut failure = None;
        if needs_sync && !meta::is_deleting(&rs) {
            failure = self.manage_replicas(&key, &rs, &pods).await;
        }
        let now = Utc::now();
        let new_status = status::compute(&rs, &pods, failure.as_ref().map(|(f, _)| f), now);
        if rs.get("status") != Some(&new_status) {
            let mut updated = (*rs).clone();
            meta::set(&mut updated, &["status"], new_status);
            self.client.update_status(&REPLICA_SET, ns, updated).await?;
        }
        if let Some((_, err)) = failure {
            return Err(err);
        }
        // Pods that are ready but not yet available for minReadySeconds: look again then.
        Ok(match status::next_availability(&rs, &pods, now) {
            Some(t) => Action::RequeueAfter(
                (t - now).to_std().unwrap_or_default() + std::time::Duration::from_secs(1),
            ),
            None => Action::AwaitChange,
        })
    }

    /// Create or delete pods to reach `spec.replicas`; the failure (for the status condition
    /// and the retry) if a write failed.
    async fn manage_replicas(
        &self,
        key: &ObjectKey,
        rs: &Value,
        pods: &[Arc<Value>],
    ) -> Option<(ReplicaFailure, ApiError)> {
        let want = usize::try_from(meta::spec_replicas(rs)).unwrap_or(0);
        if pods.len() < want {
            let n = (want - pods.len()).min(BURST);
            self.create_pods(key, rs, n).await.err().map(|e| {
                (
                    ReplicaFailure {
                        reason: "FailedCreate",
                        message: e.message.clone(),
                    },
                    e,
                )
            })
        } else if pods.len() > want {
            let n = (pods.len() - want).min(BURST);
            let victims = pods_to_delete(pods, &self.related_pods(rs), n);
            self.delete_pods(key, rs, victims).await.err().map(|e| {
                (
                    ReplicaFailure {
                        reason: "FailedDelete",
                        message: e.message.clone(),
                    },
                    e,
                )
            })
        } else {
            None
        }
    }

    /// Create `n` pods in batches of 1, 2, 4, ... so that a template the API refuses costs
    /// one failed call, not `n` (upstream `slowStartBatch`).
    async fn create_pods(&self, key: &ObjectKey, rs: &Value, n: usize) -> Result<(), ApiError> {
        let ns = meta::namespace(rs).unwrap_or("");
        let template = rs.at("/spec/template").cloned().unwrap_or_default();
        let reference = owner::controller_ref(&REPLICA_SET, rs);
        let mut remaining = n;
        let mut batch = 1;
        while remaining > 0 {
            let size = batch.min(remaining);
            let writes = (0..size).map(|_| {
                let p = pod::from_template(&template, ns, meta::name(rs), reference.clone());
                self.client.create(&POD, Some(ns), p)
            });
            let mut first_error = None;
            for result in join_all(writes).await {
                match result {
                    Ok(created) => {
                        self.expectations.created(key, &created);
                        self.events.normal(
                            &REPLICA_SET,
                            rs,
                            "SuccessfulCreate",
                            format!("Created pod: {}", meta::name(&created)),
                        );
                    }
                    // Nothing can be created in a terminating namespace; nothing to retry.
                    Err(e) if is_namespace_terminating(&e) => return Ok(()),
                    Err(e) => {
                        self.events.warning(
                            &REPLICA_SET,
                            rs,
                            "FailedCreate",
                            format!("Error creating: {}", e.message),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            remaining -= size;
            batch *= 2;
        }
        Ok(())
    }

    /// Delete `victims` at once.
    async fn delete_pods(
        &self,
        key: &ObjectKey,
        rs: &Value,
        victims: Vec<Arc<Value>>,
    ) -> Result<(), ApiError> {
        let writes = victims.iter().map(|p| async move {
            let r = self
                .client
                .delete(&POD, meta::namespace(p), meta::name(p), None)
                .await;
            (p, r)
        });
        let mut first_error = None;
        for (p, result) in join_all(writes).await {
            match result {
                Ok(()) => {
                    self.expectations.deleted(key, p);
                    self.events.normal(
                        &REPLICA_SET,
                        rs,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", meta::name(p)),
                    );
                }
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    self.events.warning(
                        &REPLICA_SET,
                        rs,
                        "FailedDelete",
                        format!("Error deleting: {}", e.message),
                    );
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
