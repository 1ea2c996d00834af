//! The CronJob controller (upstream `pkg/controller/cronjob`, the v2 controller): starts a Job
//! named `<cronjob>-<minutes since the epoch>` from `spec.jobTemplate` at each time of the cron
//! schedule ([`cron`]) — only the most recent missed time, and not later than
//! `startingDeadlineSeconds` — honouring `suspend` and `concurrencyPolicy` (Allow, Forbid,
//! Replace); keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; deletes
//! finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`.
//!
//! Time zones: a schedule is read in `spec.timeZone` (an IANA name from the system's time zone
//! database, else ledge's bundled copy; UTC when unset). A zone that cannot be loaded (the API
//! refuses unknown names, but the database may change) gets an `UnknownTimeZone` warning event
//! instead of Jobs, as upstream.
//!
//! Time comes from the [`Clock`] seam, so [`schedule`]'s rules are tested at chosen instants;
//! API writes live in `sync.rs`.

pub mod cron;
pub mod schedule;
mod sync;

use std::sync::Arc;

use ledge_controller::kinds::CRON_JOB;
use ledge_controller::{
    Client, EventRecorder, Informer, WorkQueue, enqueue_all, enqueue_changes, itself, owner,
};
use tokio_util::sync::CancellationToken;

use crate::Informers;
use crate::clock::Clock;

/// The name events are signed with.
pub const COMPONENT: &str = "cronjob-controller";
/// Parallel reconciles (upstream `--concurrent-cron-job-syncs`).
const WORKERS: usize = 2;

/// The controller: its client, caches and clock.
pub struct CronJobController {
    client: Arc<dyn Client>,
    cron_jobs: Arc<Informer>,
    jobs: Arc<Informer>,
    events: EventRecorder,
    clock: Arc<dyn Clock>,
}

/// Start the CronJob controller on shared informers; it stops with `cancel`.
pub fn start(
    client: Arc<dyn Client>,
    informers: &Informers,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let ctl = Arc::new(CronJobController {
        events: EventRecorder::new(client.clone(), COMPONENT),
        client,
        cron_jobs: informers.cron_jobs.clone(),
        jobs: informers.jobs.clone(),
        clock,
    });
    let queue = WorkQueue::new();
    let cron_jobs = ctl.cron_jobs.clone();
    enqueue_changes(
        &cron_jobs,
        cron_jobs.clone(),
        queue.clone(),
        cancel.clone(),
        itself,
    );
    // Jobs are never adopted (upstream neither): only a Job's controller is queued.
    enqueue_changes(
        &ctl.jobs,
        cron_jobs.clone(),
        queue.clone(),
        cancel.clone(),
        |j| owner::owner_keys(j, &CRON_JOB, |_| Vec::new()),
    );
    let jobs = ctl.jobs.clone();
    tokio::spawn(async move {
        cron_jobs.wait_synced().await;
        jobs.wait_synced().await;
        enqueue_all(&cron_jobs, &queue);
        ledge_controller::run("cronjob", queue, WORKERS, cancel, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(key).await }
        })
        .await;
    });
}
