//! In-process loops the API server needs to behave like Kubernetes on its own: bootstrap
//! objects, namespace lifecycle (Terminating → contents deleted → gone), the garbage collector
//! for ownerReferences, pod garbage collection (pods of vanished nodes), CRD establishment,
//! the node client certificate approver and signer (`csr`),
//! and per-namespace defaults (`default`
//! ServiceAccount, `kube-root-ca.crt`). They use the same pipeline as API clients.
//!
//! CRD establishment is API server work and runs on every server ([`start`]). The rest are
//! kube-controller-manager controllers upstream: with several servers they must run on the
//! elected leader only, so they start through [`LeaderLoops`], once per leadership term.
//!
//! These move to `ledge-controllers` once the controller harness exists; they live here now
//! because the API server's own conformance depends on them.

mod bootstrap;
mod crds;
pub mod csr;
mod gc;
mod namespaces;
mod podgc;

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::cache::Change;
use crate::state::ApiState;

pub use bootstrap::bootstrap;

/// Start the loops every server runs (CRD establishment); they stop with the state's
/// cancellation token.
pub fn start(state: Arc<ApiState>) {
    let cancel = state.cancel.clone();
    tokio::spawn(crds::run(state, cancel));
}

/// Starts the loops only the elected leader runs: namespace lifecycle, the garbage collector,
/// pod garbage collection and the node CSR approver/signer.
#[derive(Clone)]
pub struct LeaderLoops {
    state: Arc<ApiState>,
}

impl LeaderLoops {
    /// A starter for the loops of the server with this state.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }

    /// Start the loops for one leadership term; they stop with `cancel` (or at shutdown).
    /// Each rebuilds its view from the cache when it starts, so a later term starts afresh.
    pub fn start(&self, cancel: &CancellationToken) {
        let state = &self.state;
        tokio::spawn(csr::run(state.clone(), cancel.child_token()));
        tokio::spawn(namespaces::run(state.clone(), cancel.child_token()));
        tokio::spawn(podgc::run(state.clone(), cancel.child_token()));
        tokio::spawn(gc::run(state.clone(), cancel.child_token()));
    }
}

/// Follow every change in the cache from now on, calling `on_change` for each, until `cancel`
/// or shutdown. When `on_change` falls behind the live stream, the missed changes are replayed
/// from the cache's history; only when they have left the history too (changes truly lost) is
/// `resync` called, once, to rebuild from the current state.
pub async fn follow<F, R>(
    state: Arc<ApiState>,
    cancel: CancellationToken,
    mut on_change: F,
    mut resync: R,
) where
    F: AsyncFnMut(&Arc<ApiState>, Arc<Change>),
    R: AsyncFnMut(&Arc<ApiState>),
{
    let (snapshot, sub) = state.cache.snapshot_and_subscribe(PREFIX);
    let mut live = sub.live;
    let mut last = snapshot.revision;
    drop(snapshot);
    resync(&state).await;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = state.cancel.cancelled() => return,
            next = live.recv() => next,
        };
        match next {
            Ok(change) if change.revision > last => {
                last = change.revision;
                on_change(&state, change).await;
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                match state.cache.subscribe(PREFIX, last) {
                    Ok(sub) => {
                        tracing::debug!(missed, "system loop fell behind; replaying history");
                        live = sub.live;
                        for change in sub.replay {
                            if cancel.is_cancelled() || state.cancel.is_cancelled() {
                                return;
                            }
                            last = change.revision;
                            on_change(&state, change).await;
                        }
                    }
                    Err(e) => {
                        tracing::info!(missed, error = %e, "system loop lost changes; resyncing");
                        let (snapshot, sub) = state.cache.snapshot_and_subscribe(PREFIX);
                        live = sub.live;
                        last = snapshot.revision;
                        drop(snapshot);
                        resync(&state).await;
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

const PREFIX: &str = "/registry/";
