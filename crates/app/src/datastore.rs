//! Which store a server runs on: the embedded one-file store (default) or an etcd cluster that
//! several servers share (`--datastore-endpoint etcd://...`).
//!
//! Opening etcd waits for it: an unreachable cluster at start is reported once with what to
//! check and retried every [`CONNECT_RETRY`], so a server started before its etcd comes up
//! joins it instead of crash-looping. On etcd the server also runs the shared compactor and a
//! health probe that keeps [`Store::degraded`] current.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ledge_store::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How often an unreachable etcd is tried again at start.
const CONNECT_RETRY: Duration = Duration::from_secs(2);

/// How often etcd's history is compacted (upstream kube-apiserver's default).
const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// How often an idle server checks that etcd has a quorum (for the read warning).
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Where a server keeps the cluster state.
#[derive(Clone, Debug, Default)]
pub enum DatastoreOptions {
    /// The embedded store in `<data dir>/db/ledge.redb`: one server.
    #[default]
    Embedded,
    /// An etcd cluster, shared by every server started with the same endpoints.
    Etcd(EtcdOptions),
}

impl DatastoreOptions {
    /// Whether several servers may share this store.
    pub fn is_shared(&self) -> bool {
        matches!(self, DatastoreOptions::Etcd(_))
    }
}

/// An open store.
pub(crate) enum Datastore {
    Embedded(EmbeddedStore),
    Etcd(EtcdStore),
}

impl Datastore {
    /// Open the store `opts` names; on etcd, also start the compactor (until `cancel`).
    pub(crate) async fn open(
        opts: &DatastoreOptions,
        data_dir: &Path,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Datastore> {
        match opts {
            DatastoreOptions::Embedded => open_embedded(data_dir).await.map(Datastore::Embedded),
            DatastoreOptions::Etcd(etcd) => {
                let store = connect_etcd(etcd).await?;
                tokio::spawn(
                    store
                        .clone()
                        .run_compactor(COMPACTION_INTERVAL, cancel.child_token()),
                );
                tokio::spawn(
                    store
                        .clone()
                        .run_health_probe(HEALTH_INTERVAL, cancel.child_token()),
                );
                Ok(Datastore::Etcd(store))
            }
        }
    }

    /// The store as the API server uses it.
    pub(crate) fn shared(&self) -> Arc<dyn Store> {
        match self {
            Datastore::Embedded(s) => Arc::new(s.clone()),
            Datastore::Etcd(s) => Arc::new(s.clone()),
        }
    }

    /// Close the store: the embedded one flushes and releases its file; an etcd connection
    /// has nothing to flush.
    pub(crate) async fn shutdown(&self) -> Result<(), StoreError> {
        match self {
            Datastore::Embedded(s) => s.shutdown().await,
            Datastore::Etcd(_) => Ok(()),
        }
    }
}

async fn open_embedded(data_dir: &Path) -> anyhow::Result<EmbeddedStore> {
    let dir = data_dir.join("db");
    let path = dir.join("ledge.redb");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(&path, EmbeddedOptions::default())
            .with_context(|| format!("cannot open the store at {}", path.display()))
    })
    .await?
}

/// Connect to etcd, waiting while it is unreachable; fail at once on bad options.
async fn connect_etcd(opts: &EtcdOptions) -> anyhow::Result<EtcdStore> {
    let mut attempts: u32 = 0;
    loop {
        match EtcdStore::connect(opts).await {
            Ok(store) => {
                if attempts > 0 {
                    println!("etcd is reachable; starting");
                }
                return Ok(store);
            }
            Err(StoreError::Unavailable(why)) => {
                // Say it once, then every minute: the user learns what to fix without a flood.
                if attempts.is_multiple_of(30) {
                    println!(
                        "cannot reach etcd at {} ({why}); retrying every {}s — check \
                         --datastore-endpoint and that a quorum of members is up",
                        opts.endpoints.join(","),
                        CONNECT_RETRY.as_secs()
                    );
                }
                attempts += 1;
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot use etcd at {}", opts.endpoints.join(",")));
            }
        }
    }
}
