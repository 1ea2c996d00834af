//! Which servers serve the cluster, published where clients look for them: the `default/
//! kubernetes` Endpoints, as upstream's lease endpoint reconciler keeps it
//! (`--endpoint-reconciler-type=lease`). Agents read it to learn every server's address and fail
//! over between them (as K3s agents do); in-cluster clients reach the API through it.
//!
//! Each server renews its own Lease `kube-system/ledge-apiserver-<identity>` every
//! [`RENEW`], with its advertised address in an annotation; then it writes the Endpoints from
//! every Lease renewed within [`EXPIRY`] (only when that set changed, so an idle cluster writes
//! nothing but the Leases). A server that stops cleanly deletes its Lease and drops out at once;
//! one that crashed drops out when its Lease expires.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledge_api::ApiError;
use ledge_controller::Client;
use ledge_controller::kinds::{ENDPOINTS, LEASE};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How often a server renews its Lease and reconciles the Endpoints.
pub(crate) const RENEW: Duration = Duration::from_secs(10);
/// How long after its last renewal a server is still listed.
pub(crate) const EXPIRY: Duration = Duration::from_secs(30);

const NAMESPACE: &str = "kube-system";
const LEASE_PREFIX: &str = "ledge-apiserver-";
/// The label every server Lease carries (for listing them).
const ROLE_LABEL: &str = "ledge.dev/role";
const ROLE: &str = "apiserver";
/// The annotation holding a server's `ip:port`.
const ADDRESS_ANNOTATION: &str = "ledge.dev/advertise-address";

/// This server's entry in the list.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// The server's identity (unique per data dir).
    pub identity: String,
    /// Where clients reach its API.
    pub address: SocketAddr,
}

/// Keep `me` listed until `cancel`, then remove it (bounded by the caller).
///
/// # Cancel safety
/// Returns after the removal attempt; call it as a task and await it at shutdown.
pub(crate) async fn run(client: Arc<dyn Client>, me: Peer, cancel: CancellationToken) {
    let lease_name = lease_name(&me.identity);
    let mut warned = false;
    loop {
        match register(client.as_ref(), &lease_name, &me).await {
            Ok(()) => {
                if let Err(e) = reconcile(client.as_ref(), Utc::now()).await {
                    tracing::debug!(error = %e, "cannot update the kubernetes endpoints");
                }
                warned = false;
            }
            Err(e) if !warned => {
                tracing::warn!(error = %e, lease = %lease_name, "cannot renew this server's lease");
                warned = true;
            }
            Err(e) => tracing::debug!(error = %e, "cannot renew this server's lease"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(RENEW) => {}
        }
    }
    // Leave the list at once rather than after the expiry: clients stop picking this server.
    let _ = client
        .delete(&LEASE, Some(NAMESPACE), &lease_name, None)
        .await;
    let _ = reconcile(client.as_ref(), Utc::now()).await;
}

fn lease_name(identity: &str) -> String {
    // Lease names are DNS subdomains: lower case, no underscores.
    let cleaned: String = identity
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{LEASE_PREFIX}{cleaned}")
}

/// Create or renew this server's Lease.
async fn register(client: &dyn Client, name: &str, me: &Peer) -> Result<(), ApiError> {
    let now = ledge_api::time::format_micro_time(Utc::now());
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {ROLE_LABEL: ROLE},
            "annotations": {ADDRESS_ANNOTATION: me.address.to_string()},
        },
        "spec": {
            "holderIdentity": me.identity,
            "leaseDurationSeconds": EXPIRY.as_secs(),
            "renewTime": now,
        },
    });
    match client.get(&LEASE, Some(NAMESPACE), name).await? {
        None => client
            .create(&LEASE, Some(NAMESPACE), lease)
            .await
            .map(drop),
        Some(current) => {
            let mut next = lease;
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            client.update(&LEASE, Some(NAMESPACE), next).await.map(drop)
        }
    }
}

/// Write the `kubernetes` Endpoints from the live server Leases, if they changed.
async fn reconcile(client: &dyn Client, now: DateTime<Utc>) -> Result<(), ApiError> {
    let selector = format!("{ROLE_LABEL}={ROLE}");
    let (leases, _) = client
        .list(&LEASE, Some(NAMESPACE), Some(&selector))
        .await?;
    let live = live_addresses(&leases, now);
    let subsets = subsets(&live);
    let current = client
        .get(&ENDPOINTS, Some("default"), "kubernetes")
        .await?;
    match current {
        Some(mut endpoints) => {
            if endpoints.get("subsets").unwrap_or(&Value::Null) == &subsets {
                return Ok(());
            }
            endpoints["subsets"] = subsets;
            client
                .update(&ENDPOINTS, Some("default"), endpoints)
                .await
                .map(drop)
        }
        None => client
            .create(
                &ENDPOINTS,
                Some("default"),
                json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": "kubernetes", "namespace": "default",
                                 "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                    "subsets": subsets,
                }),
            )
            .await
            .map(drop),
    }
}

/// The addresses of the Leases renewed within their duration as of `now`.
fn live_addresses(leases: &[Value], now: DateTime<Utc>) -> BTreeSet<SocketAddr> {
    leases
        .iter()
        .filter(|lease| {
            let spec = &lease["spec"];
            let renewed = spec["renewTime"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let held = spec["leaseDurationSeconds"].as_i64().unwrap_or(0);
            renewed.is_some_and(|at| at.with_timezone(&Utc) + chrono::Duration::seconds(held) > now)
        })
        .filter_map(|lease| {
            lease["metadata"]["annotations"][ADDRESS_ANNOTATION]
                .as_str()?
                .parse()
                .ok()
        })
        .collect()
}

/// Endpoints subsets: one per port, addresses sorted (a stable form, compared before writing).
fn subsets(live: &BTreeSet<SocketAddr>) -> Value {
    let mut by_port: BTreeMap<u16, Vec<IpAddr>> = BTreeMap::new();
    for addr in live {
        by_port.entry(addr.port()).or_default().push(addr.ip());
    }
    Value::Array(
        by_port
            .into_iter()
            .map(|(port, ips)| {
                json!({
                    "addresses": ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                })
            })
            .collect(),
    )
}

/// The address to advertise when none is given: the bind address if specific, else the
/// address of the interface holding the default route (as an agent finds its InternalIP), else
/// loopback.
pub(crate) fn default_advertise(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    ledge_agent::node::facts::internal_ip(None, None).unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(addr: &str, renewed: &str, secs: i64) -> Value {
        json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: addr}},
               "spec": {"renewTime": renewed, "leaseDurationSeconds": secs}})
    }

    #[test]
    fn only_unexpired_servers_are_listed_grouped_by_port() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let leases = [
            lease("10.0.0.2:6443", "2026-01-01T00:00:50.000000Z", 30),
            lease("10.0.0.1:6443", "2026-01-01T00:00:45.000000Z", 30),
            lease("10.0.0.3:6443", "2026-01-01T00:00:20.000000Z", 30),
            lease("127.0.0.1:7443", "2026-01-01T00:00:59.000000Z", 30),
            lease("not an address", "2026-01-01T00:00:59.000000Z", 30),
        ];
        let live = live_addresses(&leases, now);
        assert_eq!(
            subsets(&live),
            json!([
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "127.0.0.1"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
    }

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(lease_name("Edge_1a2b-3c"), "ledge-apiserver-edge-1a2b-3c");
    }
}
