//! Which server runs the controllers. Every `ledge server` answers API requests, but the
//! controllers, the scheduler and the API server's controller loops (garbage collection,
//! namespace lifecycle, pod GC, node CSR approval) run on one server at a time: the holder of
//! the `kube-system/ledge-controller-manager` Lease (`ledge_controller::leader`).
//!
//! A server's identity is `<hostname>_<uuid>`, as kube-controller-manager's, kept in
//! `<data dir>/identity` so a restarted server finds its own unreleased Lease and takes it over
//! at once instead of waiting for it to expire.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ledge_controller::Client;
use ledge_controller::leader::{self, LeaderConfig};
use tokio_util::sync::CancellationToken;

/// The Lease the controller-running server holds.
pub(crate) const LEASE_NAME: &str = "ledge-controller-manager";

/// The file holding this server's identity, under the data dir.
const IDENTITY_FILE: &str = "identity";

/// What the Lease holder runs.
pub(crate) struct Duties {
    /// The controllers' settings.
    pub(crate) controllers: ledge_controllers::Config,
    /// Whether to run the scheduler (off with `--disable-scheduler`).
    pub(crate) scheduler: bool,
    /// The API server's controller loops.
    pub(crate) loops: ledge_apiserver::system::LeaderLoops,
}

/// This server's campaign for the controller Lease.
pub(crate) struct Election {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Campaign until `parent` is cancelled or [`stop`](Self::stop); while leading, run the
    /// controllers, the scheduler (unless disabled) and the loops.
    pub(crate) fn start(
        identity: String,
        client: Arc<dyn Client>,
        duties: Duties,
        parent: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let Duties {
            controllers,
            scheduler,
            loops,
        } = duties;
        let cancel = parent.child_token();
        let lead_client = client.clone();
        // Each term starts everything afresh (new informers, new caches) and stops it with
        // the term's token.
        let lead = move |term: CancellationToken| {
            ledge_controllers::start(lead_client.clone(), controllers.clone(), term.child_token());
            if scheduler {
                ledge_scheduler::start(lead_client.clone(), term.child_token());
            }
            loops.start(&term);
        };
        let config = LeaderConfig::new(LEASE_NAME, identity);
        let task = tokio::spawn(leader::run(client, config, cancel.clone(), lead));
        Ok(Self { cancel, task })
    }

    /// Stop leading and release the Lease, so another server takes over at once; bounded by
    /// `grace`. Call it while the API still serves.
    pub(crate) async fn stop(self, grace: Duration) {
        self.cancel.cancel();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!(
                lease = LEASE_NAME,
                "the controller lease was not released in time"
            );
        }
    }
}

/// This server's identity from `<data_dir>/identity`, created on first start. An identity
/// naming another host (a data dir copied to a second server) is replaced: two servers with
/// one identity would both believe they lead.
pub(crate) fn load_or_create_identity(data_dir: &Path, host: &str) -> anyhow::Result<String> {
    let path = data_dir.join(IDENTITY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if id
            .strip_prefix(host)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|suffix| !suffix.is_empty())
        {
            return Ok(id.to_string());
        }
    }
    let id = new_identity(host, &mut rand::rng());
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// `<host>_<random UUID>` (upstream `hostname + "_" + uuid.NewUUID()`).
fn new_identity(host: &str, rng: &mut impl rand::Rng) -> String {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    // A version 4 (random) UUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{host}_{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_kept() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = load_or_create_identity(dir.path(), "edge-1")?;
        assert!(first.starts_with("edge-1_"), "{first}");
        assert_eq!(first.len(), "edge-1_".len() + 36, "{first}");
        assert_eq!(load_or_create_identity(dir.path(), "edge-1")?, first);
        Ok(())
    }

    #[test]
    fn an_identity_of_another_host_is_replaced() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let copied = load_or_create_identity(dir.path(), "edge-1")?;
        let own = load_or_create_identity(dir.path(), "edge-2")?;
        assert!(own.starts_with("edge-2_"), "{own}");
        assert_ne!(own, copied);
        assert_eq!(load_or_create_identity(dir.path(), "edge-2")?, own);
        Ok(())
    }

    #[test]
    fn identities_differ_between_servers() {
        let mut rng = rand::rng();
        assert_ne!(new_identity("h", &mut rng), new_identity("h", &mut rng));
    }
}
