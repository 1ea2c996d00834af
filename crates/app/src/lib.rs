//! The composition root: turns command-line options into running components (store, API
//! server, node agent), prints what a user needs to get started, and shuts everything down
//! gracefully. `ledge token` lives in `token.rs`, `ledge agent` in `agent.rs`.

mod agent;
mod cluster;
mod datastore;
mod image;
mod leader;
mod migrate;
mod peers;
mod progress;
mod token;
mod up;

pub use agent::{AgentCliOptions, agent_options, run_agent};
pub use datastore::DatastoreOptions;
pub use image::{ImageCommand, run_image};
pub use ledge_store::etcd::{EtcdOptions, EtcdTls, parse_endpoints as parse_etcd_endpoints};
pub use migrate::migrate;
pub use token::{TokenOptions, create_token, delete_token, list_tokens, parse_duration};
pub use up::{UpOptions, run_up};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ledge_store::Store;
use tokio_util::sync::CancellationToken;

/// Options of `ledge server`.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Data directory (store, certificates, kubeconfig).
    pub data_dir: PathBuf,
    /// HTTPS port.
    pub port: u16,
    /// Listen address.
    pub bind: IpAddr,
    /// Extra certificate names.
    pub tls_sans: Vec<String>,
    /// The address other servers, agents and in-cluster clients reach this server at (listed in
    /// the `kubernetes` Endpoints); by default the bind address, or the default route's.
    pub advertise_address: Option<IpAddr>,
    /// Events kept for watches resuming from a past resourceVersion.
    pub watch_history: usize,
    /// How long a node's Lease may go unrenewed before the node is marked Unknown.
    pub node_monitor_grace_period: Duration,
    /// Where the cluster state lives: the embedded store, or etcd shared with other servers.
    pub datastore: DatastoreOptions,
    /// The cluster token servers sharing a datastore prove themselves with (`--token`).
    pub token: Option<String>,
    /// Run no scheduler: pods wait for another one (`--disable-scheduler`, as K3s').
    pub disable_scheduler: bool,
}

/// The default server data dir: `/var/lib/ledge/server` for root, else `~/.ledge/server`.
pub fn default_server_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    match std::env::var_os("HOME") {
        Some(home) if !root => Path::new(&home).join(".ledge/server"),
        _ => PathBuf::from("/var/lib/ledge/server"),
    }
}

/// An error as one line: its message, then each cause not already spelled out in it (many
/// errors quote their source in their own message).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// The default agent data dir: `/var/lib/ledge/agent` for root, else `~/.ledge/agent`.
pub fn default_agent_dir() -> PathBuf {
    match default_server_dir().parent() {
        Some(base) => base.join("agent"),
        None => PathBuf::from("/var/lib/ledge/agent"),
    }
}

/// How long shutdown waits for in-flight work before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A running control plane: API server, controllers, scheduler on its datastore.
pub(crate) struct Control {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The campaign for the controller Lease (the leader runs controllers and scheduler).
    election: leader::Election,
    /// This server's entry in the `kubernetes` Endpoints, and the task keeping it.
    peers: (CancellationToken, tokio::task::JoinHandle<()>),
    store: datastore::Datastore,
    /// The cluster token, when the datastore is shared.
    token: Option<cluster::Token>,
    /// The address the API listens on.
    pub addr: std::net::SocketAddr,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Control {
    /// Start everything `ledge server` runs.
    pub(crate) async fn start(opts: &ServerOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&opts.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {} (choose another with --data-dir)",
                opts.data_dir.display()
            )
        })?;
        let cancel = CancellationToken::new();
        let store = datastore::Datastore::open(&opts.datastore, &opts.data_dir, &cancel).await?;
        let shared: Arc<dyn Store> = store.shared();
        let token = if opts.datastore.is_shared() {
            Some(cluster::share(shared.as_ref(), &opts.data_dir, opts.token.as_deref()).await?)
        } else {
            None
        };
        let advertise = opts
            .advertise_address
            .unwrap_or_else(|| peers::default_advertise(opts.bind));
        let mut tls_sans = opts.tls_sans.clone();
        tls_sans.push(advertise.to_string());
        let config = ledge_apiserver::ServerConfig {
            data_dir: opts.data_dir.clone(),
            bind: opts.bind,
            port: opts.port,
            tls_sans,
            watch_history: opts.watch_history,
        };
        let running = ledge_apiserver::start(config, shared, cancel.clone())
            .await
            .with_context(|| {
                format!("cannot start the API server on {}:{}", opts.bind, opts.port)
            })?;
        let client: Arc<dyn ledge_apiserver::ControllerClient> = Arc::new(running.client.clone());
        let controllers = ledge_controllers::Config {
            node_monitor_grace_period: opts.node_monitor_grace_period,
        };
        let scheduler = !opts.disable_scheduler;
        let identity =
            leader::load_or_create_identity(&opts.data_dir, &ledge_agent::node::facts::hostname())?;
        let me = peers::Peer {
            identity: identity.clone(),
            address: std::net::SocketAddr::new(advertise, running.addr.port()),
        };
        let peers_cancel = cancel.child_token();
        let peers = tokio::spawn(peers::run(client.clone(), me, peers_cancel.clone()));
        let election = leader::Election::start(
            identity,
            client,
            leader::Duties {
                controllers,
                scheduler,
                loops: running.leader_loops,
            },
            &cancel,
        )?;
        Ok(Self {
            cancel,
            task: running.task,
            election,
            peers: (peers_cancel, peers),
            store,
            token,
            addr: running.addr,
            kubeconfig: running.kubeconfig,
        })
    }

    /// Stop gracefully, bounded by [`SHUTDOWN_GRACE`].
    pub(crate) async fn stop(self) {
        // Hand the controller Lease over while the API still serves the release.
        self.election.stop(SHUTDOWN_GRACE).await;
        // Leave the server list while the API still serves the removal.
        self.peers.0.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.peers.1).await;
        self.cancel.cancel();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.task).await;
        if tokio::time::timeout(SHUTDOWN_GRACE, self.store.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("store did not shut down in time");
        }
    }
}

/// Run `ledge server` until SIGINT/SIGTERM.
pub async fn run_server(opts: ServerOptions) -> anyhow::Result<()> {
    let control = Control::start(&opts).await?;
    println!("ledge server is ready on https://{}", control.addr);
    println!("  data dir:   {}", opts.data_dir.display());
    println!("  kubeconfig: {}", control.kubeconfig.display());
    if let Some(token) = &control.token {
        println!(
            "  datastore:  shared; cluster token in {}",
            token.path.display()
        );
        if token.generated {
            println!(
                "  more servers join with: ledge server --datastore-endpoint ... --token {}",
                token.value
            );
        }
    }
    println!("try:");
    println!("  export KUBECONFIG={}", control.kubeconfig.display());
    println!("  kubectl get namespaces");
    println!("  ledge token create   # then on a device: ledge agent --server URL --token TOKEN");
    println!("stop with Ctrl-C");
    wait_for_signal().await;
    println!("shutting down");
    control.stop().await;
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Print the admin kubeconfig of a server data dir.
pub fn print_kubeconfig(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("admin.kubeconfig");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: start `ledge server --data-dir {}` first",
            path.display(),
            data_dir.display()
        )
    })?;
    print!("{text}");
    Ok(())
}
