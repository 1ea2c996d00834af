//! `ledge`: one binary for the control plane (`ledge server`), the node agent (`ledge agent`),
//! both at once (`ledge up`) and their tools (`ledge token`, `ledge kubeconfig`, `ledge image`).
//! Parses flags and hands over to `ledge-app`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A Kubernetes-compatible orchestrator for fleets of edge devices.
#[derive(Parser)]
#[command(name = "ledge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node cluster: the control plane and a node agent in one process.
    Up {
        /// Base directory: the server keeps its state in DIR/server, the node in DIR/agent
        /// [default: /var/lib/ledge as root, else ~/.ledge]
        #[arg(long, env = "LEDGE_HOME")]
        data_dir: Option<PathBuf>,
        /// HTTPS port of the Kubernetes API.
        #[arg(long, default_value_t = 6443)]
        https_listen_port: u16,
        /// Address the API listens on.
        #[arg(long, default_value = "0.0.0.0")]
        bind_address: IpAddr,
        /// Node name [default: the host name].
        #[arg(long)]
        node_name: Option<String>,
        /// Node label key=value (repeatable).
        #[arg(long = "node-label")]
        node_label: Vec<String>,
        /// First delay before a failed container is restarted; it doubles on each crash up to
        /// 30 times this (kubelet: 10s up to 5m).
        #[arg(long, default_value = "10s", value_parser = ledge_app::parse_duration)]
        restart_backoff: Duration,
    },
    /// Run the control plane: the Kubernetes API over HTTPS on an embedded store.
    Server {
        /// Data directory for the store, certificates and admin kubeconfig
        /// [default: /var/lib/ledge/server as root, else ~/.ledge/server]
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// HTTPS port of the Kubernetes API.
        #[arg(long, default_value_t = 6443)]
        https_listen_port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind_address: IpAddr,
        /// Extra host name or IP for the serving certificate (repeatable).
        #[arg(long = "tls-san")]
        tls_san: Vec<String>,
        /// The IP agents and other servers reach this server at, published in the `kubernetes`
        /// Endpoints [default: the bind address, or the address of the default route].
        #[arg(long)]
        advertise_address: Option<IpAddr>,
        /// Recent changes kept in memory so watches can resume from an older resourceVersion;
        /// older ones get "410 Expired" and relist.
        #[arg(long, default_value_t = 10_000)]
        watch_history: usize,
        /// How long a node's Lease may go unrenewed before the node is marked Unknown and
        /// tainted unreachable (seconds, or a duration such as 40s, 2m). Pods are not evicted
        /// for it unless they tolerate the taint with tolerationSeconds.
        #[arg(long, default_value = "40s", value_parser = grace_period)]
        node_monitor_grace_period: Duration,
        /// Run no scheduler: pods stay Pending until another scheduler binds them (or a server
        /// started without this flag takes the controller Lease).
        #[arg(long)]
        disable_scheduler: bool,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Move a cluster between datastores (see `ledge datastore migrate --help`).
    Datastore {
        #[command(subcommand)]
        command: DatastoreCommand,
    },
    /// Print the admin kubeconfig of a server's data directory.
    Kubeconfig {
        /// The server's data directory [default: as for `ledge server`].
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Manage the node's image store: Wasm modules, components and executables pods run.
    Image {
        #[command(subcommand)]
        command: ImageCli,
    },
    /// Manage join tokens (run beside `ledge server`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run a node agent: join the cluster, register this machine as a Node, keep it Ready.
    Agent {
        /// The server URL, e.g. https://10.0.0.1:6443; several may be given (repeat the flag or
        /// separate them by commas), the first is tried first. The agent also learns every
        /// server of the cluster and fails over between them on its own. While no server
        /// answers it waits and retries every few seconds (saying so once), running what the
        /// node already ran.
        #[arg(long, env = "LEDGE_SERVER", required = true)]
        server: Vec<String>,
        /// Join token from `ledge token create` (only needed until the node has a certificate).
        #[arg(long, env = "LEDGE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Data directory for the node's credentials
        /// [default: /var/lib/ledge/agent as root, else ~/.ledge/agent]
        #[arg(long, env = "LEDGE_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Node name [default: the host name].
        #[arg(long)]
        node_name: Option<String>,
        /// Node label key=value (repeatable).
        #[arg(long = "node-label")]
        node_label: Vec<String>,
        /// Taint to register the node with, key=value:Effect (repeatable).
        #[arg(long = "node-taint")]
        node_taint: Vec<String>,
        /// The node's InternalIP [default: its address towards the server or the default route].
        #[arg(long)]
        node_ip: Option<IpAddr>,
        /// How often the node Lease is renewed.
        #[arg(long, default_value = "10s", value_parser = ledge_app::parse_duration)]
        lease_interval: Duration,
        /// First delay before a failed container is restarted; it doubles on each crash up to
        /// 30 times this (kubelet: 10s up to 5m).
        #[arg(long, default_value = "10s", value_parser = ledge_app::parse_duration)]
        restart_backoff: Duration,
        /// Port on 127.0.0.1 of the local API endpoint for the node's workloads: requests are
        /// forwarded to the server as the node, and reads of the node's own objects are answered
        /// from its node store while the server is unreachable (0 turns it off).
        #[arg(long, default_value_t = 10261)]
        local_api_port: u16,
    },
}

#[derive(Subcommand)]
enum ImageCli {
    /// Import a Wasm module, a Wasm component, an OCI image archive holding one, or a native
    /// executable as an image.
    ///
    /// An OCI archive (an `oci-layout` tar, as `oras`, `skopeo` or `docker save` ≥ 25 write)
    /// gives the Wasm layer of its manifest: the only one, or the one whose
    /// `org.opencontainers.image.ref.name` is the tag of --name; every blob read is checked
    /// against its digest. Container images (file-system layers) are refused: ledge has no
    /// container runtime yet. Wasm is compiled for this node on import, into the agent's
    /// compiled-code cache, so pods start without compiling; a Wasm binary that does not
    /// compile is refused.
    Import {
        /// The file to import.
        file: PathBuf,
        /// The reference pods name in `image:` (e.g. hello:1).
        #[arg(long)]
        name: String,
        /// The agent's data directory [default: /var/lib/ledge/agent as root, else ~/.ledge/agent]
        #[arg(long, env = "LEDGE_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List the images on this node.
    List {
        /// The agent's data directory [default: as for import].
        #[arg(long, env = "LEDGE_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Remove an image reference from this node.
    Rm {
        /// The reference.
        name: String,
        /// The agent's data directory [default: as for import].
        #[arg(long, env = "LEDGE_AGENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a join token and print it (K10<CA hash>::<id>.<secret>).
    Create {
        /// The server's data directory [default: as for `ledge server`].
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// How long the token is valid (e.g. 24h, 30m; 0 = forever).
        #[arg(long, default_value = "24h", value_parser = ledge_app::parse_duration)]
        ttl: Duration,
        /// A note shown by `ledge token list`.
        #[arg(long)]
        description: Option<String>,
    },
    /// List join tokens: id, time left, expiry, description.
    List {
        /// The server's data directory [default: as for `ledge server`].
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Delete a join token (by id or whole token).
    Delete {
        /// The server's data directory [default: as for `ledge server`].
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The token id (or the whole token).
        id: String,
    },
}

/// Whole seconds (`40`) or a duration (`40s`, `2m`); never zero.
#[derive(Subcommand)]
enum DatastoreCommand {
    /// Copy a stopped server's embedded store into an empty etcd cluster, keeping every object,
    /// its uid and its resourceVersion; then start servers with --datastore-endpoint.
    Migrate {
        /// The server's data directory (the server must be stopped).
        #[arg(long)]
        from: PathBuf,
        /// The etcd cluster: etcd://host:port[,host:port...].
        #[arg(long, value_parser = etcd_members)]
        to: EtcdMembers,
        /// CA certificate (PEM) that signed etcd's serving certificates; turns on TLS.
        #[arg(long)]
        datastore_cafile: Option<PathBuf>,
        /// Client certificate (PEM) for etcd.
        #[arg(long, requires = "datastore_keyfile")]
        datastore_certfile: Option<PathBuf>,
        /// Key (PEM) of --datastore-certfile.
        #[arg(long, requires = "datastore_certfile")]
        datastore_keyfile: Option<PathBuf>,
    },
}

/// Where `ledge server` keeps the cluster state (flags as K3s names them).
#[derive(clap::Args)]
struct DatastoreArgs {
    /// Keep the cluster state in etcd instead of the embedded store, so several servers serve
    /// one cluster: etcd://host:port[,host:port...] (every member of the etcd cluster);
    /// etcds:// for TLS, which needs --datastore-cafile.
    #[arg(long, env = "LEDGE_DATASTORE_ENDPOINT", value_parser = etcd_members)]
    datastore_endpoint: Option<EtcdMembers>,
    /// CA certificate (PEM) that signed etcd's serving certificates; turns on TLS to etcd.
    #[arg(long, requires = "datastore_endpoint")]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate authentication.
    #[arg(long, requires_all = ["datastore_endpoint", "datastore_keyfile"])]
    datastore_certfile: Option<PathBuf>,
    /// Key (PEM) of --datastore-certfile.
    #[arg(long, requires = "datastore_certfile")]
    datastore_keyfile: Option<PathBuf>,
    /// Cluster token shared by the servers of one datastore. The first server generates one
    /// (kept in <data dir>/token) unless given; every further server must be given it.
    #[arg(long, env = "LEDGE_TOKEN", requires = "datastore_endpoint")]
    token: Option<String>,
}

/// The members named by `--datastore-endpoint` (one value holding several, for clap), and
/// whether its scheme (`etcds://`, `https://`) asked for TLS.
#[derive(Clone, Debug)]
struct EtcdMembers {
    endpoints: Vec<String>,
    tls: bool,
}

fn etcd_members(text: &str) -> Result<EtcdMembers, String> {
    let tls = text.starts_with("etcds://") || text.starts_with("https://");
    ledge_app::parse_etcd_endpoints(text).map(|endpoints| EtcdMembers { endpoints, tls })
}

/// etcd options from the datastore flags.
///
/// # Errors
/// A TLS scheme without `--datastore-cafile`: ledge trusts no CA by default, so it would
/// otherwise have to talk plaintext to an endpoint the user asked to reach over TLS.
fn etcd_options(
    members: &EtcdMembers,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> anyhow::Result<ledge_app::EtcdOptions> {
    if members.tls && ca_file.is_none() {
        anyhow::bail!(
            "the datastore endpoint asks for TLS, so pass --datastore-cafile with the CA that \
             signed etcd's certificates (or use etcd:// for plaintext)"
        );
    }
    let mut etcd = ledge_app::EtcdOptions::new(members.endpoints.clone());
    etcd.tls = ledge_app::EtcdTls {
        ca_file,
        cert_file,
        key_file,
    };
    Ok(etcd)
}

impl DatastoreArgs {
    fn options(&self) -> anyhow::Result<ledge_app::DatastoreOptions> {
        let Some(members) = &self.datastore_endpoint else {
            return Ok(ledge_app::DatastoreOptions::Embedded);
        };
        Ok(ledge_app::DatastoreOptions::Etcd(etcd_options(
            members,
            self.datastore_cafile.clone(),
            self.datastore_certfile.clone(),
            self.datastore_keyfile.clone(),
        )?))
    }
}

fn grace_period(text: &str) -> Result<Duration, String> {
    let d = match text.trim().parse::<u64>() {
        Ok(n) => Duration::from_secs(n),
        Err(_) => ledge_app::parse_duration(text)?,
    };
    if d.is_zero() {
        return Err("the grace period must be longer than zero".into());
    }
    Ok(d)
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() {
    let cli = Cli::parse();
    // The agent says what it does (joining, registering, reconnecting); the rest stays quiet.
    let agent = matches!(cli.command, Command::Agent { .. } | Command::Up { .. });
    init_logging(if agent {
        "warn,ledge_agent=info,ledge_app=info"
    } else {
        "warn"
    });
    if let Err(e) = run(cli.command) {
        // One line, cause chain included: what went wrong and what to do about it.
        eprintln!("error: {}", ledge_app::error_line(&e));
        std::process::exit(1);
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let runtime = || tokio::runtime::Runtime::new();
    let server_dir = |d: Option<PathBuf>| d.unwrap_or_else(ledge_app::default_server_dir);
    match command {
        Command::Server {
            data_dir,
            https_listen_port,
            bind_address,
            tls_san,
            advertise_address,
            watch_history,
            node_monitor_grace_period,
            disable_scheduler,
            datastore,
        } => {
            let opts = ledge_app::ServerOptions {
                data_dir: server_dir(data_dir),
                port: https_listen_port,
                bind: bind_address,
                tls_sans: tls_san,
                advertise_address,
                watch_history,
                node_monitor_grace_period,
                token: datastore.token.clone(),
                datastore: datastore.options()?,
                disable_scheduler,
            };
            runtime()?.block_on(ledge_app::run_server(opts))
        }
        Command::Up {
            data_dir,
            https_listen_port,
            bind_address,
            node_name,
            node_label,
            restart_backoff,
        } => {
            let base = data_dir.unwrap_or_else(|| {
                let server = ledge_app::default_server_dir();
                server.parent().map(PathBuf::from).unwrap_or(server)
            });
            let opts = ledge_app::UpOptions {
                server: ledge_app::ServerOptions {
                    data_dir: base.join("server"),
                    port: https_listen_port,
                    bind: bind_address,
                    tls_sans: Vec::new(),
                    advertise_address: None,
                    watch_history: 10_000,
                    node_monitor_grace_period: Duration::from_secs(40),
                    datastore: ledge_app::DatastoreOptions::Embedded,
                    token: None,
                    disable_scheduler: false,
                },
                data_dir: base,
                node_name,
                node_labels: node_label,
                restart_backoff,
            };
            runtime()?.block_on(ledge_app::run_up(opts))
        }
        Command::Image { command } => {
            let agent_dir = |d: Option<PathBuf>| d.unwrap_or_else(ledge_app::default_agent_dir);
            let (dir, cmd) = match command {
                ImageCli::Import {
                    file,
                    name,
                    data_dir,
                } => (
                    agent_dir(data_dir),
                    ledge_app::ImageCommand::Import { file, name },
                ),
                ImageCli::List { data_dir } => (agent_dir(data_dir), ledge_app::ImageCommand::List),
                ImageCli::Rm { name, data_dir } => (
                    agent_dir(data_dir),
                    ledge_app::ImageCommand::Remove { name },
                ),
            };
            ledge_app::run_image(&dir, cmd)
        }
        Command::Datastore {
            command:
                DatastoreCommand::Migrate {
                    from,
                    to,
                    datastore_cafile,
                    datastore_certfile,
                    datastore_keyfile,
                },
        } => {
            let etcd = etcd_options(&to, datastore_cafile, datastore_certfile, datastore_keyfile)?;
            runtime()?.block_on(ledge_app::migrate(&from, &etcd))
        }
        Command::Kubeconfig { data_dir } => ledge_app::print_kubeconfig(&server_dir(data_dir)),
        Command::Token { command } => match command {
            TokenCommand::Create {
                data_dir,
                ttl,
                description,
            } => {
                let opts = ledge_app::TokenOptions {
                    data_dir: server_dir(data_dir),
                    ttl,
                    description,
                };
                let token = runtime()?.block_on(ledge_app::create_token(&opts))?;
                println!("{token}");
                Ok(())
            }
            TokenCommand::List { data_dir } => {
                runtime()?.block_on(ledge_app::list_tokens(&server_dir(data_dir)))
            }
            TokenCommand::Delete { data_dir, id } => {
                runtime()?.block_on(ledge_app::delete_token(&server_dir(data_dir), &id))
            }
        },
        Command::Agent {
            server,
            token,
            data_dir,
            node_name,
            node_label,
            node_taint,
            node_ip,
            lease_interval,
            restart_backoff,
            local_api_port,
        } => {
            let opts = ledge_app::AgentCliOptions {
                server: server.join(","),
                token,
                data_dir: data_dir.unwrap_or_else(ledge_app::default_agent_dir),
                node_name,
                node_labels: node_label,
                node_taints: node_taint,
                node_ip,
                lease_interval,
                restart_backoff,
                local_api_port,
            };
            runtime()?.block_on(ledge_app::run_agent(opts))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agents_take_several_servers() {
        let cli = Cli::try_parse_from([
            "ledge",
            "agent",
            "--server",
            "https://10.0.0.1:6443,https://10.0.0.2:6443",
            "--server",
            "https://[fd00::3]:6443",
        ])
        .unwrap();
        let Command::Agent { server, .. } = cli.command else {
            panic!("not the agent command");
        };
        // Handed to the agent as one comma-separated list, as `LEDGE_SERVER` holds it.
        assert_eq!(
            server.join(","),
            "https://10.0.0.1:6443,https://10.0.0.2:6443,https://[fd00::3]:6443"
        );
        assert!(
            Cli::try_parse_from(["ledge", "agent"]).is_err()
                || std::env::var_os("LEDGE_SERVER").is_some()
        );
    }

    #[test]
    fn datastore_flags_parse_into_etcd_options() {
        let cli = Cli::try_parse_from([
            "ledge",
            "server",
            "--datastore-endpoint",
            "etcd://127.0.0.1:2379,127.0.0.1:2381",
            "--token",
            "t",
        ])
        .unwrap();
        let Command::Server { datastore, .. } = cli.command else {
            panic!("not the server command");
        };
        let Ok(ledge_app::DatastoreOptions::Etcd(etcd)) = datastore.options() else {
            panic!("not etcd");
        };
        assert_eq!(etcd.endpoints, ["127.0.0.1:2379", "127.0.0.1:2381"]);
        assert!(etcd.tls.ca_file.is_none());
        assert!(
            Cli::try_parse_from(["ledge", "server", "--token", "t"]).is_err(),
            "--token without a shared datastore"
        );
        assert!(Cli::try_parse_from(["ledge", "server", "--datastore-endpoint", "x"]).is_err());
    }

    #[test]
    fn a_tls_datastore_endpoint_needs_its_ca() {
        let datastore = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["ledge", "server"], args].concat()).unwrap();
            let Command::Server { datastore, .. } = cli.command else {
                panic!("not the server command");
            };
            datastore.options()
        };
        let err = datastore(&["--datastore-endpoint", "etcds://e1:2379"]).unwrap_err();
        assert!(err.to_string().contains("--datastore-cafile"), "{err}");
        assert!(datastore(&["--datastore-endpoint", "https://e1:2379"]).is_err());
        let Ok(ledge_app::DatastoreOptions::Etcd(etcd)) = datastore(&[
            "--datastore-endpoint",
            "etcds://e1:2379",
            "--datastore-cafile",
            "/etc/etcd/ca.crt",
        ]) else {
            panic!("etcds:// with a CA is refused");
        };
        assert_eq!(etcd.endpoints, ["e1:2379"]);
        assert!(etcd.tls.ca_file.is_some());
    }
}
