//! `ledge`: one binary for the control plane (`ledge server`), the node agent (`ledge agent`)
//! and their tools (`ledge token`, `ledge kubeconfig`). Parses flags and hands over to
//! `ledge-app`.

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
        /// Recent changes kept in memory so watches can resume from an older resourceVersion;
        /// older ones get "410 Expired" and relist.
        #[arg(long, default_value_t = 10_000)]
        watch_history: usize,
    },
    /// Print the admin kubeconfig of a server's data directory.
    Kubeconfig {
        /// The server's data directory [default: as for `ledge server`].
        #[arg(long, env = "LEDGE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Manage join tokens (run beside `ledge server`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run a node agent: join the cluster, register this machine as a Node, keep it Ready.
    Agent {
        /// The server URL, e.g. https://10.0.0.1:6443.
        #[arg(long, env = "LEDGE_SERVER")]
        server: String,
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
    let agent = matches!(cli.command, Command::Agent { .. });
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
            watch_history,
        } => {
            let opts = ledge_app::ServerOptions {
                data_dir: server_dir(data_dir),
                port: https_listen_port,
                bind: bind_address,
                tls_sans: tls_san,
                watch_history,
            };
            runtime()?.block_on(ledge_app::run_server(opts))
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
        } => {
            let opts = ledge_app::AgentCliOptions {
                server,
                token,
                data_dir: data_dir.unwrap_or_else(ledge_app::default_agent_dir),
                node_name,
                node_labels: node_label,
                node_taints: node_taint,
                node_ip,
                lease_interval,
            };
            runtime()?.block_on(ledge_app::run_agent(opts))
        }
    }
}
