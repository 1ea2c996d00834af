//! The ledge node agent. This first slice joins a cluster and keeps its Node alive:
//!
//! - [`join`]: verify the server against the CA hash pinned in the join token ([`token`]), get a
//!   node client certificate through the certificates.k8s.io CSR API, keep it in the data dir
//!   ([`files`]);
//! - [`node`]: register the Node with real capacity, addresses, labels and taints;
//! - [`heartbeat`]: renew the node Lease and report status when it changes;
//! - [`discovery`]: learn every server of the cluster, so the client fails over between them
//!   and a [`tunnel`] reaches each.
//!
//! It only ever dials out — one HTTP/2 connection ([`client`]) — and never listens on a port.
//! An unreachable server is retried with capped, jittered back-off ([`backoff`]) and said so;
//! anything that cannot get better by waiting (a CA that does not match, a refused token) stops
//! the agent with one line saying why. Pod workers, runtimes and the node store come next; this
//! crate must stay free of the server's crates (`ledge-apiserver`, `ledge-store`) and of heavy
//! dependencies, as it runs on small devices.

pub mod backoff;
pub mod client;
pub mod discovery;
pub mod error;
pub mod exec;
pub mod files;
pub mod heartbeat;
pub mod image;
pub mod join;
pub mod local_api;
pub mod logs;
pub mod node;
pub mod node_store;
pub mod pod;
pub mod proxy;
pub mod runtime;
pub mod token;
pub mod tunnel;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ledge_api::Pointer as _;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use client::HttpClient;
pub use error::AgentError;
pub use token::JoinToken;

use crate::client::{Credentials as Auth, Trust};
use crate::node::{NodeSpec, Taint, facts, status};
use crate::node_store::{Cached, Link, NodeIdentity, NodeStore};

/// The user name prefix of node certificates (`system:node:<name>`).
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of node certificates.
pub const NODES_GROUP: &str = "system:nodes";

/// How to run the agent (`ledge agent` flags).
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The server URLs, `https://host:port`, the first tried first (`--server`). The servers
    /// learned from the cluster are added to them ([`discovery`]).
    pub servers: Vec<String>,
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
    /// Where the local API endpoint for the node's workloads listens (`None`: nowhere).
    pub local_api: Option<std::net::SocketAddr>,
}

impl AgentOptions {
    /// Options with kubelet's defaults for everything but the servers and data dir.
    pub fn new(
        servers: impl IntoIterator<Item = impl Into<String>>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            token: None,
            data_dir: data_dir.into(),
            node_name: None,
            node_labels: BTreeMap::new(),
            node_taints: Vec::new(),
            node_ip: None,
            lease_interval: Duration::from_secs(10),
            // Kubelet reports every 5 minutes even when nothing changed; health comes from the
            // Lease, so ledge reports changes as they happen and otherwise once an hour — each
            // report is kilobytes on a metered uplink.
            status_report_interval: Duration::from_secs(3600),
            csr_timeout: Duration::from_secs(300),
            runtimes: runtime::Runtimes::builtin(),
            backoff: pod::Backoff::default(),
            local_api: Some(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                local_api::DEFAULT_PORT,
            ))),
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
    // Bad URLs stop the agent before anything else, whether or not it needs to join.
    if opts.servers.is_empty() {
        return Err(AgentError::Config(
            "--server is required: the URL of a ledge server".into(),
        ));
    }
    client::ServerSet::new(&opts.servers)
        .map_err(|e| AgentError::Config(format!("--server: {e}")))?;
    files::create_private_dir(&opts.data_dir)?;
    tracing::info!(node = %name, server = %opts.servers.join(","), "ledge agent starting");
    // Compile stored images the Wasm cache lacks (after an upgrade, a wiped cache) while the
    // node joins, rather than in their first pod's start.
    tokio::spawn({
        let (runtimes, images) = (
            opts.runtimes.clone(),
            image::ImageStore::new(&opts.data_dir),
        );
        let cancel = cancel.child_token();
        async move { runtimes.prepare_stored(&images, &cancel).await }
    });
    let creds = join::credentials(&opts, &name, cancel).await?;
    let client = HttpClient::for_servers(
        &opts.servers,
        Trust::Roots(&creds.ca_pem),
        Auth::Certificate {
            cert_pem: creds.cert_pem.clone(),
            key_pem: creds.key_pem.clone(),
        },
    )?;
    // The servers learned before: if the first `--server` is gone, the others are tried.
    match discovery::load(&opts.data_dir) {
        Ok(known) => {
            client.set_learned(&known);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the known servers"),
    }
    // Several servers known: this node's share of the fleet goes to one picked by its name.
    client.spread(&name);
    let store = NodeStore::open(&opts.data_dir).map_err(|e| AgentError::Config(e.to_string()))?;
    let link = Arc::new(Link::default());
    let flusher = tokio::spawn(store.clone().run_flusher(cancel.child_token()));
    let dir = opts.data_dir.clone();
    let machine = tokio::task::spawn_blocking(move || facts::gather(&dir))
        .await
        .map_err(|e| AgentError::Config(format!("cannot gather node facts: {e}")))?;
    let spec = NodeSpec {
        name: name.clone(),
        labels: opts.node_labels.clone(),
        taints: opts.node_taints.clone(),
        runtimes: opts.runtimes.names(),
    };
    let register = || {
        backoff::retry("registering the node", cancel, || async {
            // The first request dials, so the connection's local address is known after it.
            let probe = client.get_bytes("/version").await;
            if let Err(e) = probe {
                return Err(ledge_api::ApiError::from(e));
            }
            let ip = facts::internal_ip(opts.node_ip, client.local_addr());
            let status = status::build(&machine, ip, &heartbeat::chrono_now(), None);
            let node = node::register(&client, &spec, machine.architecture, status.clone()).await?;
            let uid = node
                .at("/metadata/uid")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_string();
            store.set_node(NodeIdentity {
                name: name.clone(),
                uid: uid.clone(),
                ip,
            });
            Ok((uid, ip, status))
        })
    };
    // A node the store knows starts its pods at once, and registers while they run (an
    // offline start); a new node registers first, to learn its uid and address.
    let known = store.node().filter(|n| n.name == name);
    let mut registered = None;
    let ip = match &known {
        Some(node) => {
            let ip = opts
                .node_ip
                .or(node.ip)
                .or_else(|| facts::internal_ip(None, None));
            tracing::info!(node = %name, pods = store.pods().len(), "serving the node from its node store");
            ip
        }
        None => {
            let Some(r) = register()
                .await
                .map_err(|e| AgentError::api(format!("cannot register node {name}"), e))?
            else {
                return Ok(());
            };
            let ip = r.1;
            registered = Some(r);
            ip
        }
    };
    let client = client.with_request_timeout(request_timeout(opts.lease_interval));
    let (renewed_by_server, renewals) = tokio::sync::watch::channel(None);
    let served = serve(
        &opts,
        &name,
        &client,
        &store,
        &link,
        ip,
        &machine,
        renewed_by_server,
        cancel,
    );
    let (uid, _, status) = match registered {
        Some(r) => r,
        None => match register().await {
            Ok(Some(r)) => r,
            Ok(None) => (String::new(), ip, serde_json::Value::Null),
            Err(e) => {
                cancel.cancel();
                served.stop().await;
                let _ = flusher.await;
                return Err(AgentError::api(format!("cannot register node {name}"), e));
            }
        },
    };
    if !cancel.is_cancelled() {
        tracing::info!(
            node = %name,
            lease_interval_s = opts.lease_interval.as_secs_f64(),
            "node registered; renewing its lease"
        );
        let node_view = ledge_controller::Informer::start_with_retry_cap(
            Arc::new(client.with_field_selector(&format!("metadata.name={name}"))),
            ledge_controller::kinds::NODE,
            cancel.child_token(),
            RECONNECT_CAP,
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
            link,
            renewed_by_server: renewals,
        };
        heartbeat.run(status, cancel.clone()).await;
    }
    served.stop().await;
    let _ = flusher.await;
    Ok(())
}

