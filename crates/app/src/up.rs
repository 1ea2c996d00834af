//! `ledge up`: a whole single-node cluster in one process — the control plane and a node agent
//! joined to it over loopback HTTPS, exactly as a remote agent would join (token, CSR, node
//! certificate), so what works here works on a fleet.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{Control, ServerOptions, TokenOptions};

/// Options of `ledge up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Base directory: `server/` and `agent/` live under it.
    pub data_dir: PathBuf,
    /// The server's options (its data dir is `data_dir/server`).
    pub server: ServerOptions,
    /// Node name (default: the host name).
    pub node_name: Option<String>,
    /// Extra node labels, `key=value`.
    pub node_labels: Vec<String>,
    /// First container restart back-off.
    pub restart_backoff: Duration,
}

/// Run server + agent until SIGINT/SIGTERM.
pub async fn run_up(opts: UpOptions) -> anyhow::Result<()> {
    let control = Control::start(&opts.server).await?;
    let agent_dir = opts.data_dir.join("agent");
    let server_url = format!("https://127.0.0.1:{}", control.addr.port());
    let needs_token = ledge_agent::files::load(&agent_dir)
        .ok()
        .flatten()
        .is_none();
    let token = if needs_token {
        let t = crate::create_token(&TokenOptions {
            data_dir: opts.server.data_dir.clone(),
            ttl: Duration::from_secs(600),
            description: Some("ledge up: the local node".into()),
        })
        .await
        .context("cannot create a join token for the local node")?;
        Some(t)
    } else {
        None
    };
    let cli = crate::AgentCliOptions {
        server: server_url,
        token,
        data_dir: agent_dir.clone(),
        node_name: opts.node_name.clone(),
        node_labels: opts.node_labels.clone(),
        node_taints: Vec::new(),
        node_ip: None,
        lease_interval: Duration::from_secs(10),
        restart_backoff: opts.restart_backoff,
        local_api_port: ledge_agent::local_api::DEFAULT_PORT,
    };
    let mut agent_opts = crate::agent_options(cli)?;
    agent_opts.node_ip =
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)).filter(|_| opts.server.bind.is_loopback());
    let node_name = agent_opts.node_name();
    let runtimes = agent_opts.runtimes.names().join(", ");
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(ledge_agent::run(agent_opts, cancel.child_token()));
    println!(
        "ledge is up: a single-node cluster on https://{}",
        control.addr
    );
    println!("  node:       {node_name} (runtimes: {runtimes})");
    println!("  data dir:   {}", opts.data_dir.display());
    println!("  kubeconfig: {}", control.kubeconfig.display());
    println!("try:");
    println!("  export KUBECONFIG={}", control.kubeconfig.display());
    println!("  kubectl get nodes");
    println!("  examples/hello-wasm/build.sh && ledge image import \\");
    println!("      $CARGO_TARGET_DIR/wasm-fixtures/hello-http.wasm --name hello-wasm:1");
    println!("  kubectl apply -f examples/hello-wasm.yaml && kubectl get pods -o wide");
    println!("stop with Ctrl-C");
    tokio::pin!(agent);
    let result = tokio::select! {
        r = &mut agent => Some(r),
        _ = crate::wait_for_signal() => None,
    };
    println!("shutting down");
    cancel.cancel();
    let agent_result = match result {
        Some(r) => r,
        None => match tokio::time::timeout(crate::SHUTDOWN_GRACE, agent).await {
            Ok(r) => r,
            Err(_) => Ok(Ok(())),
        },
    };
    control.stop().await;
    agent_result?.map_err(anyhow::Error::from)
}
