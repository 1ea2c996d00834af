//! ledge driven by the Rust `kube` client (kube-rs 5, k8s-openapi 0.29), as a controller or
//! operator written in Rust would use it: typed CRUD and patches, `kube::runtime::watcher`,
//! custom resources from `#[derive(CustomResource)]`, and discovery.
//!
//! Each test starts its own `ledge server` (the real binary, on a free loopback port with a temp
//! data dir) and expects what an upstream Kubernetes API server answers. Waits are bounded; no
//! test asserts on how long anything took.

mod crd;
mod crud;
mod discovery;
mod server;
mod watch;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{Stream, StreamExt};
use kube::runtime::watcher;

/// Upper bound for anything a test waits for: a watch event, a condition, a deletion.
const WAIT: Duration = Duration::from_secs(20);

/// Check that `result` is the Kubernetes error `code`/`reason` (e.g. 404 `NotFound`), returning
/// its message.
fn expect_status<T: Debug>(
    result: Result<T, kube::Error>,
    code: u16,
    reason: &str,
) -> anyhow::Result<String> {
    match result {
        Err(kube::Error::Api(status)) if status.code == code && status.reason == reason => {
            Ok(status.message)
        }
        Err(kube::Error::Api(status)) => bail!(
            "expected {code} {reason}, got {} {}: {:?}",
            status.code,
            status.reason,
            status.message
        ),
        Err(other) => bail!("expected {code} {reason}, got a client error: {other:#}"),
        Ok(value) => bail!("expected {code} {reason}, got success: {value:?}"),
    }
}

/// Poll `probe` until it returns `Some`, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next event of a watcher stream, failing on a watcher error, the end of the stream, or
/// nothing arriving within [`WAIT`].
async fn next_event<K, S>(stream: &mut S, waiting_for: &str) -> anyhow::Result<watcher::Event<K>>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(event))) => Ok(event),
        Ok(Some(Err(e))) => {
            Err(e).with_context(|| format!("watcher error waiting for {waiting_for}"))
        }
        Ok(None) => bail!("watcher stream ended waiting for {waiting_for}"),
        Err(_) => bail!("no watcher event within {WAIT:?} waiting for {waiting_for}"),
    }
}

/// A short, readable form of a watcher event for assertion messages: `Apply(name)`.
fn describe<K: kube::Resource>(event: &watcher::Event<K>) -> String {
    use kube::ResourceExt;
    match event {
        watcher::Event::Init => "Init".into(),
        watcher::Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        watcher::Event::InitDone => "InitDone".into(),
        watcher::Event::Apply(o) => format!("Apply({})", o.name_any()),
        watcher::Event::Delete(o) => format!("Delete({})", o.name_any()),
    }
}
