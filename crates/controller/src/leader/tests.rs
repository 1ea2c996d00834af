//! Elections between candidates on an in-memory API, in paused tokio time: every duration
//! asserted here is virtual, decided by the election's timers, never by the machine's speed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::testing::{FakeApi, FakeClient};

const NAME: &str = "test-election";

/// The terms a candidate was given: when each began, and its token.
#[derive(Clone, Default)]
struct Terms(Arc<Mutex<Vec<(Instant, CancellationToken)>>>);

impl Terms {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, CancellationToken)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the latest term is still running.
    fn leading(&self) -> bool {
        self.lock().last().is_some_and(|(_, t)| !t.is_cancelled())
    }

    fn count(&self) -> usize {
        self.lock().len()
    }
}

struct Candidate {
    client: Arc<FakeClient>,
    terms: Terms,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(api: &FakeApi, identity: &str) -> Candidate {
    let client = api.client();
    let terms = Terms::default();
    let cancel = CancellationToken::new();
    let record = terms.clone();
    let task = tokio::spawn(run(
        client.clone(),
        LeaderConfig::new(NAME, identity),
        cancel.clone(),
        move |term| record.lock().push((Instant::now(), term)),
    ));
    Candidate {
        client,
        terms,
        cancel,
        task,
    }
}

/// The first instant within `limit` at which `cond` holds (checked every 10 ms).
async fn until(cond: impl Fn() -> bool, limit: Duration) -> Option<Instant> {
    let end = Instant::now() + limit;
    while Instant::now() <= end {
        if cond() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn lease(api: &FakeApi) -> Value {
    api.get(&LEASE, Some(LEASE_NAMESPACE), NAME)
        .expect("the lease exists")
}

fn holder(api: &FakeApi) -> String {
    lease(api)["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn transitions(api: &FakeApi) -> i64 {
    lease(api)["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap_or(-1)
}

const LEASE_DURATION: Duration = DEFAULT_LEASE_DURATION;
const RENEW_DEADLINE: Duration = DEFAULT_RENEW_DEADLINE;
const RETRY: Duration = DEFAULT_RETRY_PERIOD;

/// Start `a`, wait until it leads, then start `b` and let it observe the lease.
async fn a_leads_b_waits(api: &FakeApi) -> (Candidate, Candidate) {
    let a = start(api, "a");
    until(|| a.terms.leading(), Duration::from_secs(1))
        .await
        .expect("a fresh lease is acquired at the first attempt");
    let b = start(api, "b");
    tokio::time::sleep(RETRY + RETRY / 2).await;
    assert!(!b.terms.leading());
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn one_acquires_the_other_waits() {
    let api = FakeApi::default();
    let a = start(&api, "a");
    let b = start(&api, "b");
    until(
        || a.terms.leading() || b.terms.leading(),
        Duration::from_secs(1),
    )
    .await
    .expect("someone leads at once");
    // Many lease durations later the leader has kept the lease by renewing it.
    tokio::time::sleep(LEASE_DURATION * 6).await;
    let (leader, other, id) = if a.terms.leading() {
        (&a, &b, "a")
    } else {
        (&b, &a, "b")
    };
    assert_eq!(leader.terms.count(), 1, "the leader never lost its term");
    assert_eq!(other.terms.count(), 0, "the other never led");
    assert_eq!(holder(&api), id);
    assert_eq!(transitions(&api), 0);
    let spec = &lease(&api)["spec"];
    assert_eq!(spec["leaseDurationSeconds"], json!(10));
    assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_killed_holder_is_replaced_after_the_lease_duration() {
    let api = FakeApi::default();
    let (a, b) = a_leads_b_waits(&api).await;
    // kill -9: no release, no more renewals.
    a.task.abort();
    let killed = Instant::now();
    let took_over = until(|| b.terms.leading(), LEASE_DURATION * 3)
        .await
        .expect("b takes over");
    let waited = took_over - killed;
    // a's last renewal was at most one retry period before the kill; b waits a lease duration
    // from when it observed that renewal, and notices at its next attempt.
    assert!(
        waited >= LEASE_DURATION - RETRY,
        "b took over after {waited:?}, before the lease could have expired"
    );
    assert!(
        waited <= LEASE_DURATION + RETRY * 2,
        "b took over only after {waited:?}"
    );
    assert_eq!(holder(&api), "b");
    assert_eq!(transitions(&api), 1);
}

#[tokio::test(start_paused = true)]
async fn graceful_cancel_releases_and_the_other_takes_over_promptly() {
    let api = FakeApi::default();
    let (a, b) = a_leads_b_waits(&api).await;
    a.cancel.cancel();
    a.task.await.expect("a stops");
    let released = Instant::now();
    assert!(!a.terms.leading(), "a's term ended with the cancel");
    assert_eq!(holder(&api), "", "the lease names no holder once released");
    let took_over = until(|| b.terms.leading(), LEASE_DURATION * 3)
        .await
        .expect("b takes over");
    assert!(
        took_over - released <= RETRY,
        "b waited {:?} for a released lease",
        took_over - released
    );
    assert_eq!(holder(&api), "b");
    assert_eq!(transitions(&api), 1);
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_cannot_renew_stops_leading_before_another_takes_over() {
    let api = FakeApi::default();
    let (a, b) = a_leads_b_waits(&api).await;
    a.client.fail(true);
    let cut = Instant::now();
    let stopped = until(|| !a.terms.leading(), LEASE_DURATION * 3)
        .await
        .expect("a stops leading");
    assert!(
        stopped - cut <= RENEW_DEADLINE,
        "a kept leading {:?} without renewing",
        stopped - cut
    );
    until(
        || {
            assert!(
                !(b.terms.leading() && a.terms.leading()),
                "two leaders at once"
            );
            b.terms.leading()
        },
        LEASE_DURATION * 3,
    )
    .await
    .expect("b takes over");
    // a reaches the API again: b keeps the lease, a waits.
    a.client.fail(false);
    tokio::time::sleep(LEASE_DURATION * 3).await;
    assert!(b.terms.leading() && b.terms.count() == 1);
    assert!(!a.terms.leading() && a.terms.count() == 1);
    assert_eq!(holder(&api), "b");
}

#[tokio::test(start_paused = true)]
async fn another_holder_in_the_lease_ends_the_term_at_once() {
    let api = FakeApi::default();
    let a = start(&api, "a");
    until(|| a.terms.leading(), Duration::from_secs(1))
        .await
        .expect("a leads");
    let mut taken = lease(&api);
    taken["spec"]["holderIdentity"] = json!("intruder");
    taken["spec"]["leaseTransitions"] = json!(1);
    api.put(&LEASE, Some(LEASE_NAMESPACE), taken);
    until(|| !a.terms.leading(), RETRY + Duration::from_millis(100))
        .await
        .expect("a stops at its next renewal");
    // The intruder never renews: a takes the lease back once it expires.
    until(|| a.terms.leading(), LEASE_DURATION * 2)
        .await
        .expect("a leads again");
    assert_eq!(a.terms.count(), 2);
    assert_eq!(holder(&api), "a");
    assert_eq!(transitions(&api), 2);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_candidate_takes_its_own_lease_over_at_once() {
    let api = FakeApi::default();
    let a = start(&api, "a");
    until(|| a.terms.leading(), Duration::from_secs(1))
        .await
        .expect("a leads");
    tokio::time::sleep(RETRY * 2).await;
    a.task.abort();
    // The same server, restarted with its persisted identity, finds the lease naming it.
    let restarted = Instant::now();
    let again = start(&api, "a");
    let led = until(|| again.terms.leading(), LEASE_DURATION)
        .await
        .expect("a leads again");
    assert!(
        led - restarted < RETRY,
        "the first attempt takes the lease over, without waiting for it to expire"
    );
    assert_eq!(
        transitions(&api),
        0,
        "no transition: the holder did not change"
    );
}

#[test]
fn writing_a_record_keeps_other_spec_fields() {
    let lease = json!({"spec": {"preferredHolder": "x", "holderIdentity": "old"}});
    let record = Record {
        holder: "new".into(),
        lease_seconds: 10,
        acquire_time: None,
        renew_time: Some("t".into()),
        transitions: 3,
    };
    let written = record.write_into(lease);
    assert_eq!(written["spec"]["preferredHolder"], json!("x"));
    assert_eq!(Record::of(&written), record);
}
