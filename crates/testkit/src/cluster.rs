//! A ledge cluster on a bed: `ledge server` on host `server`, `ledge agent`s on hosts
//! `edge-1` ... `edge-N`, joined with a real token over the bed's links, and the real `kubectl`
//! run from inside the server's namespace.
//!
//! What does not live here: namespaces and links (`netns`), process handling (`process`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result, check};
use crate::netns::{Bed, Host};
use crate::process::Proc;
use crate::wait::wait_for;

/// The API port of the server, on its host's address.
pub const API_PORT: u16 = 6443;
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(250);
/// How long processes get to stop cleanly when the cluster is dropped.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// Log lines quoted in errors.
const TAIL: usize = 40;

/// How the cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The agents' `--lease-interval` (ledge's default: 10 s).
    pub lease_interval: Duration,
    /// The server's `--node-monitor-grace-period` (ledge's default: 40 s).
    pub node_monitor_grace_period: Duration,
    /// How long the server and then the Nodes may take to become ready.
    pub ready_timeout: Duration,
    /// Further `ledge server` flags.
    pub server_args: Vec<String>,
    /// Further `ledge agent` flags (every agent).
    pub agent_args: Vec<String>,
    /// The `ledge` binary to run; `None`: [`ledge_bin`] (`$LEDGE_BIN`, else the debug build).
    pub bin: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            lease_interval: Duration::from_secs(10),
            node_monitor_grace_period: Duration::from_secs(40),
            ready_timeout: Duration::from_secs(120),
            server_args: Vec::new(),
            agent_args: Vec::new(),
            bin: None,
        }
    }
}

/// A ledge process on a bed host, with its data directory.
#[derive(Debug, Clone)]
pub struct Member {
    host: Host,
    proc: Proc,
    data_dir: PathBuf,
}

impl Member {
    /// The host's name, which is also the Node name of an agent.
    pub fn name(&self) -> &str {
        self.host.name()
    }

    /// The host the process runs on (cut its link, add netem, exec there).
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The process (kill, stop, restart, log).
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Its `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// A running server and its agents on a [`Bed`]. Dropping it stops the agents and the server
/// (SIGTERM, then SIGKILL after 5 s), then tears the bed down.
pub struct Cluster {
    bin: PathBuf,
    opts: ClusterOptions,
    server: Member,
    agents: Vec<Member>,
    token: String,
    kubectl_home: PathBuf,
    // Last: dropped after `Cluster::drop` has stopped the processes.
    bed: Bed,
}

impl Cluster {
    /// Starts a server on a new host `server` and `agents` agents on new hosts `edge-1` ...,
    /// and waits until the API is ready and every Node is Ready.
    pub fn start(bed: Bed, agents: usize, opts: ClusterOptions) -> Result<Cluster> {
        let bin = match &opts.bin {
            Some(bin) => bin.clone(),
            None => ledge_bin()?,
        };
        let host = bed.add_host("server")?;
        let data_dir = host.dir()?.join("data");
        let ip = host.ip().to_string();
        let mut cmd = Command::new(&bin);
        cmd.args(["server", "--data-dir"])
            .arg(&data_dir)
            .args(["--bind-address", &ip, "--tls-san", &ip])
            .args(["--https-listen-port", &API_PORT.to_string()])
            .arg("--node-monitor-grace-period")
            .arg(duration_flag(opts.node_monitor_grace_period))
            .args(&opts.server_args)
            .env("RUST_BACKTRACE", "1");
        let proc = host.spawn("ledge", &cmd)?;
        let kubectl_home = bed.dir().join("kubectl-home");
        let mut cluster = Cluster {
            bin,
            opts,
            server: Member {
                host,
                proc,
                data_dir,
            },
            agents: Vec::new(),
            token: String::new(),
            kubectl_home,
            bed,
        };
        cluster.wait_api_ready()?;
        cluster.token = cluster.create_token()?;
        for i in 1..=agents {
            cluster.add_agent(&format!("edge-{i}"))?;
        }
        let names: Vec<String> = cluster.agents.iter().map(|a| a.name().into()).collect();
        cluster.wait_for("every Node to be Ready", cluster.opts.ready_timeout, || {
            cluster.check_agents_running()?;
            for name in &names {
                if cluster.node_ready(name)?.as_deref() != Some("True") {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })?;
        Ok(cluster)
    }

    /// Starts one more agent on a new host `name` (joining with the cluster's token) without
    /// waiting for its Node.
    pub fn add_agent(&mut self, name: &str) -> Result<&Member> {
        let host = self.bed.add_host(name)?;
        let data_dir = host.dir()?.join("data");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["agent", "--server", &self.server_url(), "--data-dir"])
            .arg(&data_dir)
            .args(["--node-name", name, "--node-ip", &host.ip().to_string()])
            .arg("--lease-interval")
            .arg(duration_flag(self.opts.lease_interval))
            .args(&self.opts.agent_args)
            // Through the environment, so the token is not in the log's command line.
            .env("LEDGE_TOKEN", &self.token)
            .env("RUST_BACKTRACE", "1");
        let proc = host.spawn("ledge", &cmd)?;
        self.agents.push(Member {
            host,
            proc,
            data_dir,
        });
        Ok(self.agents.last().expect("just pushed"))
    }

    /// The `ledge` binary the cluster runs (for `ledge image import` and other commands).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The bed the cluster runs on.
    pub fn bed(&self) -> &Bed {
        &self.bed
    }

    /// The server.
    pub fn server(&self) -> &Member {
        &self.server
    }

    /// The agents, in the order they were started.
    pub fn agents(&self) -> &[Member] {
        &self.agents
    }

    /// The agent whose Node is `name`.
    pub fn agent(&self, name: &str) -> Option<&Member> {
        self.agents.iter().find(|a| a.name() == name)
    }

    /// `https://<server ip>:6443`.
    pub fn server_url(&self) -> String {
        format!("https://{}:{API_PORT}", self.server.host.ip())
    }

