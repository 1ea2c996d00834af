//! `ledge`: one binary for the control plane (`ledge server`) and its tools. Parses flags and
//! hands over to `ledge-app`.

use std::net::IpAddr;
use std::path::PathBuf;

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
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Server {
            data_dir,
            https_listen_port,
            bind_address,
            tls_san,
            watch_history,
        } => {
            let opts = ledge_app::ServerOptions {
                data_dir: data_dir.unwrap_or_else(ledge_app::default_server_dir),
                port: https_listen_port,
                bind: bind_address,
                tls_sans: tls_san,
                watch_history,
            };
            tokio::runtime::Runtime::new()?.block_on(ledge_app::run_server(opts))
        }
        Command::Kubeconfig { data_dir } => {
            ledge_app::print_kubeconfig(&data_dir.unwrap_or_else(ledge_app::default_server_dir))
        }
    }
}
