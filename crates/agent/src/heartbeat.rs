//! Heartbeats, as kubelet sends them: the node's Lease in `kube-node-lease` renewed every
//! `lease_interval` (10 s by default; `renewTime` is a MicroTime, the Lease is owned by the Node
//! so it goes with it), and the Node's status reported only when something other than the
//! heartbeat times changed, or every `report_every` (kubelet's `nodeStatusReportFrequency`,
//! 5 minutes), or after the server was unreachable (it may have marked the node NotReady
//! meanwhile). The server being unreachable is said once per outage, and its end too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ledge_api::ApiError;
use ledge_controller::{Client, kinds};
use serde_json::{Value, json};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::client::{HttpClient, retryable};
use crate::node::{facts, status};

/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds` (kubelet's 40 s).
pub const LEASE_DURATION_SECONDS: u64 = 40;

/// A Kubernetes MicroTime for now (`2024-01-01T00:00:00.000000Z`).
pub fn micro_time() -> String {
    ledge_api::time::format_micro_time(chrono::Utc::now())
}

/// The Lease of a node, owned by it.
pub fn lease_object(node: &str, node_uid: &str, renew_time: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{
                "apiVersion": "v1",
                "kind": "Node",
                "name": node,
                "uid": node_uid,
            }],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": renew_time,
        },
    })
}

/// Everything the heartbeat loop needs.
pub struct Heartbeat {
    /// The API, authenticated as the node.
    pub client: HttpClient,
    /// Node name.
    pub node: String,
    /// The registered Node's uid (the Lease's owner).
    pub node_uid: String,
    /// The data dir (its filesystem is the node's ephemeral storage).
    pub data_dir: PathBuf,
    /// `--node-ip`.
    pub node_ip: Option<IpAddr>,
    /// How often the Lease is renewed (and the status looked at).
    pub lease_interval: Duration,
    /// The longest time between two status reports.
    pub report_every: Duration,
    /// The server's view of this Node (a watch on it alone), so a Ready condition the server
    /// changed — `Unknown` after a partition — is corrected at the next beat, not minutes later.
    pub server_view: Option<std::sync::Arc<ledge_controller::Informer>>,
    /// Told whether each renewal reached the server.
    pub link: std::sync::Arc<crate::node_store::Link>,
    /// Set (to the tunnel session) while a server renews the Lease itself (the tunnel to the
    /// current server is alive): no renewals are sent then, only status changes. When it is
    /// unset — that server died, or the agent moved to another — the Lease is renewed at once.
    pub renewed_by_server: tokio::sync::watch::Receiver<Option<u64>>,
}

impl Heartbeat {
    /// Renew (or create) the Lease; `lease` is the last one the server returned.
    async fn renew(&self, lease: Option<Value>) -> Result<Value, ApiError> {
        let c = &self.client;
        let now = micro_time();
        let create = || {
            c.create(
                &kinds::LEASE,
                Some(LEASE_NAMESPACE),
                lease_object(&self.node, &self.node_uid, &now),
            )
        };
        let current = match lease {
            Some(l) => l,
            None => match c
                .get(&kinds::LEASE, Some(LEASE_NAMESPACE), &self.node)
                .await?
            {
                Some(l) => l,
                None => return create().await,
            },
        };
        let renewed = |mut l: Value| {
            l["spec"]["holderIdentity"] = json!(self.node);
            l["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION_SECONDS);
            l["spec"]["renewTime"] = json!(now);
            l["metadata"]["ownerReferences"] =
                lease_object(&self.node, &self.node_uid, &now)["metadata"]["ownerReferences"]
                    .clone();
            l
        };
        match c
            .update(&kinds::LEASE, Some(LEASE_NAMESPACE), renewed(current))
            .await
        {
            Err(e) if e.code == 409 => {
                // Written by someone else since: renew the fresh copy once.
                match c
                    .get(&kinds::LEASE, Some(LEASE_NAMESPACE), &self.node)
                    .await?
                {
                    Some(fresh) => {
                        c.update(&kinds::LEASE, Some(LEASE_NAMESPACE), renewed(fresh))
                            .await
                    }
                    None => create().await,
                }
            }
            Err(e) if e.code == 404 => create().await,
            other => other,
        }
    }

    async fn report(&self, status: &Value) -> Result<(), ApiError> {
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node},
            "status": status,
        });
        self.client
            .update_status(&kinds::NODE, None, node)
            .await
            .map(|_| ())
    }

    /// Whether the server holds another Ready status than the one this node reports.
    fn server_disagrees(&self, status: &Value) -> bool {
        let Some(view) = &self.server_view else {
            return false;
        };
        let ready = |v: &Value| {
            v.get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                })
                .and_then(|c| c.get("status").and_then(Value::as_str))
                .map(str::to_string)
        };
        let key = ledge_controller::ObjectKey {
            namespace: None,
            name: self.node.clone(),
        };
        match view.store().get(&key) {
            Some(node) => node.get("status").and_then(ready) != ready(status),
            None => false,
        }
    }

    /// The status now; `None` if the facts could not be gathered.
    async fn current_status(&self, previous: &Value) -> Option<Value> {
        let dir = self.data_dir.clone();
        let facts = tokio::task::spawn_blocking(move || facts::gather(&dir))
            .await
            .ok()?;
        let ip = facts::internal_ip(self.node_ip, self.client.local_addr());
        Some(status::build(&facts, ip, &chrono_now(), Some(previous)))
    }

    /// Renew the Lease once; false when the server could not be reached (the outage is
    /// recorded, said once, and the status report skipped).
    async fn renew_once(
        &self,
        lease: &mut Option<Value>,
        outage: &mut Option<Instant>,
        force_report: &mut bool,
    ) -> bool {
        let renewed = self.renew(lease.take()).await;
        self.link.observe(&renewed);
        match renewed {
            Ok(l) => {
                *lease = Some(l);
                if let Some(since) = outage.take() {
                    tracing::info!(
                        node = %self.node,
                        after_s = since.elapsed().as_secs(),
                        "the server is reachable again; lease renewed"
                    );
                    *force_report = true;
                }
            }
            Err(e) if retryable(&e) => {
                if outage.is_none() {
                    *outage = Some(Instant::now());
                    tracing::warn!(
                        node = %self.node,
                        "cannot renew the node lease: {}; retrying every {:.0}s (the node turns NotReady on the server if this lasts)",
                        e.message,
                        self.lease_interval.as_secs_f64()
                    );
                } else {
                    tracing::debug!(error = %e, "lease renewal failed again");
                }
                return false;
            }
            Err(e) => {
                tracing::warn!(node = %self.node, error = %e, "cannot renew the node lease")
            }
        }
        true
    }

    /// Renew and report until `cancel`. `reported` is the status sent at registration.
    ///
    /// # Cancel safety
    /// Returns when `cancel` fires; a renewal in flight is dropped.
    pub async fn run(self, reported: Value, cancel: CancellationToken) {
        let mut last_status = reported;
        let mut last_significant = status::significant(&last_status);
        let mut last_report = Instant::now();
        let mut lease: Option<Value> = None;
        let mut outage: Option<Instant> = None;
        // The first tick reports: the Node may have existed with an older status.
        let mut force_report = true;
        let mut node_missing = false;
        let mut created = false;
        let mut ticker = tokio::time::interval(self.lease_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut renewals = self.renewed_by_server.clone();
        renewals.mark_unchanged();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
                // The server that renewed the Lease stopped (its tunnel ended, or the agent
                // moved to another server): its last renewal may be almost an interval old and
                // the next may never come, so renew now rather than at the next tick — with
                // several servers this is what keeps the node Ready when one of them dies.
                Ok(()) = renewals.changed() => {
                    if renewals.borrow_and_update().is_some() {
                        continue;
                    }
                }
            }
            // While the tunnel is alive the server renews the Lease: only the status is looked
            // at. Otherwise (and until a failed renewal succeeds again) this side renews.
            if self.renewed_by_server.borrow().is_some() && outage.is_none() && created {
                lease = None;
            } else if self
                .renew_once(&mut lease, &mut outage, &mut force_report)
                .await
            {
                // The first renewal creates the Lease, which the server can then renew.
                created = true;
            } else {
                continue;
            }
            let Some(status) = self.current_status(&last_status).await else {
                continue;
            };
            for kind in status::new_pressure(&last_status, &status) {
                tracing::warn!(
                    node = %self.node,
                    condition = kind,
                    data_dir = %self.data_dir.display(),
                    "the node is short of resources (kubelet's eviction thresholds: 100Mi memory, 10% of the data dir's disk, 10% of pid_max); the server taints it and new pods go elsewhere until it recovers"
                );
            }
            let significant = status::significant(&status);
            let due = force_report
                || self.server_disagrees(&status)
                || significant != last_significant
                || last_report.elapsed() >= self.report_every;
            if !due {
                continue;
            }
            match self.report(&status).await {
                Ok(()) => {
                    if node_missing {
                        tracing::info!(node = %self.node, "the node exists again; status reported");
                        node_missing = false;
                    }
                    tracing::debug!(node = %self.node, "node status reported");
                    last_status = status;
                    last_significant = significant;
                    last_report = Instant::now();
                    force_report = false;
                }
                Err(e) if e.code == 404 => {
                    // As kubelet: a deleted Node is not re-created until the agent restarts.
                    if !node_missing {
                        tracing::warn!(
                            node = %self.node,
                            "the Node was deleted on the server; restart the agent to register it again"
                        );
                        node_missing = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "cannot report node status")
                }
            }
        }
    }
}

pub use ledge_api::time::now as chrono_now;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_owned_by_their_node_and_renewed_in_micro_time() {
        let l = lease_object("edge-1", "uid-1", "2024-01-01T00:00:00.000000Z");
        assert_eq!(l["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(l["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(l["spec"]["holderIdentity"], "edge-1");
        assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
        let t = micro_time();
        assert_eq!(t.len(), "2024-01-01T00:00:00.000000Z".len(), "{t}");
        assert!(t.ends_with('Z'));
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok());
    }
}
