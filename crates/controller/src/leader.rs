//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go `leaderelection`
//! semantics: several servers campaign for one Lease, the holder renews it every retry period,
//! and only the holder runs the work that must not run twice (controllers, the scheduler).
//!
//! Expiry is judged the upstream way: a candidate remembers the local monotonic instant at which
//! it last *observed the lease record change*, and treats the lease as held until
//! `leaseDurationSeconds` after that instant. `renewTime` is written for people and tools, never
//! compared with this machine's wall clock, so clock skew between servers does not matter.
//! Writes use the Lease's resourceVersion (optimistic concurrency), so of two candidates that
//! read the same expired record only one takes it over.
//!
//! A leader that cannot renew stops leading `renew_deadline` after the start of its last
//! successful renewal, before any other candidate may consider the lease expired
//! (`lease_duration` after it observed that renewal). On graceful shutdown the lease is released
//! (upstream `ReleaseOnCancel`) so the next candidate takes over at its next attempt.
//!
//! Not here: what the leader runs (the caller's `lead` callback) and how identities are chosen
//! (the caller's, typically `<hostname>_<random suffix>`, kept stable across restarts).
//!
//! Upstream: `k8s.io/client-go/tools/leaderelection/leaderelection.go`.

use std::sync::Arc;
use std::time::Duration;

use ledge_api::ApiError;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::kinds::LEASE;

/// Where control-plane components keep their election Leases.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// How long a lease is held after its last observed change (upstream default 15 s; shorter for
/// fast hand-over).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(10);
/// How long a leader keeps trying to renew before it gives up leading (upstream default 10 s).
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(7);
/// How often candidates try to acquire and the leader renews (upstream default 2 s).
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One election: which Lease, who is campaigning, and its timing.
///
/// The timing must satisfy `lease_duration > renew_deadline > retry_period`, as upstream
/// requires: the gap between the first two is the margin that keeps an old leader that cannot
/// renew from overlapping with its successor.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (`spec.holderIdentity`): unique among candidates; a candidate
    /// that finds its own identity in the Lease takes it over at once.
    pub identity: String,
    /// How long other candidates wait after observing the last change of the lease record
    /// before taking it over (`spec.leaseDurationSeconds`, whole seconds).
    pub lease_duration: Duration,
    /// How long after the start of its last successful renewal a leader stops leading.
    pub renew_deadline: Duration,
    /// Time between acquisition attempts and between renewals.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// An election for `kube-system/<name>` with the default (fast hand-over) timing.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: LEASE_NAMESPACE.to_string(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    fn lease_seconds(&self) -> i64 {
        i64::try_from(self.lease_duration.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Campaign for the lease until `cancel`: call `lead` with a fresh child token each time
/// leadership is gained, cancel that token as soon as it is lost (not renewed within the renew
/// deadline, or another holder observed), then campaign again. On `cancel` the current term is
/// cancelled and the lease released.
///
/// `lead` must not block: it starts the leader's work (spawning tasks that stop with the token)
/// and returns.
pub async fn run<F>(
    client: Arc<dyn Client>,
    config: LeaderConfig,
    cancel: CancellationToken,
    lead: F,
) where
    F: Fn(CancellationToken) + Send + Sync + 'static,
{
    debug_assert!(
        config.lease_duration > config.renew_deadline
            && config.renew_deadline > config.retry_period,
        "leader election timing must satisfy lease_duration > renew_deadline > retry_period"
    );
    let mut elector = Elector::new(client, config);
    loop {
        let Some(acquired_at) = elector.acquire(&cancel).await else {
            // An attempt cut short by the cancel may still have written the lease.
            elector.release().await;
            return;
        };
        tracing::info!(
            lease = %elector.lease_name(),
            identity = %elector.config.identity,
            "became leader"
        );
        let term = cancel.child_token();
        lead(term.clone());
        let end = elector.renew(acquired_at, &cancel).await;
        term.cancel();
        match end {
            TermEnd::Lost(why) => {
                tracing::info!(
                    lease = %elector.lease_name(),
                    identity = %elector.config.identity,
                    reason = %why,
                    "lost leadership"
                );
            }
            TermEnd::Cancelled => {
                elector.release().await;
                return;
            }
        }
    }
}

/// Why a term ended.
enum TermEnd {
    /// Leadership was lost; campaign again.
    Lost(String),
    /// Shutdown.
    Cancelled,
}

/// The outcome of one acquire-or-renew attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This candidate holds the lease now.
    Held,
    /// Another candidate holds a lease that has not expired yet.
    HeldBy(String),
}

