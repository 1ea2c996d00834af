//! The ledge node agent. This first slice joins a cluster and keeps its Node alive:
//!
//! - [`join`]: verify the server against the CA hash pinned in the join token ([`token`]), get a
//!   node client certificate through the certificates.k8s.io CSR API, keep it in the data dir
//!   ([`files`]);
//! - [`node`]: register the Node with real capacity, addresses, labels and taints;
//! - [`heartbeat`]: renew the node Lease and report status when it changes.
//!
//! It only ever dials out — one HTTP/2 connection ([`client`]) — and never listens on a port.
//! An unreachable server is retried with capped, jittered back-off ([`backoff`]) and said so;
//! anything that cannot get better by waiting (a CA that does not match, a refused token) stops
//! the agent with one line saying why. Pod workers, runtimes and the node store come next; this
//! crate must stay free of the server's crates (`ledge-apiserver`, `ledge-store`) and of heavy
//! dependencies, as it runs on small devices.

pub mod backoff;
pub mod client;
pub mod error;
pub mod exec;
pub mod files;
pub mod heartbeat;
pub mod image;
pub mod join;
pub mod logs;
pub mod node;
pub mod pod;
pub mod proxy;
pub mod runtime;
pub mod token;
pub mod tunnel;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use client::HttpClient;
pub use error::AgentError;
pub use token::JoinToken;

use crate::client::{Credentials as Auth, Trust};
use crate::node::{NodeSpec, Taint, facts, status};

/// The user name prefix of node certificates (`system:node:<name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of node certificates.
pub const NODES_GROUP: &str = "system:nodes";

/// How to run the agent (`ledge agent` flags).
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The server URL, `https://host:port`.
    pub server: String,
    /// The join token; needed only until the node has a certificate.
    pub token: Option<String>,
    /// Where the agent keeps its credentials (and later its node store).
    pub data_dir: PathBuf,
    /// Node name (default: the host name, lower-cased).
    pub node_name: Option<String>,
    /// Extra node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Taints to register with.
    pub node_taints: Vec<Taint>,
    /// The node's InternalIP (default: found from the connection or the default route).
    pub node_ip: Option<IpAddr>,
    /// How often the Lease is renewed.
    pub lease_interval: Duration,
    /// The longest time between two node status reports.
    pub status_report_interval: Duration,
    /// How long to wait for the node certificate to be signed.
    pub csr_timeout: Duration,
    /// The runtimes pods can use (`process` built in; `ledge-app` adds `wasm`).
    pub runtimes: runtime::Runtimes,
    /// Container restart back-off (kubelet's 10 s doubling to 5 minutes).
    pub backoff: pod::Backoff,
}

impl AgentOptions {
    /// Options with kubelet's defaults for everything but the server and data dir.
    pub fn new(server: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            server: server.into(),
            token: None,
            data_dir: data_dir.into(),
            node_name: None,
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
            node_ip: None,
            lease_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            csr_timeout: Duration::from_secs(300),
            runtimes: runtime::Runtimes::builtin(),
            backoff: pod::Backoff::default(),
        }
    }

    /// The node name: `--node-name`, else the host name lower-cased.
    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| facts::hostname().to_lowercase())
    }
}

/// Run the agent until `cancel`: join (or reuse the stored certificate), register the Node,
/// then keep its Lease and status fresh. Returns `Ok` on cancellation.
///
/// # Errors
/// Anything waiting cannot fix: bad flags, a malformed or refused token, a CA that does not
/// match the token, credentials of another node or cluster, an unwritable data dir.
pub async fn run(opts: AgentOptions, cancel: CancellationToken) -> Result<(), AgentError> {
    match run_inner(opts, &cancel).await {
        Err(AgentError::Cancelled) => Ok(()),
        other => other,
    }
}

