//! Scheduled compaction of etcd's history, shared by every server on the cluster.
//!
//! As upstream's apiserver does (`storage/etcd3/compact.go`): every interval each server tries
//! to claim the round by a compare-and-swap on one key's version; the winner compacts at the
//! revision it observed one interval earlier, so watches have had a whole interval to move past
//! it. The key's value records the compacted revision, which is how a server that starts later
//! learns it (etcd reports it only by refusing watches).

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use tokio_util::sync::CancellationToken;

use super::{EtcdStore, header_revision};
use crate::{Result, Revision, Store as _, StoreError};

/// The key whose version numbers compaction rounds and whose value is the compacted revision.
pub(super) const COMPACT_KEY: &str = "/ledge/compacted-revision";

impl EtcdStore {
    /// Compact etcd's history every `interval` until `cancel`, coordinated with other servers.
    ///
    /// # Cancel safety
    /// Stops between rounds; a compaction in flight completes or fails on its own.
    pub async fn run_compactor(self, interval: Duration, cancel: CancellationToken) {
        let mut version = 0;
        let mut candidate: Revision = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match self.compact_round(version, candidate).await {
                Ok((next_version, head)) => {
                    version = next_version;
                    candidate = head;
                }
                Err(e) => tracing::warn!(error = %e, "etcd compaction round failed"),
            }
        }
    }

    /// One round: claim it if the key is still at `version`, then compact at `candidate`.
    /// Returns the key's version now and the head revision, the next round's candidate.
    async fn compact_round(&self, version: i64, candidate: Revision) -> Result<(i64, Revision)> {
        let claim = Txn::new()
            .when([Compare::version(COMPACT_KEY, CompareOp::Equal, version)])
            .and_then([TxnOp::put(COMPACT_KEY, candidate.to_string(), None)])
            .or_else([TxnOp::get(COMPACT_KEY, None)]);
        let response = self
            .call(false, |mut kv| {
                let claim = claim.clone();
                async move { kv.txn(claim).await }
            })
            .await?;
        let head = header_revision(response.header());
        if !response.succeeded() {
            // Another server claimed this round; follow its count.
            let current = match response.op_responses().into_iter().next() {
                Some(etcd_client::TxnOpResponse::Get(get)) => {
                    get.kvs().first().map(|kv| kv.version()).unwrap_or(0)
                }
                _ => 0,
            };
            return Ok((current, head));
        }
        if candidate > 0 {
            self.compact(candidate).await?;
            tracing::debug!(revision = candidate, "etcd history compacted");
        }
        Ok((version + 1, head))
    }

    /// The compacted revision recorded by the compactor (0 if it never ran).
    pub(super) async fn recorded_compaction(&self) -> Result<Revision> {
        let response = self
            .call(
                true,
                |mut kv| async move { kv.get(COMPACT_KEY, None).await },
            )
            .await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(0);
        };
        let text = std::str::from_utf8(kv.value()).unwrap_or("");
        text.parse().map_err(|_| {
            StoreError::Backend(format!("{COMPACT_KEY} holds {text:?}, not a revision").into())
        })
    }
}
