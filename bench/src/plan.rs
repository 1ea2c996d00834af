//! The workload both systems get (one `Plan`) and what one system's run measured (`Figures`).

use std::time::Duration;

use crate::load::{LoadStats, Percentiles, WatchStats};
use crate::proc::CpuUse;

/// The workload, identical for ledge and the etcd baseline. Defaults are issue 2's scenarios.
#[derive(Debug, Clone, clap::Args)]
pub struct Plan {
    /// Concurrent clients in the create, get and list phases.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Connections the clients share (HTTP/2 for ledge, gRPC channels for etcd).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// ConfigMaps (etcd: keys) created in the create phase and held for the loaded RSS.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Bytes of data per ConfigMap (etcd: bytes per value).
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Items in the namespace (etcd: prefix) that the list phase reads whole.
    #[arg(long, default_value_t = 500)]
    pub list_items: usize,
    /// Concurrent watchers on one namespace (etcd: prefix).
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Connections the watchers share (at most 100 watch streams per connection).
    #[arg(long, default_value_t = 10)]
    pub watch_connections: usize,
    /// Measured writes in the watch fan-out phase.
    #[arg(long, default_value_t = 30)]
    pub watch_writes: usize,
    /// Sequential small updates in the disk-write phase.
    #[arg(long, default_value_t = 1000)]
    pub updates: usize,
    /// Seconds of the get phase.
    #[arg(long, default_value_t = 5)]
    pub get_secs: u64,
    /// Seconds of the list phase.
    #[arg(long, default_value_t = 5)]
    pub list_secs: u64,
    /// Seconds to let a server settle before reading its memory or disk counters.
    #[arg(long, default_value_t = 2)]
    pub settle_secs: u64,
}

impl Plan {
    /// The settle pause.
    pub fn settle(&self) -> Duration {
        Duration::from_secs(self.settle_secs)
    }
}

/// Everything measured on one system.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Name and version of what ran.
    pub version: String,
    /// RSS after start, ready and settled, bytes.
    pub idle_rss: u64,
    /// RSS holding `objects` items after the create phase, settled, bytes.
    pub loaded_rss: u64,
    /// Peak RSS over the whole run (`VmHWM`), bytes.
    pub peak_rss: u64,
    /// Size of the data directory holding `objects` items, bytes.
    pub disk_bytes: u64,
    /// Create phase.
    pub create: LoadStats,
    /// Get phase.
    pub get: LoadStats,
    /// List phase.
    pub list: LoadStats,
    /// Bytes of one list answer.
    pub list_response_bytes: usize,
    /// Watch fan-out phase.
    pub watch: WatchStats,
    /// Sequential small updates done in the disk-write phase.
    pub updates: usize,
    /// Bytes of the stored object (ledge) or value (etcd) per update.
    pub update_object_bytes: usize,
    /// `write_bytes` growth over the updates, bytes.
    pub update_write_bytes: u64,
    /// Latency of the sequential updates.
    pub update_latency: Percentiles,
    /// CPU used from the server's start to its stop.
    pub cpu: CpuUse,
}
