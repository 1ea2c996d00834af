//! The etcd backend: the store lives in an etcd cluster, so several ledge servers can share one
//! cluster state (high availability, K3s' "external etcd").
//!
//! Keys are stored as given (`/registry/...`, as Kubernetes does), values as written. Every write
//! is one etcd transaction whose compare is the [`Store`] precondition, so CAS, create-if-absent
//! and conditional delete are atomic in etcd. Reads are linearizable etcd ranges, paged and
//! pinned to one revision. Watches are etcd watches that resume by themselves from the last
//! delivered revision when a connection or a member is lost (see `watch`). History is etcd's
//! own; [`EtcdStore::run_compactor`] compacts it on a schedule, coordinated between servers.
//!
//! Every request is sent with etcd's `hasleader` metadata, so a member that has lost quorum
//! answers at once instead of queueing the request: writes then fail fast with `Unavailable`.
//!
//! What does not live here: retries of writes (a failed write is reported, never replayed behind
//! the caller's back), JSON, Kubernetes semantics.
//!
//! # Guarantees
//! - A write's future resolves `Ok` only after etcd committed it (a quorum persisted it).
//! - [`Store::current_revision`] is the newest revision *this process* has seen, from its own
//!   writes and the events its watches delivered. Writes of another server become visible here
//!   as soon as a watch delivers them (milliseconds), not before.

mod compactor;
mod options;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
};

pub use self::options::{EtcdOptions, EtcdTls, parse_endpoints};
use crate::{BoxFuture, KeyValue, RangeResult, Result, Revision, Store, StoreError, WatchStream};

/// Keys read per page of a range: pages stay far below gRPC's message limit even for large
/// objects, and all pages are read at the revision of the first.
const PAGE: i64 = 500;

/// HTTP/2 connections to etcd for KV requests.
const CONNECTIONS: usize = 4;

/// The largest response accepted from etcd (its own request limit is 1.5 MiB per value).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long a request keeps being retried while etcd is unavailable before it fails: long
/// enough to ride over one member's crash and the election after it (about one election
/// timeout, 1 s by default), short enough that a lost quorum is reported promptly.
const UNAVAILABLE_BUDGET: Duration = Duration::from_millis(3000);

/// The longest one attempt of a request may take. Healthy etcd answers in milliseconds; a write
/// caught in a leader change would otherwise wait for etcd's own timeout (5 s and more).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// A request that failed, and whether it may have been applied anyway (sent, answer lost).
struct Failed {
    error: StoreError,
    maybe_applied: bool,
}

impl From<Failed> for StoreError {
    fn from(failed: Failed) -> Self {
        failed.error
    }
}

/// The [`Store`] backed by an etcd cluster; cheap to clone, clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Watches and maintenance go over the first; KV requests are spread over all of them.
    clients: Vec<Client>,
    /// The next client a KV request takes.
    next: std::sync::atomic::AtomicUsize,
    endpoints: Vec<String>,
    timeout: Duration,
    /// The newest revision seen in a write response or a delivered watch event.
    revision: AtomicI64,
    /// The newest compaction revision learned (own compactions, watch cancellations).
    compacted: AtomicI64,
    /// Why the last request failed for unavailability; cleared by the next success.
    degraded: std::sync::Mutex<Option<String>>,
}

