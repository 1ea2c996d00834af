//! Shared server state handed to every request and in-process controller.

use std::sync::Arc;

use ledge_store::Store;
use tokio_util::sync::CancellationToken;

use crate::auth::pki::ClusterCa;
use crate::cache::Cache;
use crate::registry::Registry;

/// Everything a request handler needs.
pub struct ApiState {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The watch cache in front of it.
    pub cache: Arc<Cache>,
    /// Served resources.
    pub registry: Arc<Registry>,
    /// The cluster CA certificate (PEM), for `kube-root-ca.crt`.
    pub ca_pem: String,
    /// The cluster CA, for the CSR signer (`crate::system::csr`).
    pub ca: Arc<ClusterCa>,
    /// Cancelled on shutdown.
    pub cancel: CancellationToken,
    /// Node agents' reverse tunnels (logs, exec).
    pub tunnels: Arc<crate::tunnel::Tunnels>,
}