async fn run_inner(opts: AgentOptions, cancel: &CancellationToken) -> Result<(), AgentError> {
    let name = opts.node_name();
    node::check_name(&name).map_err(AgentError::Config)?;
    if opts.lease_interval.is_zero() {
        return Err(AgentError::Config(
            "--lease-interval must be positive".into(),
        ));
    }
    files::create_private_dir(&opts.data_dir)?;
    tracing::info!(node = %name, server = %opts.server, "ledge agent starting");
    let creds = join::credentials(&opts, &name, cancel).await?;
    let client = HttpClient::new(
        &opts.server,
        Trust::Roots(&creds.ca_pem),
        Auth::Certificate {
            cert_pem: creds.cert_pem.clone(),
            key_pem: creds.key_pem.clone(),
        },
    )?;
    let spec = NodeSpec {
        name: name.clone(),
        labels: opts.node_labels.clone(),
        taints: opts.node_taints.clone(),
        runtimes: opts.runtimes.names(),
    };
    let dir = opts.data_dir.clone();
    let machine = tokio::task::spawn_blocking(move || facts::gather(&dir))
        .await
        .map_err(|e| AgentError::Config(format!("cannot gather node facts: {e}")))?;
    let registered = backoff::retry("registering the node", cancel, || async {
        // The first request dials, so the connection's local address is known after it.
        let probe = client.get_bytes("/version").await;
        if let Err(e) = probe {
            return Err(ledge_api::ApiError::from(e));
        }
        let ip = facts::internal_ip(opts.node_ip, client.local_addr());
        let status = status::build(&machine, ip, &heartbeat::chrono_now(), None);
        let node = node::register(&client, &spec, machine.architecture, status.clone()).await?;
        Ok((node, status))
    })
    .await
    .map_err(|e| AgentError::api(format!("cannot register node {name}"), e))?;
    let Some((node, status)) = registered else {
        return Ok(());
    };
    let uid = node
        .pointer("/metadata/uid")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_string();
    tracing::info!(
        node = %name,
        lease_interval_s = opts.lease_interval.as_secs_f64(),
        "node registered; renewing its lease"
    );
    let ip = facts::internal_ip(opts.node_ip, client.local_addr());
    let logs = std::sync::Arc::new(logs::Logs::new(opts.data_dir.join("logs/pods")));
    let exec_targets = std::sync::Arc::new(exec::Targets::default());
    let services = tunnel::Services {
        logs: logs.clone(),
        exec: exec_targets.clone(),
    };
    let tunnel = tokio::spawn(tunnel::run(client.clone(), services, cancel.child_token()));
    let shared = std::sync::Arc::new(pod::Shared {
        client: std::sync::Arc::new(client.clone()),
        http: client.clone(),
        events: ledge_controller::EventRecorder::new(
            std::sync::Arc::new(client.clone()),
            "kubelet",
        ),
        node_name: name.clone(),
        node: pod::NodeFacts {
            host_ip: ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "127.0.0.1".into()),
            cpu_millis: i64::try_from(machine.cpus)
                .unwrap_or(1)
                .saturating_mul(1000),
            memory_bytes: machine
                .memory_kib
                .and_then(|k| i64::try_from(k.saturating_mul(1024)).ok())
                .unwrap_or(0),
        },
        runtimes: opts.runtimes.clone(),
        images: image::ImageStore::new(&opts.data_dir),
        pods_dir: opts.data_dir.join("pods"),
        logs: logs.clone(),
        exec: exec_targets,
        backoff: opts.backoff,
    });
    let pods_client = client.with_field_selector(&format!("spec.nodeName={name}"));
    let proxy = tokio::spawn(proxy::run(
        std::sync::Arc::new(client.clone()),
        name.clone(),
        cancel.child_token(),
    ));
    let pods = tokio::spawn(pod::run(
        shared,
        std::sync::Arc::new(pods_client),
        cancel.child_token(),
    ));
    let node_view = ledge_controller::Informer::start(
        std::sync::Arc::new(client.with_field_selector(&format!("metadata.name={name}"))),
        ledge_controller::kinds::NODE,
        cancel.child_token(),
    );
    let heartbeat = heartbeat::Heartbeat {
        server_view: Some(node_view),
        client,
        node: name,
        node_uid: uid,
        data_dir: opts.data_dir.clone(),
        node_ip: opts.node_ip,
        lease_interval: opts.lease_interval,
        report_every: opts.status_report_interval,
    };
    heartbeat.run(status, cancel.clone()).await;
    let _ = pods.await;
    let _ = tunnel.await;
    let _ = proxy.await;
    Ok(())
}
