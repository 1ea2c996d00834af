//! ledge's Kubernetes API server: HTTPS with client-certificate and bootstrap-token
//! authentication, discovery and OpenAPI, one generic request pipeline over a watch cache and the
//! store, per-kind strategies, and the in-process loops (namespaces, garbage collection, CRDs,
//! node certificate signing) the API's semantics need.

pub mod admission;
pub mod auth;
pub mod cache;
pub mod client;
pub mod discovery;
pub mod fieldcheck;
pub mod handlers;
pub mod http;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod state;
pub mod system;
pub mod table;
pub mod tunnel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use ledge_controller::Client as ControllerClient;
use ledge_store::Store;
use tokio_util::sync::CancellationToken;

use crate::auth::pki::{self, ClusterCa};
use crate::cache::Cache;
use crate::registry::Registry;
use crate::state::ApiState;

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where certificates and the admin kubeconfig live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub bind: std::net::IpAddr,
    /// HTTPS port.
    pub port: u16,
    /// Extra names and IPs for the serving certificate.
    pub tls_sans: Vec<String>,
    /// Events kept in memory for watches that resume from a past resourceVersion.
    pub watch_history: usize,
}

/// Failures starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Certificates could not be created or loaded.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The listener or TLS setup failed.
    #[error(transparent)]
    Serve(#[from] http::server::ServeError),
    /// The store failed while loading the cache.
    #[error("store: {0}")]
    Store(#[from] ledge_store::StoreError),
    /// Creating the bootstrap objects failed.
    #[error("bootstrap: {0}")]
    Bootstrap(ledge_api::ApiError),
}

/// A started server: where it listens and where its admin kubeconfig is.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The serve loop; ends after cancellation.
    pub task: tokio::task::JoinHandle<()>,
    /// An in-process API client for controllers.
    pub client: client::LocalClient,
    /// Starts the controller loops of the API server that only the elected leader runs.
    pub leader_loops: system::LeaderLoops,
}

/// The server URL clients should use for a bound address.
fn server_url(bind: std::net::IpAddr, port: u16) -> String {
    let host = if bind.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bind.to_string()
    };
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// Render a kubeconfig for a client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str, user: &str) -> String {
    use base64::Engine as _;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ledge\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: ledge\n  context:\n    cluster: ledge\n    user: {user}\n    namespace: default\ncurrent-context: ledge\npreferences: {{}}\n",
        ca = b(ca_pem),
        cert = b(cert_pem),
        key = b(key_pem),
    )
}

/// Start the API server on `store`: certificates, cache, bootstrap objects, the system loops
/// every server runs, listener. Returns once it accepts connections; the loops only the
/// elected leader runs are started through [`Running::leader_loops`].
pub async fn start(
    config: ServerConfig,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    let pki_dir = config.data_dir.join("tls");
    std::fs::create_dir_all(&pki_dir).map_err(|source| pki::PkiError::Io {
        path: pki_dir.clone(),
        source,
    })?;
    let ca = Arc::new(ClusterCa::load_or_create(&pki_dir)?);
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        admission::KUBERNETES_SERVICE_IP.to_string(),
    ];
    if !config.bind.is_unspecified() {
        names.push(config.bind.to_string());
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.extend(config.tls_sans.iter().cloned());
    names.sort();
    names.dedup();
    // The serving certificate is issued at every start so new --tls-san values take effect.
    let serving = ca.issue_server(&names)?;
    let admin = pki::load_or_issue(&pki_dir, "admin", || {
        ca.issue_client("ledge-admin", &["system:masters"])
    })?;

    let listener = http::server::bind(SocketAddr::new(config.bind, config.port)).await?;
    let addr = listener
        .local_addr()
        .map_err(|source| http::server::ServeError::Bind {
            addr: SocketAddr::new(config.bind, config.port),
            source,
        })?;
    let tls = http::server::tls_config(&ca.cert_pem, &serving.cert_pem, &serving.key_pem)?;

    let cache = Cache::start(store.clone(), config.watch_history, cancel.child_token()).await?;
    let state = Arc::new(ApiState {
        store,
        cache,
        registry: Arc::new(Registry::with_builtins()),
        ca_pem: ca.cert_pem.clone(),
        ca: ca.clone(),
        cancel: cancel.clone(),
        tunnels: Arc::default(),
    });
    system::bootstrap(&state, addr.port())
        .await
        .map_err(StartError::Bootstrap)?;
    system::start(state.clone());

    let kubeconfig_path = config.data_dir.join("admin.kubeconfig");
    let text = kubeconfig(
        &server_url(config.bind, addr.port()),
        &ca.cert_pem,
        &admin.cert_pem,
        &admin.key_pem,
        "ledge-admin",
    );
    pki::write_private(&kubeconfig_path, &text)?;

    let client = client::LocalClient::new(state.clone());
    let leader_loops = system::LeaderLoops::new(state.clone());
    let task = tokio::spawn(http::server::serve(listener, tls, state, cancel));
    Ok(Running {
        addr,
        kubeconfig: kubeconfig_path,
        task,
        client,
        leader_loops,
    })
}