/// The election fields of a Lease's spec (upstream `LeaderElectionRecord`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Record {
    holder: String,
    lease_seconds: i64,
    acquire_time: Option<String>,
    renew_time: Option<String>,
    transitions: i64,
}

impl Record {
    fn of(lease: &Value) -> Self {
        let spec = &lease["spec"];
        let text = |field: &str| spec[field].as_str().map(str::to_string);
        Self {
            holder: text("holderIdentity").unwrap_or_default(),
            lease_seconds: spec["leaseDurationSeconds"].as_i64().unwrap_or(0),
            acquire_time: text("acquireTime"),
            renew_time: text("renewTime"),
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
        }
    }

    /// `lease` with this record as its spec's election fields.
    fn write_into(&self, mut lease: Value) -> Value {
        let spec = json!({
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        });
        match lease.get_mut("spec").and_then(Value::as_object_mut) {
            Some(existing) => {
                if let Value::Object(fields) = spec {
                    existing.extend(fields);
                }
            }
            None => lease["spec"] = spec,
        }
        lease
    }
}

/// A `metav1.MicroTime` for now: written for readers, never compared.
fn micro_now() -> String {
    ledge_api::time::format_micro_time(chrono::Utc::now())
}

/// One candidate's view of the election (upstream `LeaderElector`).
struct Elector {
    client: Arc<dyn Client>,
    config: LeaderConfig,
    /// The Lease as last read or written: its resourceVersion guards the next write.
    lease: Option<Value>,
    /// The last record observed, and the local instant it was first observed.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    fn new(client: Arc<dyn Client>, config: LeaderConfig) -> Self {
        Self {
            client,
            config,
            lease: None,
            observed: None,
        }
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    /// Whether the last observed record names this candidate.
    fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|(r, _)| r.holder == self.config.identity)
    }

    /// Whether the observed record has not expired: judged from when it was observed, on the
    /// local monotonic clock.
    fn lease_valid(&self, now: Instant) -> bool {
        self.observed.as_ref().is_some_and(|(r, at)| {
            let held = Duration::from_secs(u64::try_from(r.lease_seconds).unwrap_or(0));
            *at + held > now
        })
    }

    /// Remember `record`; the observation instant moves only when the record changed.
    fn observe(&mut self, record: Record) {
        if self.observed.as_ref().is_some_and(|(r, _)| *r == record) {
            return;
        }
        self.observed = Some((record, Instant::now()));
    }

    /// One attempt (upstream `tryAcquireOrRenew`).
    ///
    /// # Cancel safety
    /// Dropping it mid-way may leave a write applied but unobserved; the next attempt reads the
    /// lease afresh.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, ApiError> {
        let now = micro_now();
        let namespace = self.config.namespace.clone();
        let ns = Some(namespace.as_str());
        let mut record = Record {
            holder: self.config.identity.clone(),
            lease_seconds: self.config.lease_seconds(),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            transitions: 0,
        };

        // Fast path: a leader renews from the copy it wrote last, without reading first.
        if self.is_leader()
            && self.lease_valid(Instant::now())
            && let (Some(lease), Some((old, _))) = (&self.lease, &self.observed)
        {
            let mut renewed = record.clone();
            renewed.acquire_time.clone_from(&old.acquire_time);
            renewed.transitions = old.transitions;
            let lease = renewed.write_into(lease.clone());
            match self.client.update(&LEASE, ns, lease).await {
                Ok(written) => {
                    self.lease = Some(written);
                    self.observe(renewed);
                    return Ok(Attempt::Held);
                }
                Err(e) => {
                    tracing::debug!(lease = %self.lease_name(), error = %e,
                        "optimistic renewal failed; reading the lease");
                }
            }
        }

        let Some(lease) = self.client.get(&LEASE, ns, &self.config.name).await? else {
            // Nobody has campaigned yet. A conflict here means another candidate created it
            // first: it leads.
            let lease = record.write_into(json!({
                "apiVersion": LEASE.api_version(),
                "kind": LEASE.kind,
                "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            }));
            let written = self.client.create(&LEASE, ns, lease).await?;
            self.lease = Some(written);
            self.observe(record);
            return Ok(Attempt::Held);
        };
        let old = Record::of(&lease);
        self.lease = Some(lease.clone());
        self.observe(old.clone());
        if !old.holder.is_empty() && self.lease_valid(Instant::now()) && !self.is_leader() {
            return Ok(Attempt::HeldBy(old.holder));
        }
        if self.is_leader() {
            record.acquire_time = old.acquire_time;
            record.transitions = old.transitions;
        } else {
            record.transitions = old.transitions.saturating_add(1);
        }
        let written = self
            .client
            .update(&LEASE, ns, record.write_into(lease))
            .await?;
        self.lease = Some(written);
        self.observe(record);
        Ok(Attempt::Held)
    }

    /// Campaign until the lease is held (the instant the successful attempt started) or
    /// `cancel` (`None`).
    async fn acquire(&mut self, cancel: &CancellationToken) -> Option<Instant> {
        let budget = self.config.renew_deadline;
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return None,
                a = tokio::time::timeout(budget, self.try_acquire_or_renew()) => a,
            };
            match attempt {
                Ok(Ok(Attempt::Held)) => return Some(started),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::debug!(lease = %self.lease_name(), %holder,
                        "lease is held by another candidate");
                }
                Ok(Err(e)) if e.code == 409 => {
                    tracing::debug!(lease = %self.lease_name(), error = %e,
                        "another candidate wrote the lease first");
                }
                Ok(Err(e)) => {
                    tracing::debug!(lease = %self.lease_name(), error = %e,
                        "cannot acquire the lease");
                }
                Err(_) => {
                    tracing::debug!(lease = %self.lease_name(), "acquiring the lease timed out");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
    }

    /// Renew every retry period until leadership is lost or `cancel`. The renew deadline
    /// counts from the start of the last successful write (`acquired_at` at first): no other
    /// candidate can have observed that write earlier.
    async fn renew(&mut self, acquired_at: Instant, cancel: &CancellationToken) -> TermEnd {
        let mut renewed_at = acquired_at;
        let mut last_error = String::from("no renewal attempted");
        loop {
            let deadline = renewed_at + self.config.renew_deadline;
            let wake = (Instant::now() + self.config.retry_period).min(deadline);
            tokio::select! {
                _ = cancel.cancelled() => return TermEnd::Cancelled,
                _ = tokio::time::sleep_until(wake) => {}
            }
            let started = Instant::now();
            if started >= deadline {
                return TermEnd::Lost(format!(
                    "not renewed within {:?}: {last_error}",
                    self.config.renew_deadline
                ));
            }
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return TermEnd::Cancelled,
                a = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()) => a,
            };
            match attempt {
                Ok(Ok(Attempt::Held)) => {
                    tracing::debug!(lease = %self.lease_name(), "renewed the lease");
                    renewed_at = started;
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    return TermEnd::Lost(format!("the lease is held by {holder}"));
                }
                Ok(Err(e)) => {
                    tracing::debug!(lease = %self.lease_name(), error = %e,
                        "cannot renew the lease; retrying");
                    last_error = e.to_string();
                }
                Err(_) => last_error = "the renewal timed out".to_string(),
            }
        }
    }

    /// Give the lease up so the next candidate need not wait for it to expire (upstream
    /// `ReleaseOnCancel`): no holder, a one-second duration. Bounded by the renew deadline;
    /// failure only means the others wait for expiry.
    async fn release(&mut self) {
        let attempt = tokio::time::timeout(self.config.renew_deadline, async {
            let ns = Some(self.config.namespace.as_str());
            // Read afresh: release only a lease that still names this candidate.
            let Some(lease) = self.client.get(&LEASE, ns, &self.config.name).await? else {
                return Ok(false);
            };
            let current = Record::of(&lease);
            if current.holder != self.config.identity {
                return Ok(false);
            }
            let now = micro_now();
            let released = Record {
                holder: String::new(),
                lease_seconds: 1,
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                transitions: current.transitions,
            };
            self.client
                .update(&LEASE, ns, released.write_into(lease))
                .await?;
            Ok::<_, ApiError>(true)
        })
        .await;
        let (lease, identity) = (self.lease_name(), &self.config.identity);
        match attempt {
            Ok(Ok(true)) => tracing::info!(%lease, %identity, "released the lease"),
            Ok(Ok(false)) => {
                tracing::debug!(%lease, %identity, "lease not held; nothing to release")
            }
            Ok(Err(e)) => tracing::info!(%lease, %identity, error = %e,
                "cannot release the lease; others take over when it expires"),
            Err(_) => tracing::info!(%lease, %identity,
                "releasing the lease timed out; others take over when it expires"),
        }
    }
}

#[cfg(test)]
mod tests;