impl Inner {
    fn kv_client(&self) -> KvClient {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i]
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// The client for watches and maintenance.
    fn watch_client(&self) -> Client {
        self.clients[0].clone()
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.endpoints)
            .field("revision", &self.current_revision())
            .field("compacted", &self.compacted_revision())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connect to the etcd cluster and read its current and compacted revisions.
    ///
    /// # Errors
    /// `Unavailable` if no member answers within the request timeout (the caller decides whether
    /// to retry), `Backend` for bad options (unreadable TLS files, malformed endpoints).
    pub async fn connect(opts: &EtcdOptions) -> Result<EtcdStore> {
        // Several HTTP/2 connections: one carries every stream's flow control and frames, and
        // under many concurrent writers it, not etcd, becomes the limit.
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(opts.client().await?);
        }
        let store = EtcdStore {
            inner: Arc::new(Inner {
                clients,
                next: std::sync::atomic::AtomicUsize::new(0),
                endpoints: opts.endpoints.clone(),
                timeout: opts.request_timeout,
                revision: AtomicI64::new(0),
                compacted: AtomicI64::new(0),
                degraded: std::sync::Mutex::new(None),
            }),
        };
        let head = store
            .call(true, |mut kv| async move {
                kv.get("/", Some(GetOptions::new().with_count_only())).await
            })
            .await?;
        store.seen(header_revision(head.header()));
        let compacted = store.recorded_compaction().await?;
        store.learn_compacted(compacted);
        tracing::debug!(endpoints = ?opts.endpoints, revision = store.current_revision(), compacted, "etcd store connected");
        Ok(store)
    }

    /// The endpoints this store was given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Run `op` on a KV client, mapping etcd's errors, retrying where that is safe.
    ///
    /// A request that never reached a member (connection refused: the balancer picked a dead
    /// member) or that a member refused for lack of a leader (`hasleader`) was not applied, so
    /// it is retried on another member for up to [`UNAVAILABLE_BUDGET`]; a read (`idempotent`)
    /// is also retried after any other unavailability or a slow attempt, within the request
    /// timeout. Each attempt is bounded by [`ATTEMPT_TIMEOUT`]: a write caught in a leader
    /// change waits for etcd's own timeout otherwise.
    async fn call<T, F, Fut>(&self, idempotent: bool, op: F) -> Result<T, Failed>
    where
        F: Fn(KvClient) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let started = tokio::time::Instant::now();
        let attempt_timeout = ATTEMPT_TIMEOUT.min(self.inner.timeout);
        let mut attempt: u32 = 0;
        loop {
            let kv = self.inner.kv_client();
            let outcome = tokio::time::timeout(attempt_timeout, op(kv)).await;
            let (error, kind) = match outcome {
                Ok(Ok(answer)) => {
                    self.set_degraded(None);
                    return Ok(answer);
                }
                Ok(Err(e)) => {
                    let kind = Failure::of(&e);
                    (map_error(e), kind)
                }
                Err(_) => (
                    StoreError::Unavailable(format!(
                        "etcd did not answer within {attempt_timeout:?}"
                    )),
                    Failure::Unavailable,
                ),
            };
            let budget = match kind {
                Failure::NotSent => UNAVAILABLE_BUDGET,
                Failure::Unavailable if idempotent => self.inner.timeout,
                _ => Duration::ZERO,
            };
            if started.elapsed() >= budget {
                if let StoreError::Unavailable(why) = &error {
                    self.set_degraded(Some(why.clone()));
                }
                return Err(Failed {
                    error,
                    maybe_applied: matches!(kind, Failure::Unavailable),
                });
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(10)))).await;
        }
    }

    /// A one-key write whose answer may be lost (a member or the leader died while it was in
    /// flight) is sent again until the request timeout, and `settle` decides from what the
    /// repeated attempt found whether the lost one was applied.
    async fn write<T>(
        &self,
        key: &str,
        compare: &Compare,
        op: &TxnOp,
        settle: impl Fn(bool, TxnOpResponse, bool) -> Result<T>,
    ) -> Result<T> {
        let started = tokio::time::Instant::now();
        let mut ambiguous = false;
        loop {
            match self.txn(key, compare.clone(), op.clone()).await {
                Ok((done, answer)) => return settle(done, answer, ambiguous),
                Err(failed) if failed.maybe_applied && started.elapsed() < self.inner.timeout => {
                    tracing::debug!(key, error = %failed.error, "etcd write answer lost; sending it again");
                    ambiguous = true;
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// Run a one-key transaction: `ops` if `compare` holds, else read the key back.
    async fn txn(
        &self,
        key: &str,
        compare: Compare,
        ops: TxnOp,
    ) -> Result<(bool, TxnOpResponse), Failed> {
        let txn = Txn::new()
            .when([compare])
            .and_then([ops])
            .or_else([TxnOp::get(key, None)]);
        let response = self
            .call(false, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        let revision = header_revision(response.header());
        let first = response
            .op_responses()
            .into_iter()
            .next()
            .ok_or_else(|| Failed {
                maybe_applied: false,
                error: StoreError::Backend("etcd answered a transaction without a result".into()),
            })?;
        if response.succeeded() {
            self.seen(revision);
        }
        Ok((response.succeeded(), first))
    }

    fn set_degraded(&self, why: Option<String>) {
        let mut degraded = self
            .inner
            .degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if degraded.is_some() != why.is_some() {
            match &why {
                Some(why) => {
                    tracing::warn!(reason = %why, "etcd is unavailable: writes fail, reads come from the cache")
                }
                None => tracing::info!("etcd is available again"),
            }
        }
        *degraded = why;
    }

    /// Check every `interval` until `cancel` that etcd has a leader and answers, so
    /// [`Store::degraded`] is current even while nothing writes.
    ///
    /// # Cancel safety
    /// Stops between probes.
    pub async fn run_health_probe(
        self,
        interval: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let _ = self
                .call(true, |mut kv| async move {
                    kv.get(
                        compactor::COMPACT_KEY,
                        Some(GetOptions::new().with_count_only()),
                    )
                    .await
                })
                .await;
        }
    }

    /// Write throwaway revisions (puts of one scratch key outside `/registry/`) until the
    /// revision reaches `target`. `ledge datastore migrate` uses it so resourceVersions on etcd
    /// continue from, and match, the old store's: clients holding a resourceVersion from before
    /// the migration never see time go backwards.
    ///
    /// # Errors
    /// As for any write.
    pub async fn advance_to(&self, target: Revision) -> Result<()> {
        const PAD_KEY: &str = "/ledge/migration/pad";
        const PARALLEL: i64 = 64;
        while self.current_revision() < target {
            let wanted = (target - self.current_revision()).min(PARALLEL);
            let puts = (0..wanted).map(|_| {
                self.call(
                    false,
                    |mut kv| async move { kv.put(PAD_KEY, "", None).await },
                )
            });
            for put in futures_util::future::join_all(puts).await {
                let put = put?;
                self.seen(header_revision(put.header()));
            }
        }
        Ok(())
    }

    fn seen(&self, revision: Revision) {
        self.inner.revision.fetch_max(revision, Ordering::AcqRel);
    }

    fn learn_compacted(&self, revision: Revision) {
        self.inner.compacted.fetch_max(revision, Ordering::AcqRel);
    }
}

impl Store for EtcdStore {
    fn create(&self, key: &str, value: Bytes) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(async move {
            let put = TxnOp::put(key.as_str(), value.to_vec(), None);
            let absent = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
            self.write(&key, &absent, &put, |done, answer, ambiguous| {
                if done {
                    let revision = put_revision(&answer)?;
                    return Ok(KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: revision,
                        mod_revision: revision,
                    });
                }
                // Present: ours if a lost attempt wrote exactly these bytes (a stored object
                // carries its own uid, so another writer's value never matches).
                match read_back(&key, answer)? {
                    Some(current) if ambiguous && current.value == value => Ok(current),
                    _ => Err(StoreError::AlreadyExists(key.clone())),
                }
            })
            .await
        })
    }

    fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(async move {
            let put = TxnOp::put(
                key.as_str(),
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            );
            let unchanged = Compare::mod_revision(key.as_str(), CompareOp::Equal, expected);
            self.write(&key, &unchanged, &put, |done, answer, ambiguous| {
                if !done {
                    return Err(match read_back(&key, answer)? {
                        None => StoreError::NotFound(key.clone()),
                        // A lost attempt of this very update applied it.
                        Some(current) if ambiguous && current.value == value => return Ok(current),
                        Some(current) => StoreError::Conflict {
                            key: key.clone(),
                            expected,
                            current: Box::new(current),
                        },
                    });
                }
                let TxnOpResponse::Put(put) = &answer else {
                    return Err(unexpected("put"));
                };
                let revision = header_revision(put.header());
                // The key was present (its mod revision matched), so the put has a previous value.
                let create_revision = put
                    .prev_key()
                    .map(|kv| kv.create_revision())
                    .unwrap_or(revision);
                Ok(KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision,
                    mod_revision: revision,
                })
            })
            .await
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> BoxFuture<'_, Result<KeyValue>> {
        let key = key.to_owned();
        Box::pin(async move {
            let delete = TxnOp::delete(
                key.as_str(),
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            );
            let compare = match expected {
                Some(rev) => Compare::mod_revision(key.as_str(), CompareOp::Equal, rev),
                None => Compare::create_revision(key.as_str(), CompareOp::Greater, 0),
            };
            let (done, answer) = self.txn(&key, compare, delete).await?;
            if !done {
                return Err(match (read_back(&key, answer)?, expected) {
                    (Some(current), Some(expected)) => StoreError::Conflict {
                        key,
                        expected,
                        current: Box::new(current),
                    },
                    _ => StoreError::NotFound(key),
                });
            }
            let TxnOpResponse::Delete(deleted) = &answer else {
                return Err(unexpected("delete"));
            };
            let revision = header_revision(deleted.header());
            let prev = deleted
                .prev_kvs()
                .first()
                .ok_or_else(|| StoreError::NotFound(key.clone()))?;
            let mut kv = convert(prev)?;
            kv.mod_revision = revision;
            Ok(kv)
        })
    }

    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let key = key.to_owned();
        Box::pin(async move {
            let response = self
                .call(true, |mut kv| {
                    let key = key.clone();
                    async move { kv.get(key, None).await }
                })
                .await?;
            response.kvs().first().map(convert).transpose()
        })
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<RangeResult>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let end = prefix_end(prefix.as_bytes());
            let mut kvs = Vec::new();
            let mut from = prefix.clone().into_bytes();
            let mut revision = 0;
            loop {
                let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if revision > 0 {
                    options = options.with_revision(revision);
                }
                let response = self
                    .call(true, |mut kv| {
                        let (start, options) = (from.clone(), options.clone());
                        async move { kv.get(start, Some(options)).await }
                    })
                    .await?;
                if revision == 0 {
                    revision = header_revision(response.header());
                }
                for kv in response.kvs() {
                    kvs.push(convert(kv)?);
                }
                match response.kvs().last() {
                    Some(last) if response.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            Ok(RangeResult { revision, kvs })
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        Ok(watch::follow(self.clone(), prefix.to_owned(), after))
    }

    fn current_revision(&self) -> Revision {
        self.inner.revision.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted.load(Ordering::Acquire)
    }

    fn degraded(&self) -> Option<String> {
        self.inner
            .degraded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if revision <= self.compacted_revision() {
                return Ok(());
            }
            let mut client = self.inner.watch_client();
            let done = tokio::time::timeout(self.inner.timeout, client.compact(revision, None))
                .await
                .map_err(|_| StoreError::Unavailable("etcd did not answer a compaction".into()))?;
            match done {
                Ok(_) => {}
                // Another server compacted past it already: compaction never moves back.
                Err(e)
                    if e.to_string()
                        .contains("required revision has been compacted") => {}
                Err(e) => return Err(map_error(e)),
            }
            self.learn_compacted(revision);
            Ok(())
        })
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): to the end of the keyspace.
    vec![0]
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

fn put_revision(answer: &TxnOpResponse) -> Result<Revision> {
    match answer {
        TxnOpResponse::Put(put) => Ok(header_revision(put.header())),
        _ => Err(unexpected("put")),
    }
}

/// The key as read by a failed transaction's `or_else` branch.
fn read_back(key: &str, answer: TxnOpResponse) -> Result<Option<KeyValue>> {
    match answer {
        TxnOpResponse::Get(get) => get
            .kvs()
            .iter()
            .find(|kv| kv.key() == key.as_bytes())
            .map(convert)
            .transpose(),
        _ => Err(unexpected("read")),
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = std::str::from_utf8(kv.key())
        .map_err(|e| StoreError::Backend(Box::new(e)))?
        .to_owned();
    Ok(KeyValue {
        key,
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Backend(format!("etcd answered a transaction without its {what} result").into())
}

/// How a failed request failed, for deciding whether to retry it.
enum Failure {
    /// It never reached a member, or a member refused it before proposing it: not applied.
    NotSent,
    /// The member or connection failed in a way that may have applied it.
    Unavailable,
    /// Anything else (a bad request, a compacted revision): retrying cannot help.
    Other,
}

impl Failure {
    fn of(error: &etcd_client::Error) -> Failure {
        use tonic::Code;
        let text = error.to_string();
        if text.contains("tcp connect error")
            || text.contains("Connection refused")
            || text.contains("no leader")
        {
            return Failure::NotSent;
        }
        match error {
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
                Failure::Unavailable
            }
            etcd_client::Error::GRpcStatus(status) => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                    Failure::Unavailable
                }
                _ if text.contains("leader changed") || text.contains("timed out") => {
                    Failure::Unavailable
                }
                _ => Failure::Other,
            },
            _ => Failure::Other,
        }
    }
}

/// Map an etcd client error: lost connections, timeouts and a lost quorum are `Unavailable`
/// (the API answers 503 and the caller may retry); anything else is a backend failure.
fn map_error(error: etcd_client::Error) -> StoreError {
    match Failure::of(&error) {
        Failure::NotSent | Failure::Unavailable => {
            StoreError::Unavailable(format!("etcd is unavailable: {}", reason(&error)))
        }
        Failure::Other => StoreError::Backend(Box::new(error)),
    }
}

/// Why etcd could not serve a request, in words an operator can act on (the client's own
/// error text is a nested debug dump of tonic's transport errors).
fn reason(error: &etcd_client::Error) -> String {
    let text = error.to_string();
    if text.contains("no leader") {
        "etcd has no leader (has it lost its quorum? a majority of its members must be up)".into()
    } else if text.contains("tcp connect error") || text.contains("Connection refused") {
        "no etcd member accepted the connection (are the --datastore-endpoint members up?)".into()
    } else if let etcd_client::Error::GRpcStatus(status) = error {
        format!("{} ({:?})", status.message(), status.code())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