    /// The admin kubeconfig the server wrote (its server URL is the server host's address).
    pub fn kubeconfig(&self) -> PathBuf {
        self.server.data_dir.join("admin.kubeconfig")
    }

    /// The join token agents use.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Runs the real `kubectl` (`$KUBECTL`, else the one on PATH) with the admin kubeconfig from
    /// inside the server's namespace; its output, successful or not.
    pub fn kubectl<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        self.server.host.exec(&self.kubectl_command(args))
    }

    /// Like [`Cluster::kubectl`], with `input` on stdin (`apply -f -`).
    pub fn kubectl_with_input<S: AsRef<OsStr>>(&self, args: &[S], input: &str) -> Result<Output> {
        self.server
            .host
            .exec_with_input(&self.kubectl_command(args), input.as_bytes())
    }

    /// `kubectl <args> -o json`, parsed; a failed command is an error.
    pub fn kubectl_json<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Value> {
        let mut cmd = self.kubectl_command(args);
        cmd.args(["-o", "json"]);
        let display = format!("kubectl {}", join(args));
        let out = check(display.clone(), self.server.host.exec(&cmd)?)?;
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Output {
            cmd: display,
            detail: e.to_string(),
        })
    }

    /// The status of Node `name`'s `Ready` condition (`True`, `False`, `Unknown`), `None` while
    /// the Node or the condition does not exist.
    pub fn node_ready(&self, name: &str) -> Result<Option<String>> {
        let out = self.kubectl(&["get", "node", name, "--ignore-not-found", "-o", "json"])?;
        let out = check(format!("kubectl get node {name}"), out)?;
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let node: Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Output {
            cmd: format!("kubectl get node {name}"),
            detail: e.to_string(),
        })?;
        let ready = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["status"].as_str())
            .map(str::to_string);
        Ok(ready)
    }

    /// Waits until Node `name`'s `Ready` condition is `status` (`True`, `False`, `Unknown`),
    /// up to `timeout`.
    pub fn wait_node_ready(&self, name: &str, status: &str, timeout: Duration) -> Result<()> {
        let what = format!("Node {name} to be Ready={status}");
        let mut last = None;
        let result = self.wait_for(&what, timeout, || {
            last = self.node_ready(name)?;
            Ok((last.as_deref() == Some(status)).then_some(()))
        });
        result.map_err(|e| match e {
            Error::Timeout {
                what,
                secs,
                last: l,
            } if l.is_empty() => Error::Timeout {
                what,
                secs,
                last: format!("; last Ready={last:?}"),
            },
            e => e,
        })
    }

    /// [`wait_for`] with the cluster's poll interval. An [`Error::Exited`] from `check` (a
    /// process that had to be running is gone) ends the wait at once; a timeout carries the tail
    /// of every process log.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let waited = wait_for(what, timeout, POLL, || match check() {
            Ok(Some(value)) => Ok(Some(Ok(value))),
            Ok(None) => Ok(None),
            Err(fatal @ Error::Exited { .. }) => Ok(Some(Err(fatal))),
            Err(e) => Err(e),
        });
        match waited {
            Ok(result) => result,
            Err(Error::Timeout { what, secs, last }) => Err(Error::Timeout {
                what,
                secs,
                last: format!("{last}\n{}", crate::netns::log_tails(&self.bed, TAIL)),
            }),
            Err(e) => Err(e),
        }
    }

    fn kubectl_command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into()));
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--request-timeout=15s")
            .args(args)
            // Its own discovery cache; and the namespace has no route to any proxy.
            .env("HOME", &self.kubectl_home)
            .env_remove("KUBECONFIG");
        for proxy in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(proxy);
        }
        cmd
    }

    /// Waits for the admin kubeconfig and `/readyz` = `ok`.
    fn wait_api_ready(&self) -> Result<()> {
        let kubeconfig = self.kubeconfig();
        self.wait_for(
            "the ledge server to answer /readyz",
            self.opts.ready_timeout,
            || {
                if !self.server.proc.is_running() {
                    return Err(exited(&self.server));
                }
                if !kubeconfig.exists() {
                    return Err(Error::Setup("admin.kubeconfig not written yet".into()));
                }
                let out = self.kubectl(&["get", "--raw", "/readyz"])?;
                let out = check("kubectl get --raw /readyz".into(), out)?;
                Ok((String::from_utf8_lossy(&out.stdout).trim() == "ok").then_some(()))
            },
        )
    }

    fn create_token(&self) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args([
            "token",
            "create",
            "--description",
            "ledge-testkit",
            "--data-dir",
        ])
        .arg(&self.server.data_dir);
        let out = self.server.host.exec_ok(&cmd)?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !token.starts_with("K10") {
            return Err(Error::Output {
                cmd: "ledge token create".into(),
                detail: format!("not a join token: {token:?}"),
            });
        }
        Ok(token)
    }

    fn check_agents_running(&self) -> Result<()> {
        for member in std::iter::once(&self.server).chain(&self.agents) {
            if !member.proc.is_running() {
                return Err(exited(member));
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents first (they finish their pods), then the server; all in one grace period.
        for member in self.agents.iter().chain([&self.server]) {
            let _ = member.proc.terminate();
        }
        for member in self.agents.iter().chain([&self.server]) {
            if let Err(e) = member.proc.stop(DROP_GRACE) {
                eprintln!("ledge-testkit: {e}");
            }
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bed", &self.bed.id())
            .field("server", &self.server)
            .field("agents", &self.agents)
            .finish()
    }
}

/// The `ledge` binary under test: `$LEDGE_BIN`, else `$CARGO_TARGET_DIR/debug/ledge` (the
/// workspace's `target/` when that is unset).
pub fn ledge_bin() -> Result<PathBuf> {
    let (path, origin) = match std::env::var_os("LEDGE_BIN") {
        Some(bin) => (PathBuf::from(bin), "LEDGE_BIN"),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
            (target.join("debug/ledge"), "CARGO_TARGET_DIR")
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Setup(format!(
            "the ledge binary is not at {} (from {origin}): build it with `cargo build -p ledge` \
             or set LEDGE_BIN",
            path.display()
        )))
    }
}

/// A duration as a ledge flag value (`ledge_app::parse_duration` takes `ms`).
fn duration_flag(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn exited(member: &Member) -> Error {
    Error::Exited {
        what: format!("ledge on {}", member.name()),
        log: member.proc.log_path().to_path_buf(),
        tail: member.proc.log_tail(TAIL),
    }
}

fn join<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
