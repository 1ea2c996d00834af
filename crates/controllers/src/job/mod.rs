//! The Job controller (upstream `pkg/controller/job`, plus the TTL-after-finished controller):
//! runs pods from a Job's template until `completions` succeeded (NonIndexed) or every index in
//! `0..completions` succeeded once (Indexed: `batch.kubernetes.io/job-completion-index`
//! annotation and label), at most `parallelism` at a time; fails the Job past `backoffLimit`
//! (`BackoffLimitExceeded`) or `activeDeadlineSeconds` (`DeadlineExceeded`); deletes a finished
//! Job `ttlSecondsAfterFinished` later (background propagation).
//!
//! Counting is exact, as upstream's: every pod carries the `batch.kubernetes.io/job-tracking`
//! finalizer; a finished pod's uid goes to `status.uncountedTerminatedPods` first, then its
//! finalizer is removed, then it moves into `succeeded`/`failed`. A reconcile waits until the
//! pod cache shows its own finalizer removals, so a pod is never counted twice.
//!
//! Pure rules live in [`rules`]; API writes in `sync.rs`.

pub mod rules;
mod sync;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ledge_controller::kinds::JOB;
use ledge_controller::{
    Client, EventRecorder, Expectations, Informer, ObjectKey, WorkQueue, enqueue_all,
    enqueue_changes, itself, owner,
};
use tokio_util::sync::CancellationToken;

use crate::Informers;
use crate::clock::Clock;

/// The name events are signed with.
pub const COMPONENT: &str = "job-controller";
/// Parallel reconciles (upstream `--concurrent-job-syncs`).
const WORKERS: usize = 5;

/// The controller: its client, caches, and the expectations of its own writes.
pub struct JobController {
    client: Arc<dyn Client>,
    jobs: Arc<Informer>,
    pods: Arc<Informer>,
    expectations: Expectations,
    /// Per Job, the pod revision its last finalizer removals were written at.
    removals: Mutex<HashMap<ObjectKey, u64>>,
    events: EventRecorder,
    clock: Arc<dyn Clock>,
}

/// Start the Job controller on shared informers; it stops with `cancel`.
pub fn start(
    client: Arc<dyn Client>,
    informers: &Informers,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let ctl = Arc::new(JobController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        jobs: informers.jobs.clone(),
        pods: informers.pods.clone(),
        expectations: Expectations::new(),
        removals: Mutex::default(),
        clock,
    });
    let queue = WorkQueue::new();
    let jobs = ctl.jobs.clone();
    enqueue_changes(&jobs, jobs.clone(), queue.clone(), cancel.clone(), itself);
    let owners = jobs.clone();
    enqueue_changes(
        &ctl.pods,
        jobs.clone(),
        queue.clone(),
        cancel.clone(),
        move |p| owner::owner_keys(p, &JOB, |ns| owners.store().list(ns)),
    );
    let pods = ctl.pods.clone();
    tokio::spawn(async move {
        jobs.wait_synced().await;
        pods.wait_synced().await;
        enqueue_all(&jobs, &queue);
        ledge_controller::run("job", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}
