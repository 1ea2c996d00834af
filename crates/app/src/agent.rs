//! `ledge agent`: flags to [`ledge_agent::AgentOptions`], then the agent until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use tokio_util::sync::CancellationToken;

/// Options of `ledge agent`, as given on the command line.
#[derive(Clone, Debug)]
pub struct AgentCliOptions {
    /// `--server`: one URL, or several separated by commas.
    pub server: String,
    /// `--token`.
    pub token: Option<String>,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--node-name`.
    pub node_name: Option<String>,
    /// `--node-label key=value`, repeated.
    pub node_labels: Vec<String>,
    /// `--node-taint key=value:Effect`, repeated.
    pub node_taints: Vec<String>,
    /// `--node-ip`.
    pub node_ip: Option<IpAddr>,
    /// `--lease-interval`.
    pub lease_interval: Duration,
    /// `--restart-backoff`: the first delay before a container is restarted.
    pub restart_backoff: Duration,
    /// `--local-api-port` (0: none).
    pub local_api_port: u16,
}

/// Turn command-line options into agent options (labels and taints checked here).
pub fn agent_options(cli: AgentCliOptions) -> anyhow::Result<ledge_agent::AgentOptions> {
    let mut labels = BTreeMap::new();
    for l in &cli.node_labels {
        let (k, v) = ledge_agent::node::parse_label(l).map_err(|e| anyhow!(e))?;
        labels.insert(k, v);
    }
    let taints = cli
        .node_taints
        .iter()
        .map(|t| ledge_agent::node::parse_taint(t).map_err(|e| anyhow!(e)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let servers = ledge_agent::client::split_list(&cli.server);
    let mut opts = ledge_agent::AgentOptions::new(servers, cli.data_dir);
    opts.token = cli.token.filter(|t| !t.trim().is_empty());
    opts.node_name = cli.node_name;
    opts.node_labels = labels;
    opts.node_taints = taints;
    opts.node_ip = cli.node_ip;
    opts.lease_interval = cli.lease_interval;
    opts.local_api = (cli.local_api_port != 0)
        .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], cli.local_api_port)));
    opts.runtimes = runtimes(&opts.data_dir)?;
    if cli.restart_backoff.is_zero() {
        return Err(anyhow!("--restart-backoff must be longer than zero"));
    }
    // Doubling up to 30 times the first delay, as kubelet's 10 s → 5 min.
    opts.backoff.initial = cli.restart_backoff;
    opts.backoff.max = cli.restart_backoff.saturating_mul(30);
    Ok(opts)
}

/// The runtimes the agent offers: `process` (built in) and `wasm` (wasmtime; its engine is
/// made by the first Wasm pod).
pub fn runtimes(data_dir: &std::path::Path) -> anyhow::Result<ledge_agent::runtime::Runtimes> {
    let mut r = ledge_agent::runtime::Runtimes::builtin();
    r.add(std::sync::Arc::new(wasm_runtime(data_dir)?));
    Ok(r)
}

/// The `wasm` runtime of the agent whose data dir is `data_dir`, compiled code cached in
/// `<data dir>/wasm-cache`: the agent's, and `ledge image import`'s to precompile into the same
/// cache with the same engine settings.
pub(crate) fn wasm_runtime(data_dir: &std::path::Path) -> anyhow::Result<ledge_wasm::WasmRuntime> {
    ledge_wasm::WasmRuntime::new(ledge_wasm::WasmConfig::new(data_dir.join("wasm-cache")))
        .map_err(|e| anyhow!("cannot start the wasm runtime: {e}"))
}

/// Run `ledge agent` until SIGINT/SIGTERM.
pub async fn run_agent(cli: AgentCliOptions) -> anyhow::Result<()> {
    let opts = agent_options(cli)?;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(ledge_agent::run(opts, cancel.child_token()));
    tokio::pin!(agent);
    tokio::select! {
        result = &mut agent => return result?.map_err(anyhow::Error::from),
        _ = crate::wait_for_signal() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
    match tokio::time::timeout(crate::SHUTDOWN_GRACE, agent).await {
        Ok(result) => result?.map_err(anyhow::Error::from),
        Err(_) => {
            tracing::warn!("the agent did not stop in time");
            Ok(())
        }
    }
}
