//! One node reconciled (upstream `monitorNodeHealth`, the tainting passes and the taint
//! manager's eviction): probe the Lease, mark a stale node Unknown, set the taints its
//! conditions call for, mark its pods not Ready, evict the pods whose tolerations ran out.

use std::time::Duration;

use ledge_api::ApiError;
use ledge_controller::kinds::{NODE, POD};
use ledge_controller::{Action, ObjectKey};
use serde_json::Value;

use super::health::{self, Probe};
use super::{LEASE_NAMESPACE, NodeLifecycleController};
use crate::{meta, taints};

/// Slack added to timed requeues so the deadline has surely passed.
const SLACK: Duration = Duration::from_millis(200);

impl NodeLifecycleController {
    /// Reconcile one node.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let Some(node) = self.nodes.store().get(&key) else {
            self.probes_lock().remove(&key.name);
            self.evictions.forget(&key);
            return Ok(Action::AwaitChange);
        };
        let lease_key = ObjectKey::new(Some(LEASE_NAMESPACE), &key.name);
        let Some(lease) = self.leases.store().get(&lease_key) else {
            // No Lease, no heartbeat to miss: such a node is managed by hand (module docs).
            self.probes_lock().remove(&key.name);
            return Ok(Action::AwaitChange);
        };
        let now = self.clock.now();
        let now_text = meta::format_time(now);
        let beat = health::heartbeat(&lease, &node);
        let probe = {
            let mut probes = self.probes_lock();
            let p = health::observe(probes.get(&key.name), &beat, now);
            probes.insert(key.name.clone(), p.clone());
            p
        };
        let stale = health::is_stale(&probe, now, self.grace);
        let mut node = (*node).clone();
        if stale && let Some(conditions) = health::unknown_conditions(&node, &now_text) {
            meta::set(
                &mut node,
                &["status", "conditions"],
                Value::Array(conditions),
            );
            node = self.client.update_status(&NODE, None, node).await?;
            self.events.normal(
                &NODE,
                &node,
                "NodeNotReady",
                format!("Node {} status is now: NodeNotReady", key.name),
            );
        }
        let wanted = health::wanted_taints(&node, &now_text);
        if wanted != taints::of_node(&node) {
            if wanted.is_empty() {
                if let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("taints");
                }
            } else {
                meta::set(&mut node, &["spec", "taints"], Value::Array(wanted));
            }
            node = self.client.update(&NODE, None, node).await?;
        }
        let next_eviction = if self.evictions.satisfied(&key, &self.pods) {
            self.manage_pods(&key, &node, now).await?
        } else {
            // Earlier evictions are not in the pod cache yet; look again shortly.
            Some(SLACK)
        };
        let next_stale = (!stale).then(|| next_probe(&probe, self.grace, now));
        Ok(match next_eviction.into_iter().chain(next_stale).min() {
            Some(d) => Action::RequeueAfter(d + SLACK),
            None => Action::AwaitChange,
        })
    }

    /// Evict the node's pods whose tolerations of its `NoExecute` taints ran out; how long until
    /// the next eviction is due. Their status is left alone (upstream's `MarkPodsNotReady`
    /// writes every pod of a lost node, and writes them all again when it returns — bytes on
    /// the node's uplink for nothing): the endpoints controller leaves pods of a node that is not
    /// Ready out of Services instead.
    async fn manage_pods(
        &self,
        key: &ObjectKey,
        node: &Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Duration>, ApiError> {
        let name = meta::name(node);
        let node_taints = taints::of_node(node);
        let has_no_execute = node_taints
            .iter()
            .any(|t| taints::effect(t) == taints::NO_EXECUTE);
        if !has_no_execute {
            return Ok(None);
        }
        let pods: Vec<_> = self
            .pods
            .store()
            .list(None)
            .into_iter()
            .filter(|p| meta::str_at(p, "/spec/nodeName") == name && !meta::is_deleting(p))
            .collect();
        let mut next: Option<Duration> = None;
        let mut first_error = None;
        for p in pods {
            let ns = meta::namespace(&p);
            if let Some(at) = health::eviction_time(&p, &node_taints, now) {
                if at <= now {
                    match self.client.delete(&POD, ns, meta::name(&p), None).await {
                        Ok(()) => {
                            self.evictions.deleted(key, &p);
                            self.events.normal(
                                &POD,
                                &p,
                                "TaintManagerEviction",
                                format!(
                                    "Marking for deletion Pod {}/{}",
                                    ns.unwrap_or(""),
                                    meta::name(&p)
                                ),
                            );
                        }
                        Err(e) if e.code == 404 => {}
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                    continue;
                }
                let wait = (at - now).to_std().unwrap_or_default();
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(next),
        }
    }

    fn probes_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Probe>> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long until a node probed as `probe` turns stale.
fn next_probe(
    probe: &Probe,
    grace: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    (probe.observed_at + grace - now)
        .to_std()
        .unwrap_or_default()
}
