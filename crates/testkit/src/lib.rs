//! ledge's multi-host test bed: a `ledge server` and N `ledge agent`s as separate processes, each
//! in its own Linux network namespace on a private Ethernet segment, with the means to break the
//! network between them (cut a link, add delay and loss) and to crash and restart processes.
//!
//! - [`netns`]: the [`Bed`] (namespaces, bridge, links, `cut`/`restore`, `netem`, byte and packet
//!   counters; `Bed::new_in` puts its files on a chosen disk)
//!   and its [`Host`]s (`spawn` a process, `exec` a command inside a namespace).
//! - [`process`]: [`Proc`], a spawned process (`kill`, `stop`, `restart`, log file).
//! - [`cluster`]: [`Cluster`], a server and joined agents on a bed, and the real `kubectl`.
//! - [`etcd`]: [`etcd::EtcdCluster`], a real etcd cluster of N members on loopback (kill and
//!   revive members); needs only Debian's `etcd-server`, not root.
//! - [`ports`]: loopback ports outside the ephemeral range, safe to reuse after a kill.
//! - [`pods`]: pods as kubectl shows them (readiness, the fingerprint of an unrestarted pod).
//! - [`wait_for`]: bounded polling for eventual state.
//!
//! Needs root (namespaces), `ip` and `tc` (iproute2) and `nsenter` (util-linux); never touches
//! the root network namespace. Tests using it are `#[ignore]`d and run by `test.sh`'s e2e stage.
//!
//! ```no_run
//! use std::time::Duration;
//! use ledge_testkit::{Bed, Cluster, ClusterOptions};
//!
//! let opts = ClusterOptions {
//!     lease_interval: Duration::from_secs(4),
//!     node_monitor_grace_period: Duration::from_secs(10),
//!     ..ClusterOptions::default()
//! };
//! let cluster = Cluster::start(Bed::new("demo")?, 2, opts)?;
//! let edge = cluster.agent("edge-1").unwrap();
//! edge.host().cut()?;
//! cluster.wait_node_ready("edge-1", "Unknown", Duration::from_secs(60))?;
//! edge.host().restore()?;
//! cluster.wait_node_ready("edge-1", "True", Duration::from_secs(90))?;
//! // Dropping `cluster` stops every process and deletes every namespace.
//! # Ok::<(), ledge_testkit::Error>(())
//! ```

pub mod cluster;
pub mod error;
pub mod etcd;
pub mod netns;
pub mod pods;
pub mod ports;
pub mod process;
pub mod wait;

pub use cluster::{Cluster, ClusterOptions, Member, ledge_bin};
pub use error::{Error, Result};
pub use netns::{Bed, Host, LinkBytes, LinkCounters, LinkPackets};
pub use process::Proc;
pub use wait::wait_for;
