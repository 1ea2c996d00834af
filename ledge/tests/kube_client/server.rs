//! A real `ledge server` process for one test: a temp data dir, a free loopback port, a `kube`
//! client loaded from the admin kubeconfig it writes. The server is killed when its guard drops;
//! a failing (or panicking) test prints the tail of the server log first.

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tempfile::TempDir;

/// How long a server may take to answer `/readyz` (it takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of the server log a failing test prints.
const LOG_TAIL_LINES: usize = 80;

/// Start a server, run `scenario` with a client authenticated as its admin, kill the server.
/// When the scenario fails, the tail of the server log is printed with the error.
pub async fn with_server<F, Fut>(scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let server = Server::start().await?;
    let result = scenario(server.client.clone()).await;
    if result.is_err() {
        server.process.print_log();
    }
    result
}

/// A running `ledge server` and an admin client for it.
struct Server {
    client: Client,
    process: Process,
}

/// The server process, killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
    // Dropped after the kill: the data dir outlives the process that writes into it.
    _dir: TempDir,
}

impl Server {
    /// Start `ledge server` on a free 127.0.0.1 port and wait until `/readyz` answers `ok`.
    async fn start() -> anyhow::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix("ledge-kube-client-")
            .tempdir()?;
        let data_dir = dir.path().join("data");
        let log = dir.path().join("server.log");
        let port = free_port()?;
        let out = File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_ledge"))
            .arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--https-listen-port", &port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--watch-history", "1000"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start the ledge binary")?;
        let mut process = Process {
            child,
            log,
            _dir: dir,
        };
        let client = process
            .wait_ready(&data_dir.join("admin.kubeconfig"))
            .await
            .with_context(|| format!("server log:\n{}", process.log_tail()))?;
        Ok(Server { client, process })
    }
}

impl Process {
    /// Poll until the kubeconfig is written and `/readyz` says `ok` through a client built from
    /// it, failing early if the process exits.
    async fn wait_ready(&mut self, kubeconfig: &Path) -> anyhow::Result<Client> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut last = String::from("admin.kubeconfig not written yet");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("ledge server exited during startup with {status}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("ledge server not ready after {START_TIMEOUT:?}: {last}");
            }
            if kubeconfig.exists() {
                match ready_client(kubeconfig).await {
                    Ok(client) => return Ok(client),
                    Err(e) => last = format!("{e:#}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Print the tail of the server log (captured by the test harness, shown for failed tests).
    fn print_log(&self) {
        // The data dir (and the log in it) is removed when the test ends: print, don't point.
        eprintln!(
            "--- ledge server log, last {LOG_TAIL_LINES} lines (more with LEDGE_LOG=debug) ---\n{}",
            self.log_tail()
        );
    }

    /// The last lines of the server's stdout and stderr.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            self.print_log();
        }
    }
}

/// Load the kubeconfig as a user of `kube` would, and check `/readyz` with it.
async fn ready_client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let host = config.cluster_url.host().unwrap_or_default();
    // These tests only ever talk to this machine.
    if host != "127.0.0.1" {
        bail!(
            "admin.kubeconfig points at {}, not at 127.0.0.1",
            config.cluster_url
        );
    }
    let client = Client::try_from(config)?;
    let body = client
        .request_text(http::Request::get("/readyz").body(Vec::new())?)
        .await?;
    if body.trim() != "ok" {
        bail!("/readyz answered {body:?}");
    }
    Ok(client)
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
