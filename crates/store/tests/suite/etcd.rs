//! The shared cases on the etcd backend against a real single-member etcd per case, and what
//! only the etcd backend promises: watches that resume across a member's crash, writes that fail
//! fast with `Unavailable` when quorum is lost and succeed again when it returns, and a compactor
//! that moves the compacted revision.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use ledge_store::{EtcdOptions, EtcdStore, Store, StoreError};
use ledge_testkit::etcd::EtcdCluster;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, next_event};

/// A store on its own etcd: a fresh cluster per case, so compaction in one case cannot touch
/// another.
pub struct Etcd {
    // Field order: the store closes before etcd is killed, the directory goes last.
    store: EtcdStore,
    cluster: EtcdCluster,
    _dir: TempDir,
}

async fn connect(cluster: &EtcdCluster) -> anyhow::Result<EtcdStore> {
    let opts = EtcdOptions::new(cluster.endpoints());
    EtcdStore::connect(&opts)
        .await
        .with_context(|| format!("cannot connect to etcd at {}", cluster.url()))
}

async fn start_cluster(size: usize) -> anyhow::Result<(TempDir, EtcdCluster)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let cluster = tokio::task::spawn_blocking(move || EtcdCluster::start(&path, size)).await??;
    Ok((dir, cluster))
}

impl Backend for Etcd {
    async fn start() -> anyhow::Result<Self> {
        let (dir, cluster) = start_cluster(1).await?;
        let store = connect(&cluster).await?;
        Ok(Etcd {
            store,
            cluster,
            _dir: dir,
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    fn prefix(&self) -> &str {
        "/registry/"
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.store = connect(&self.cluster).await?;
        Ok(())
    }
}

crate::store_suite!(Etcd);

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Run a blocking cluster operation (kill, revive) off the runtime.
async fn on_cluster<T: Send + 'static>(
    cluster: &Arc<EtcdCluster>,
    op: impl FnOnce(&EtcdCluster) -> ledge_testkit::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let cluster = cluster.clone();
    Ok(tokio::task::spawn_blocking(move || op(&cluster)).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_loss_fails_writes_fast_and_watches_resume_after_it() -> anyhow::Result<()> {
    let (_dir, cluster) = start_cluster(3).await?;
    let cluster = Arc::new(cluster);
    let mut opts = EtcdOptions::new(cluster.endpoints());
    opts.request_timeout = Duration::from_secs(3);
    let store = EtcdStore::connect(&opts).await?;
    let key = "/registry/configmaps/default/ha";
    let first = store.create(key, value("0")).await?;
    let mut watch = store.watch("/registry/", first.mod_revision)?;

    // One member down: nothing visible.
    on_cluster(&cluster, |c| c.kill(0)).await?;
    let second = store.update(key, value("1"), first.mod_revision).await?;
    let seen = next_event(&mut watch).await?;
    ensure!(
        seen.kv == second,
        "watch after one member died saw {seen:?}"
    );

    // Two down: no quorum. A write fails with Unavailable (not a hang, not a backend error).
    // Like any write whose answer was lost, it may still be applied once quorum returns: the
    // member that took it keeps it in its log.
    on_cluster(&cluster, |c| c.kill(1)).await?;
    match store.update(key, value("2"), second.mod_revision).await {
        Err(StoreError::Unavailable(_)) => {}
        other => bail!("a write without quorum answered {other:?}"),
    }

    // Quorum back: writes succeed and the same watch delivers them, without a gap or a repeat.
    on_cluster(&cluster, |c| c.revive(0)).await?;
    on_cluster(&cluster, |c| c.revive(1)).await?;
    let third = retry_update(&store, key, "3").await?;
    let mut seen = next_event(&mut watch).await?;
    if seen.kv.value == value("2") {
        ensure!(
            seen.prev.as_ref() == Some(&second),
            "the late write did not follow the last acknowledged one: {seen:?}"
        );
        seen = next_event(&mut watch).await?;
    }
    ensure!(
        seen.kv == third,
        "watch after quorum returned saw {seen:?}, wrote {third:?}"
    );
    Ok(())
}

/// Update `key` to `text`, retrying `Unavailable` while etcd elects a leader.
async fn retry_update(
    store: &EtcdStore,
    key: &str,
    text: &str,
) -> anyhow::Result<ledge_store::KeyValue> {
    for _ in 0..60 {
        let current = store.get(key).await;
        match current {
            Ok(Some(kv)) => match store.update(key, value(text), kv.mod_revision).await {
                Ok(done) => return Ok(done),
                Err(StoreError::Unavailable(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Ok(None) => bail!("{key} vanished"),
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("etcd did not accept writes again within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_compacts_and_a_new_server_learns_the_compacted_revision() -> anyhow::Result<()> {
    let backend = Etcd::start().await?;
    let store = backend.store.clone();
    let cancel = CancellationToken::new();
    let compactor = tokio::spawn(
        store
            .clone()
            .run_compactor(Duration::from_millis(200), cancel.clone()),
    );
    let mut last = 0;
    for i in 0..20 {
        last = store
            .create(&format!("/registry/c/{i}"), value("x"))
            .await?
            .mod_revision;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The compactor trails one interval behind; wait until it has passed an early write.
    let mut compacted = 0;
    for _ in 0..100 {
        compacted = store.compacted_revision();
        if compacted > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    compactor.await?;
    ensure!(compacted > 1, "the compactor never compacted");
    ensure!(compacted <= last, "compacted past the newest write");

    let later = connect(&backend.cluster).await?;
    ensure!(
        later.compacted_revision() >= compacted,
        "a new connection learned compacted revision {}, not {compacted}",
        later.compacted_revision()
    );
    match later.watch("/registry/", 0) {
        Err(StoreError::Compacted { .. }) => Ok(()),
        Err(e) => bail!("watch from 0 failed with {e}"),
        Ok(_) => bail!("watch from before compaction was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_is_spoken_and_required() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    let (cluster, files) =
        tokio::task::spawn_blocking(move || EtcdCluster::start_tls(&path, 1)).await??;
    let mut opts = EtcdOptions::new(cluster.endpoints());
    opts.tls = ledge_store::etcd::EtcdTls {
        ca_file: Some(files.ca.clone()),
        cert_file: Some(files.client_cert.clone()),
        key_file: Some(files.client_key.clone()),
    };
    let store = EtcdStore::connect(&opts).await?;
    let kv = store.create("/registry/tls/one", value("x")).await?;
    ensure!(store.get("/registry/tls/one").await?.as_ref() == Some(&kv));

    // Without a client certificate etcd refuses the connection: an error, not a hang.
    let mut anonymous = opts.clone();
    anonymous.tls.cert_file = None;
    anonymous.tls.key_file = None;
    anonymous.request_timeout = Duration::from_secs(2);
    ensure!(
        EtcdStore::connect(&anonymous).await.is_err(),
        "etcd with --client-cert-auth accepted a client without a certificate"
    );
    drop(cluster);
    Ok(())
}
