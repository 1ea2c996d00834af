//! One CronJob reconcile (upstream `syncCronJob`): bring `status.active` and
//! `lastSuccessfulTime` up to date from the CronJob's Jobs, start the Job of the most recent
//! missed schedule time if allowed, prune history, and look again at the next schedule time.

use std::time::Duration;

use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{CRON_JOB, JOB};
use ledge_controller::{Action, ObjectKey, is_namespace_terminating, owner};
use serde_json::{Value, json};

use super::CronJobController;
use super::cron;
use super::schedule::{self, SCHEDULED_TIMESTAMP};
use crate::job::rules::finished;
use crate::meta;

/// Slack after a schedule time, so the requeue lands after it (upstream adds 100 ms).
const SLACK: Duration = Duration::from_millis(100);

impl CronJobController {
    /// Reconcile one CronJob.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let Some(cached) = self.cron_jobs.store().get(&key) else {
            return Ok(Action::AwaitChange);
        };
        let ns = key.namespace.as_deref();
        let mut cj = (*cached).clone();
        let uid = meta::uid(&cj).to_string();
        let children: Vec<_> = self
            .jobs
            .store()
            .list(ns)
            .into_iter()
            .filter(|j| owner::is_controlled_by(j, &uid))
            .collect();
        let now = self.clock.now();
        let mut status = cj.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut active: Vec<Value> = status
            .get("active")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let in_active =
            |active: &[Value], uid: &str| active.iter().any(|r| meta::str_at(r, "/uid") == uid);
        for j in &children {
            let ju = meta::uid(j);
            let done = finished(j);
            if !in_active(&active, ju) && done.is_none() {
                self.events.warning(
                    &CRON_JOB,
                    &cj,
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        meta::name(j)
                    ),
                );
            } else if in_active(&active, ju) && done.is_some() {
                active.retain(|r| meta::str_at(r, "/uid") != ju);
                self.events.normal(
                    &CRON_JOB,
                    &cj,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, status: {}",
                        meta::name(j),
                        done.unwrap_or("")
                    ),
                );
            }
            if done == Some("Complete")
                && let Some(t) = meta::time_at(j, "/status/completionTime")
                && meta::time_at(&status, "/lastSuccessfulTime").is_none_or(|l| t > l)
            {
                status["lastSuccessfulTime"] = json!(meta::format_time(t));
            }
        }
        active.retain(|r| {
            let present = children
                .iter()
                .any(|j| meta::uid(j) == meta::str_at(r, "/uid"));
            if !present {
                self.events.normal(
                    &CRON_JOB,
                    &cj,
                    "MissingJob",
                    format!("Active job went missing: {}", meta::str_at(r, "/name")),
                );
            }
            present
        });
        let result = self.schedule(&mut cj, &mut active, &mut status, now).await;
        set_active(&mut status, active);
        if cj.get("status") != Some(&status) {
            cj["status"] = status;
            cj = self.client.update_status(&CRON_JOB, ns, cj).await?;
        }
        self.prune_history(&cj, &children).await?;
        result
    }

    /// Start the Job of the most recent missed schedule time, if allowed; when to look again.
    async fn schedule(
        &self,
        cj: &mut Value,
        active: &mut Vec<Value>,
        status: &mut Value,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Action, ApiError> {
        if meta::is_deleting(cj) {
            return Ok(Action::AwaitChange);
        }
        let zone = match cron::Zone::named(meta::str_at(cj, "/spec/timeZone")) {
            Ok(z) => z,
            Err(e) => {
                self.events.warning(
                    &CRON_JOB,
                    cj,
                    "UnknownTimeZone",
                    format!(
                        "invalid timeZone: {:?}: {e}",
                        meta::str_at(cj, "/spec/timeZone")
                    ),
                );
                return Ok(Action::AwaitChange);
            }
        };
        let sched = match cron::parse(meta::str_at(cj, "/spec/schedule")) {
            Ok(s) => s.in_zone(zone),
            Err(e) => {
                self.events.warning(
                    &CRON_JOB,
                    cj,
                    "InvalidSchedule",
                    format!(
                        "invalid schedule: {} : {e}",
                        meta::str_at(cj, "/spec/schedule")
                    ),
                );
                return Ok(Action::AwaitChange);
            }
        };
        if cj.at("/spec/suspend").and_then(Value::as_bool) == Some(true) {
            return Ok(Action::AwaitChange);
        }
        let next = requeue(&sched, now);
        let missed = schedule::missed(&sched, schedule::earliest(cj, now), now);
        if missed.count > schedule::TOO_MANY_MISSED {
            self.events.warning(
                &CRON_JOB,
                cj,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            );
        }
        let Some(scheduled) = missed.most_recent else {
            return Ok(next);
        };
        if schedule::too_late(cj, scheduled, now) {
            self.events.warning(
                &CRON_JOB,
                cj,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    meta::format_time(scheduled)
                ),
            );
            return Ok(next);
        }
        let ns = meta::namespace(cj).map(str::to_string);
        let ns = ns.as_deref();
        let name = schedule::job_name(cj, scheduled);
        if active.iter().any(|r| meta::str_at(r, "/name") == name)
            || self.jobs.store().get(&ObjectKey::new(ns, &name)).is_some()
        {
            return Ok(next);
        }
        match meta::str_at(cj, "/spec/concurrencyPolicy") {
            "Forbid" if !active.is_empty() => return Ok(next),
            "Replace" => {
                for r in std::mem::take(active) {
                    let job_name = meta::str_at(&r, "/name");
                    match self
                        .client
                        .delete(&JOB, ns, job_name, Some("Background"))
                        .await
                    {
                        Ok(()) => self.events.normal(
                            &CRON_JOB,
                            cj,
                            "SuccessfulDelete",
                            format!("Deleted job {job_name}"),
                        ),
                        Err(e) if e.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => {}
        }
        let job = new_job(cj, &name, scheduled);
        match self.client.create(&JOB, ns, job).await {
            Ok(created) => {
                self.events.normal(
                    &CRON_JOB,
                    cj,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                active.push(json!({
                    "apiVersion": "batch/v1", "kind": "Job", "name": name,
                    "namespace": ns.unwrap_or(""), "uid": meta::uid(&created),
                    "resourceVersion": meta::str_at(&created, "/metadata/resourceVersion"),
                }));
                status["lastScheduleTime"] = json!(meta::format_time(scheduled));
            }
            // Created by an earlier pass the cache does not show yet.
            Err(e) if e.code == 409 => {}
            Err(e) if is_namespace_terminating(&e) => return Ok(Action::AwaitChange),
            Err(e) => {
                self.events.warning(
                    &CRON_JOB,
                    cj,
                    "FailedCreate",
                    format!("Error creating job: {}", e.message),
                );
                return Err(e);
            }
        }
        Ok(next)
    }

    /// Delete finished Jobs beyond the history limits (upstream `cleanupFinishedJobs`).
    async fn prune_history(
        &self,
        cj: &Value,
        children: &[std::sync::Arc<Value>],
    ) -> Result<(), ApiError> {
        let limit = |f: &str, default: i64| {
            usize::try_from(
                cj.at(&format!("/spec/{f}"))
                    .and_then(Value::as_i64)
                    .unwrap_or(default),
            )
            .unwrap_or(0)
        };
        let of = |kind: &str| -> Vec<&Value> {
            children
                .iter()
                .map(|j| &**j)
                .filter(|j| finished(j) == Some(kind))
                .collect()
        };
        let mut victims =
            schedule::beyond_limit(of("Complete"), limit("successfulJobsHistoryLimit", 3));
        victims.extend(schedule::beyond_limit(
            of("Failed"),
            limit("failedJobsHistoryLimit", 1),
        ));
        for j in victims {
            match self
                .client
                .delete(&JOB, meta::namespace(j), meta::name(j), Some("Background"))
                .await
            {
                Ok(()) => self.events.normal(
                    &CRON_JOB,
                    cj,
                    "SuccessfulDelete",
                    format!("Deleted job {}", meta::name(j)),
                ),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Look again just after the next schedule time.
fn requeue(sched: &cron::Schedule, now: chrono::DateTime<chrono::Utc>) -> Action {
    match sched.next_after(now) {
        Some(t) => Action::RequeueAfter((t - now).to_std().unwrap_or_default() + SLACK),
        None => Action::AwaitChange,
    }
}

fn set_active(status: &mut Value, active: Vec<Value>) {
    if active.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("active");
        }
    } else {
        status["active"] = Value::Array(active);
    }
}

/// The Job for `scheduled` (upstream `getJobFromTemplate2`).
fn new_job(cj: &Value, name: &str, scheduled: chrono::DateTime<chrono::Utc>) -> Value {
    let template = cj.at("/spec/jobTemplate").cloned().unwrap_or_default();
    let mut metadata = json!({
        "name": name,
        "namespace": meta::namespace(cj).unwrap_or(""),
        "ownerReferences": [owner::controller_ref(&CRON_JOB, cj)],
    });
    for field in ["labels", "annotations"] {
        if let Some(v) = template.at(&format!("/metadata/{field}"))
            && v.is_object()
        {
            metadata[field] = v.clone();
        }
    }
    meta::set(
        &mut metadata,
        &["annotations", SCHEDULED_TIMESTAMP],
        json!(meta::format_time(scheduled)),
    );
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}