/// The longest wait between two attempts to reach the server once it was lost (jittered
/// below it): short, so a node is back soon after its link.
pub const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// The same for the watch of the node's own pods, which decides how soon a node that is back
/// runs what changed while it was away. Attempts are cheap while the link is down: one
/// connection attempt at a time, whoever makes it.
pub const WATCH_RETRY_CAP: Duration = Duration::from_secs(2);

/// How long one request may take before the link counts as dead: the lease interval (the
/// heartbeat must not fall behind), within 2–30 s.
fn request_timeout(lease_interval: Duration) -> Duration {
    lease_interval.clamp(Duration::from_secs(2), Duration::from_secs(30))
}

/// What runs the node's workloads, independent of the server being reachable.
struct Served {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Wait for every task (they stop when the agent's cancellation fires).
    async fn stop(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Start the pods (from the node store, then as the server says), logs/exec tunnels, the
/// following of the cluster's servers and the service proxy.
#[allow(clippy::too_many_arguments)]
fn serve(
    opts: &AgentOptions,
    name: &str,
    client: &HttpClient,
    store: &Arc<NodeStore>,
    link: &Arc<Link>,
    ip: Option<IpAddr>,
    machine: &facts::Facts,
    renewed_by_server: tunnel::RenewedBy,
    cancel: &CancellationToken,
) -> Served {
    let logs = Arc::new(logs::Logs::new(opts.data_dir.join("logs/pods")));
    let exec_targets = Arc::new(exec::Targets::default());
    let services = tunnel::Services {
        logs: logs.clone(),
        exec: exec_targets.clone(),
    };
    let tunnel = tokio::spawn(tunnel::run(
        client.clone(),
        services,
        opts.lease_interval,
        renewed_by_server,
        link.clone(),
        cancel.child_token(),
    ));
    let api: Arc<dyn ledge_controller::Client> = Arc::new(client.clone());
    let cached: Arc<dyn ledge_controller::Client> =
        Arc::new(Cached::new(api, store.clone(), link.clone()));
    let shared = Arc::new(pod::Shared {
        client: cached.clone(),
        http: client.clone(),
        events: ledge_controller::EventRecorder::new(Arc::new(client.clone()), "kubelet"),
        node_name: name.to_string(),
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
        logs,
        exec: exec_targets,
        backoff: opts.backoff,
    });
    let pods_client = Cached::new(
        Arc::new(client.with_field_selector(&format!("spec.nodeName={name}"))),
        store.clone(),
        link.clone(),
    );
    let proxy = tokio::spawn(proxy::run(
        Arc::new(client.clone()),
        name.to_string(),
        cancel.child_token(),
    ));
    let pods = tokio::spawn(pod::run(
        shared,
        Arc::new(pods_client),
        store.clone(),
        cancel.child_token(),
    ));
    let discovery = tokio::spawn(discovery::run(
        client.clone(),
        opts.data_dir.clone(),
        cancel.child_token(),
    ));
    let mut tasks = vec![tunnel, proxy, pods, discovery];
    if let Some(addr) = opts.local_api {
        let api = Arc::new(local_api::LocalApi {
            client: client.clone(),
            store: store.clone(),
            link: link.clone(),
        });
        tasks.push(tokio::spawn(local_api::run(
            api,
            addr,
            cancel.child_token(),
        )));
    }
    Served { tasks }
}
