//! The shared cases on the embedded backend, and what only the embedded backend promises: group
//! commit, history that starts at open, shutdown, and corrupt rows reported instead of panicking.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use ledge_store::embedded::Stats;
use ledge_store::{EmbeddedOptions, EmbeddedStore, Store, StoreError};
use tempfile::TempDir;

use crate::cases::hammer;
use crate::harness::{Backend, next_event, next_events};

/// An embedded store in its own temporary directory.
pub struct Embedded {
    dir: TempDir,
    store: EmbeddedStore,
}

impl Embedded {
    fn path(&self) -> PathBuf {
        db_path(self.dir.path())
    }
}

impl Backend for Embedded {
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = open(&db_path(dir.path()), EmbeddedOptions::default()).await?;
        Ok(Embedded { dir, store })
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    fn prefix(&self) -> &str {
        "/registry/"
    }

    async fn restart(&mut self) -> anyhow::Result<()> {
        self.store.shutdown().await?;
        self.store = open(&self.path(), EmbeddedOptions::default()).await?;
        Ok(())
    }
}

crate::store_suite!(Embedded);

fn db_path(dir: &Path) -> PathBuf {
    dir.join("store.redb")
}

/// Open off the runtime: opening does blocking IO.
pub async fn open(path: &Path, opts: EmbeddedOptions) -> anyhow::Result<EmbeddedStore> {
    let path = path.to_owned();
    Ok(tokio::task::spawn_blocking(move || EmbeddedStore::open(&path, opts)).await??)
}

