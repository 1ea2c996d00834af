//! `ledge datastore migrate --from DIR --to etcd://...`: copy a single server's embedded store
//! into an empty etcd cluster, so the cluster can run on several servers.
//!
//! Objects are copied byte for byte (uids, labels, owner references, finalizers unchanged) in
//! the order of their last writes, and etcd's revision is advanced between them so that each
//! object keeps its resourceVersion on a fresh etcd (and on one that already has history, the
//! order is kept and every resourceVersion only grows). Clients, controllers and agents that
//! hold a resourceVersion from before the migration therefore never see time run backwards.
//!
//! The server must be stopped: the embedded store's file is locked while it runs. The target
//! must hold no cluster yet. The CA and the token stay in the data dir; the first server started
//! on etcd with that data dir shares them (see `cluster`).

use std::path::Path;

use anyhow::{Context as _, bail};
use ledge_store::{EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Store, StoreError};

use crate::progress::Progress;

/// Copy the embedded store of the server data dir `from` into the etcd cluster `to`.
///
/// # Errors
/// The server still running (its store is locked), an unreachable or non-empty etcd, a write
/// that fails midway (the message says what was copied; rerun into an emptied etcd).
pub async fn migrate(from: &Path, to: &EtcdOptions) -> anyhow::Result<()> {
    let path = from.join("db").join("ledge.redb");
    if !path.exists() {
        bail!(
            "{} holds no embedded store (expected {}); pass the server's --data-dir",
            from.display(),
            path.display()
        );
    }
    let source = {
        let file = path.clone();
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&file, EmbeddedOptions::default()))
            .await?
            .with_context(|| {
                format!(
                    "cannot open {}: stop the server using it first (ledge server holds it locked)",
                    path.display()
                )
            })?
    };
    let copied = copy(&source, to).await;
    source.shutdown().await?;
    let (objects, revision) = copied?;
    println!(
        "migrated {objects} objects from {} to etcd at {} (resourceVersions continue from {revision})",
        from.display(),
        to.endpoints.join(",")
    );
    println!(
        "next: ledge server --data-dir {} --datastore-endpoint etcd://{}",
        from.display(),
        to.endpoints.join(",")
    );
    Ok(())
}

/// Copy every key; returns how many and the revision etcd ended at.
async fn copy(source: &EmbeddedStore, to: &EtcdOptions) -> anyhow::Result<(usize, i64)> {
    let all = source
        .range("")
        .await
        .context("cannot read the embedded store")?;
    let target = match EtcdStore::connect(to).await {
        Ok(store) => store,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot reach etcd at {}", to.endpoints.join(",")));
        }
    };
    let existing = target.range("/registry/").await?;
    if !existing.kvs.is_empty() {
        bail!(
            "etcd at {} already holds a cluster ({} objects under /registry/); migrate into an \
             empty etcd",
            to.endpoints.join(","),
            existing.kvs.len()
        );
    }
    let mut kvs = all.kvs;
    kvs.sort_by_key(|kv| kv.mod_revision);
    let total = kvs.len() as u64;
    let bar = Progress::new("migrating", "objects");
    for (i, kv) in kvs.iter().enumerate() {
        target.advance_to(kv.mod_revision - 1).await?;
        match target.create(&kv.key, kv.value.clone()).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists(key)) => {
                bail!("{key} already exists in etcd; migrate into an empty etcd")
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("copying {} failed after {i} of {total} objects", kv.key)
                });
            }
        }
        bar.show(i as u64 + 1, total, &format!("{}/{total}", i + 1));
    }
    // Revisions of deletes after the last write still count: continue past them.
    target.advance_to(all.revision).await?;
    bar.finish();
    Ok((kvs.len(), target.current_revision()))
}
