//! The composition root: turns command-line options into running components (store, API
//! server, node agent), prints what a user needs to get started, and shuts everything down
//! gracefully. `ledge token` lives in `token.rs`, `ledge agent` in `agent.rs`.

mod agent;
mod image;
mod token;
mod up;

pub use agent::{AgentCliOptions, agent_options, run_agent};
pub use image::{ImageCommand, run_image};
pub use token::{TokenOptions, create_token, delete_token, list_tokens, parse_duration};
pub use up::{UpOptions, run_up};

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ledge_store::{EmbeddedOptions, EmbeddedStore, Store};
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
    /// Events kept for watches resuming from a past resourceVersion.
    pub watch_history: usize,
    /// How long a node's Lease may go unrenewed before the node is marked Unknown.
    pub node_monitor_grace_period: Duration,
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

async fn open_store(data_dir: &Path) -> anyhow::Result<EmbeddedStore> {
    let path = data_dir.join("db").join("ledge.redb");
    let dir = data_dir.join("db");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(&path, EmbeddedOptions::default())
            .with_context(|| format!("cannot open the store at {}", path.display()))
    })
    .await?
}

/// A running control plane: API server, controllers, scheduler on the embedded store.
pub(crate) struct Control {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    store: EmbeddedStore,
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
        let store = open_store(&opts.data_dir).await?;
        let cancel = CancellationToken::new();
        let config = ledge_apiserver::ServerConfig {
            data_dir: opts.data_dir.clone(),
            bind: opts.bind,
            port: opts.port,
            tls_sans: opts.tls_sans.clone(),
            watch_history: opts.watch_history,
        };
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let running = ledge_apiserver::start(config, shared, cancel.clone())
            .await
            .with_context(|| {
                format!("cannot start the API server on {}:{}", opts.bind, opts.port)
            })?;
        let client: Arc<dyn ledge_apiserver::ControllerClient> = Arc::new(running.client.clone());
        let controllers = ledge_controllers::Config {
            node_monitor_grace_period: opts.node_monitor_grace_period,
        };
        ledge_controllers::start(client.clone(), controllers, cancel.child_token());
        ledge_scheduler::start(client, cancel.child_token());
        Ok(Self {
            cancel,
            task: running.task,
            store,
            addr: running.addr,
            kubeconfig: running.kubeconfig,
        })
    }

    /// Stop gracefully, bounded by [`SHUTDOWN_GRACE`].
    pub(crate) async fn stop(self) {
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