fn value(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_commits_under_concurrent_load() -> anyhow::Result<()> {
    let b = Embedded::start().await?;
    let acked = hammer(&b.store(), "/load/", 32, 200).await?;
    let Stats { commits, writes } = b.store.stats();
    ensure!(
        writes == acked.len() as u64,
        "stats counted {writes} writes for {} acks",
        acked.len()
    );
    ensure!(
        commits < writes,
        "no batching: {commits} commits for {writes} writes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_writes_commit_one_by_one_and_refusals_commit_nothing() -> anyhow::Result<()> {
    let b = Embedded::start().await?;
    let store = b.store();
    let mut kv = store.create("/k", value("0")).await?;
    for i in 1..10 {
        kv = store
            .update("/k", value(&i.to_string()), kv.mod_revision)
            .await?;
    }
    ensure!(
        b.store.stats()
            == Stats {
                commits: 10,
                writes: 10
            },
        "{:?}",
        b.store.stats()
    );
    ensure!(store.update("/k", value("stale"), 1).await.is_err());
    ensure!(store.create("/k", value("dup")).await.is_err());
    ensure!(
        b.store.stats()
            == Stats {
                commits: 10,
                writes: 10
            },
        "a refused write committed"
    );
    ensure!(store.current_revision() == 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_store_continues_revisions_but_has_no_history() -> anyhow::Result<()> {
    let mut b = Embedded::start().await?;
    let store = b.store();
    ensure!(
        store.current_revision() == 0 && store.compacted_revision() == 0,
        "a new store starts at 0"
    );
    for i in 0..5 {
        store.create(&format!("/k{i}"), value("x")).await?;
    }
    ensure!(store.current_revision() == 5);
    drop(store);
    b.restart().await?;
    let store = b.store();
    ensure!(
        store.current_revision() == 5,
        "revision at reopen is {}",
        store.current_revision()
    );
    ensure!(
        store.compacted_revision() == 5,
        "history must not survive a restart"
    );
    ensure!(matches!(
        store.watch("/", 4),
        Err(StoreError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    let mut stream = store.watch("/", 5)?;
    let kv = store.create("/k5", value("x")).await?;
    ensure!(kv.mod_revision == 6);
    ensure!(next_event(&mut stream).await?.kv == kv);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_ring_moves_compacted_revision_as_it_drops_events() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = EmbeddedOptions {
        history: 4,
        ..EmbeddedOptions::default()
    };
    let store = open(&db_path(dir.path()), opts).await?;
    let mut written = Vec::new();
    for i in 0..10 {
        written.push(store.create(&format!("/k{i}"), value("x")).await?);
    }
    ensure!(
        store.compacted_revision() == 6,
        "compacted is {}",
        store.compacted_revision()
    );
    ensure!(matches!(
        store.watch("/", 5),
        Err(StoreError::Compacted { .. })
    ));
    let mut stream = store.watch("/", 6)?;
    let replayed = next_events(&mut stream, 4).await?;
    ensure!(replayed.iter().map(|e| &e.kv).eq(written[6..].iter()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_from_history_without_gaps() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = EmbeddedOptions {
        watch_buffer: 2,
        ..EmbeddedOptions::default()
    };
    let store = open(&db_path(dir.path()), opts).await?;
    let mut stream = store.watch("/", 0)?;
    let acked = hammer(&(Arc::new(store.clone()) as Arc<dyn Store>), "/", 4, 25).await?;
    let events = next_events(&mut stream, acked.len()).await?;
    let revisions: Vec<i64> = events.iter().map(|e| e.revision()).collect();
    ensure!(
        revisions == (1..=100).collect::<Vec<_>>(),
        "slow watcher saw {revisions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_that_falls_behind_history_ends_with_compacted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = EmbeddedOptions {
        history: 4,
        watch_buffer: 2,
        ..EmbeddedOptions::default()
    };
    let store = open(&db_path(dir.path()), opts).await?;
    let mut stream = store.watch("/", 0)?;
    for i in 0..20 {
        store.create(&format!("/k{i:02}"), value("x")).await?;
    }
    ensure!(next_event(&mut stream).await?.revision() == 1);
    ensure!(next_event(&mut stream).await?.revision() == 2);
    match next_event(&mut stream).await {
        Err(error) => match error.downcast_ref::<StoreError>() {
            Some(StoreError::Compacted {
                requested: 2,
                compacted: 16,
            }) => {}
            _ => bail!("expected Compacted after revision 2, got {error:#}"),
        },
        Ok(event) => bail!("a watcher lagging past history got {event:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_requests_ends_watches_and_releases_the_file() -> anyhow::Result<()> {
    let b = Embedded::start().await?;
    let store = b.store();
    store.create("/a", value("a")).await?;
    let mut stream = store.watch("/", 0)?;
    b.store.shutdown().await?;
    ensure!(next_event(&mut stream).await?.kv.key == "/a");
    ensure!(
        stream_ended(&mut stream).await?,
        "watch stream outlived shutdown"
    );
    ensure!(matches!(
        store.create("/b", value("b")).await,
        Err(StoreError::Unavailable(_))
    ));
    ensure!(matches!(
        store.get("/a").await,
        Err(StoreError::Unavailable(_))
    ));
    ensure!(matches!(
        store.watch("/", 1),
        Err(StoreError::Unavailable(_))
    ));
    // The file is closed although `store` still holds a handle.
    let reopened = open(&b.path(), EmbeddedOptions::default()).await?;
    ensure!(reopened.get("/a").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_writer() -> anyhow::Result<()> {
    let b = Embedded::start().await?;
    let Embedded { dir, store } = b;
    store.create("/a", value("a")).await?;
    let mut stream = store.watch("/", 1)?;
    drop(store);
    // Only the writer thread, on its way out, ends watch streams.
    ensure!(
        stream_ended(&mut stream).await?,
        "watch stream outlived the store"
    );
    drop(dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_row_is_a_backend_error_and_spares_the_batch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = db_path(dir.path());
    let store = open(&path, EmbeddedOptions::default()).await?;
    store.create("/good", value("ok")).await?;
    store.shutdown().await?;
    drop(store);
    {
        // Write a row the store's codec rejects, behind its back.
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        {
            let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("kv");
            txn.open_table(table)?
                .insert("/bad", b"\x01short".as_slice())?;
        }
        txn.commit()?;
    }
    let store = open(&path, EmbeddedOptions::default()).await?;
    ensure!(matches!(
        store.get("/bad").await,
        Err(StoreError::Backend(_))
    ));
    ensure!(matches!(
        store.range("/").await,
        Err(StoreError::Backend(_))
    ));
    let good = store.get("/good").await?.context("good row lost")?;
    let (bad, updated) = tokio::join!(
        store.update("/bad", value("x"), 1),
        store.update("/good", value("still ok"), good.mod_revision),
    );
    ensure!(
        matches!(bad, Err(StoreError::Backend(_))),
        "update of a corrupt row: {bad:?}"
    );
    ensure!(updated?.value == value("still ok"));
    Ok(())
}

/// Whether the stream ends (rather than yielding) within the harness's patience.
async fn stream_ended(stream: &mut ledge_store::WatchStream) -> anyhow::Result<bool> {
    use futures_util::StreamExt;
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .context("watch stream neither ended nor yielded")?;
    Ok(next.is_none())
}
