//! One Job reconcile (upstream `syncJob` and `trackJobStatusAndRemoveFinalizers`): count
//! finished pods through `uncountedTerminatedPods` and the tracking finalizer, decide whether
//! the Job completed or failed, create or delete pods towards `parallelism`, write status, and
//! delete the Job once its TTL after finishing has passed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use ledge_api::ApiError;
use ledge_api::Pointer as _;
use ledge_controller::kinds::{JOB, POD};
use ledge_controller::{Action, ObjectKey, is_namespace_terminating, owner};
use serde_json::{Value, json};

use super::JobController;
use super::rules::{self, COMPLETION_INDEX, Outcome, TRACKING_FINALIZER};
use crate::{meta, pod};

/// Most pods created in one reconcile.
const BURST: usize = 500;
/// How soon to look again while the pod cache catches up with finalizer removals.
const CATCH_UP: Duration = Duration::from_millis(100);

/// The uids of finished pods not yet in the counts.
#[derive(Default, PartialEq)]
struct Uncounted {
    succeeded: Vec<String>,
    failed: Vec<String>,
}

impl Uncounted {
    fn of(job: &Value) -> Self {
        let list = |f: &str| {
            job.at(&format!("/status/uncountedTerminatedPods/{f}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        Self {
            succeeded: list("succeeded"),
            failed: list("failed"),
        }
    }

    fn contains(&self, uid: &str) -> bool {
        self.succeeded.iter().chain(&self.failed).any(|u| u == uid)
    }

    fn to_json(&self) -> Value {
        let mut v = json!({});
        if !self.succeeded.is_empty() {
            v["succeeded"] = json!(self.succeeded);
        }
        if !self.failed.is_empty() {
            v["failed"] = json!(self.failed);
        }
        v
    }
}

impl JobController {
    /// Reconcile one Job.
    ///
    /// # Errors
    /// A failed API call; the harness retries with back-off.
    pub(super) async fn reconcile(&self, key: ObjectKey) -> Result<Action, ApiError> {
        let ns = key.namespace.as_deref();
        let Some(cached) = self.jobs.store().get(&key) else {
            self.expectations.forget(&key);
            self.release_orphans(&key).await?;
            return Ok(Action::AwaitChange);
        };
        let needed = self
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0);
        if self.pods.observed_revision() < needed {
            return Ok(Action::RequeueAfter(CATCH_UP));
        }
        let mut job = (*cached).clone();
        let now = self.clock.now();
        let now_text = meta::format_time(now);
        if let Some(at) = rules::expires_at(&job)
            && at <= now
        {
            match self
                .client
                .delete(&JOB, ns, &key.name, Some("Background"))
                .await
            {
                Ok(()) | Err(ApiError { code: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            return Ok(Action::AwaitChange);
        }
        let selector = meta::selector(&job);
        let pods = owner::claim(
            &*self.client,
            &JOB,
            &POD,
            &job,
            &selector,
            self.pods.store().list(ns),
        )
        .await?;
        let was_finished = rules::finished(&job).is_some();
        let indexed = rules::is_indexed(&job);
        let completions = rules::completions(&job);

        // 1. Finished pods still holding the finalizer are recorded as uncounted.
        let mut uncounted = Uncounted::of(&job);
        let mut completed = rules::parse_indexes(meta::str_at(&job, "/status/completedIndexes"));
        let mut recorded = false;
        if !was_finished {
            for p in &pods {
                if !rules::has_finalizer(p) || uncounted.contains(meta::uid(p)) {
                    continue;
                }
                match rules::outcome(p) {
                    Some(Outcome::Succeeded) => {
                        uncounted.succeeded.push(meta::uid(p).to_string());
                        if indexed
                            && let Some(i) = rules::index_of(p)
                            && completions.is_some_and(|c| i < c)
                        {
                            completed.insert(i);
                        }
                        recorded = true;
                    }
                    Some(Outcome::Failed) => {
                        uncounted.failed.push(meta::uid(p).to_string());
                        recorded = true;
                    }
                    None => {}
                }
            }
        }
        if recorded {
            let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
            status["uncountedTerminatedPods"] = uncounted.to_json();
            if indexed {
                status["completedIndexes"] = json!(rules::format_indexes(&completed));
            }
            job["status"] = status;
            job = self.client.update_status(&JOB, ns, job).await?;
        }

        // 2. Their finalizers go (every pod's, once the Job is finished).
        let release: Vec<&Arc<Value>> = pods
            .iter()
            .filter(|p| rules::has_finalizer(p))
            .filter(|p| was_finished || uncounted.contains(meta::uid(p)))
            .collect();
        let mut released: Vec<String> = Vec::new();
        let mut max_rv = 0;
        let mut first_error = None;
        for p in release {
            match self
                .client
                .update(&POD, meta::namespace(p), rules::without_finalizer(p))
                .await
            {
                Ok(written) => {
                    max_rv = max_rv.max(rv(&written));
                    released.push(meta::uid(p).to_string());
                }
                Err(e) if e.code == 404 => released.push(meta::uid(p).to_string()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if max_rv > 0 {
            self.removals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), max_rv);
        }

        // 3. Released pods move into the counts.
        let holds = |uid: &str| {
            !released.iter().any(|r| r == uid)
                && pods
                    .iter()
                    .any(|p| meta::uid(p) == uid && rules::has_finalizer(p))
        };
        let mut succeeded = meta::int_at(&job, "/status/succeeded");
        let mut failed = meta::int_at(&job, "/status/failed");
        let before = uncounted.succeeded.len() + uncounted.failed.len();
        uncounted.succeeded.retain(|u| {
            let keep = holds(u);
            if !keep && !indexed {
                succeeded += 1;
            }
            keep
        });
        uncounted.failed.retain(|u| {
            let keep = holds(u);
            if !keep {
                failed += 1;
            }
            keep
        });
        let flushed = before != uncounted.succeeded.len() + uncounted.failed.len();
        if indexed {
            succeeded = i32::try_from(completed.len()).unwrap_or(i32::MAX);
        }

        let active: Vec<&Arc<Value>> = pods.iter().filter(|p| pod::is_active(p)).collect();
        let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
        let mut conditions: Vec<Value> = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut active_count = i32::try_from(active.len()).unwrap_or(i32::MAX);
        let suspended = job.at("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let mut next: Option<Duration> = None;
        if !was_finished && !meta::is_deleting(&job) {
            set_suspended(&mut conditions, suspended, &now_text);
            if !suspended && status.get("startTime").is_none() {
                status["startTime"] = json!(now_text);
                meta::set(&mut job, &["status", "startTime"], json!(now_text));
            }
            let active_values: Vec<&Value> = active.iter().map(|p| &***p).collect();
            let complete = match completions {
                _ if !uncounted.failed.is_empty() || !uncounted.succeeded.is_empty() => false,
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            };
            if let Some((reason, message)) = (!complete && !suspended)
                .then(|| rules::failure(&job, failed, &active_values, now))
                .flatten()
            {
                self.delete_pods(&key, &job, &active).await?;
                active_count = 0;
                conditions.push(rules::condition(
                    "Failed", "True", reason, message, &now_text,
                ));
                self.events.warning(&JOB, &job, reason, message);
            } else if complete {
                self.delete_pods(&key, &job, &active).await?;
                active_count = 0;
                conditions.push(rules::condition(
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    &now_text,
                ));
                status["completionTime"] = json!(now_text);
                self.events.normal(&JOB, &job, "Completed", "Job completed");
            } else if self.expectations.satisfied(&key, &self.pods) {
                let want = if suspended {
                    0
                } else {
                    rules::want_active(
                        completions,
                        rules::parallelism(&job),
                        succeeded,
                        active_count,
                    )
                };
                active_count += self.manage(&key, &job, &active, &completed, want).await?;
                if let Some(d) = rules::deadline(&job) {
                    next = Some((d - now).to_std().unwrap_or_default() + CATCH_UP);
                }
            }
        }
        let ready = active.iter().filter(|p| pod::is_ready(p)).count();
        for (field, n) in [
            ("active", active_count),
            ("succeeded", succeeded),
            ("failed", failed),
        ] {
            if n == 0 {
                if let Some(m) = status.as_object_mut() {
                    m.remove(field);
                }
            } else {
                status[field] = json!(n);
            }
        }
        status["ready"] = json!(ready);
        status["uncountedTerminatedPods"] = uncounted.to_json();
        if indexed {
            status["completedIndexes"] = json!(rules::format_indexes(&completed));
        }
        if conditions.is_empty() {
            if let Some(m) = status.as_object_mut() {
                m.remove("conditions");
            }
        } else {
            status["conditions"] = Value::Array(conditions);
        }
        if job.get("status") != Some(&status) || flushed {
            job["status"] = status;
            job = self.client.update_status(&JOB, ns, job).await?;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some(at) = rules::expires_at(&job) {
            let wait = (at - now).to_std().unwrap_or_default() + CATCH_UP;
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
        Ok(next.map_or(Action::AwaitChange, Action::RequeueAfter))
    }

    /// Create or delete pods so that `want` are active; how the active count changed.
    async fn manage(
        &self,
        key: &ObjectKey,
        job: &Value,
        active: &[&Arc<Value>],
        completed: &BTreeSet<i32>,
        want: i32,
    ) -> Result<i32, ApiError> {
        let have = i32::try_from(active.len()).unwrap_or(i32::MAX);
        if rules::is_indexed(job) {
            // Duplicated or stray indexes go; missing indexes are started, lowest first.
            let total = rules::completions(job).unwrap_or(0);
            let mut seen = BTreeSet::new();
            let mut surplus: Vec<&Arc<Value>> = Vec::new();
            for p in active {
                match rules::index_of(p) {
                    Some(i) if i < total && !completed.contains(&i) && seen.insert(i) => {}
                    _ => surplus.push(p),
                }
            }
            self.delete_pods(key, job, &surplus).await?;
            let room = usize::try_from(want - i32::try_from(seen.len()).unwrap_or(0)).unwrap_or(0);
            let missing: Vec<i32> = (0..total)
                .filter(|i| !completed.contains(i) && !seen.contains(i))
                .take(room.min(BURST))
                .collect();
            let created = self
                .create_pods(key, job, missing.into_iter().map(Some).collect())
                .await?;
            return Ok(created - i32::try_from(surplus.len()).unwrap_or(0));
        }
        if have > want {
            // Not-ready and newest pods go first.
            let mut victims: Vec<&Arc<Value>> = active.to_vec();
            victims.sort_by(|a, b| {
                pod::is_ready(a)
                    .cmp(&pod::is_ready(b))
                    .then_with(|| meta::by_creation(b, a))
            });
            let n = usize::try_from(have - want).unwrap_or(0);
            victims.truncate(n);
            self.delete_pods(key, job, &victims).await?;
            return Ok(want - have);
        }
        let n = usize::try_from(want - have).unwrap_or(0).min(BURST);
        self.create_pods(key, job, vec![None; n]).await
    }

    /// Create one pod per entry (with its completion index, for Indexed Jobs).
    async fn create_pods(
        &self,
        key: &ObjectKey,
        job: &Value,
        indexes: Vec<Option<i32>>,
    ) -> Result<i32, ApiError> {
        let ns = meta::namespace(job).unwrap_or("");
        let template = job.at("/spec/template").cloned().unwrap_or_default();
        let reference = owner::controller_ref(&JOB, job);
        let writes = indexes.iter().map(|index| {
            let prefix = match index {
                Some(i) => format!("{}-{i}", meta::name(job)),
                None => meta::name(job).to_string(),
            };
            let mut p = pod::from_template(&template, ns, &prefix, reference.clone());
            let mut finalizers: Vec<Value> = p
                .at("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            finalizers.push(json!(TRACKING_FINALIZER));
            meta::set(
                &mut p,
                &["metadata", "finalizers"],
                Value::Array(finalizers),
            );
            if let Some(i) = index {
                meta::set(
                    &mut p,
                    &["metadata", "annotations", COMPLETION_INDEX],
                    json!(i.to_string()),
                );
                meta::set(
                    &mut p,
                    &["metadata", "labels", COMPLETION_INDEX],
                    json!(i.to_string()),
                );
                if meta::str_at(&p, "/spec/hostname").is_empty() {
                    meta::set(&mut p, &["spec", "hostname"], json!(prefix));
                }
            }
            self.client.create(&POD, Some(ns), p)
        });
        let mut created = 0;
        let mut first_error = None;
        for result in join_all(writes).await {
            match result {
                Ok(p) => {
                    created += 1;
                    self.expectations.created(key, &p);
                    self.events.normal(
                        &JOB,
                        job,
                        "SuccessfulCreate",
                        format!("Created pod: {}", meta::name(&p)),
                    );
                }
                Err(e) if is_namespace_terminating(&e) => return Ok(created),
                Err(e) => {
                    self.events.warning(
                        &JOB,
                        job,
                        "FailedCreate",
                        format!("Error creating: {}", e.message),
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(created),
        }
    }

    async fn delete_pods(
        &self,
        key: &ObjectKey,
        job: &Value,
        victims: &[&Arc<Value>],
    ) -> Result<(), ApiError> {
        let mut first_error = None;
        for p in victims {
            match self
                .client
                .delete(&POD, meta::namespace(p), meta::name(p), None)
                .await
            {
                Ok(()) => {
                    self.expectations.deleted(key, p);
                    self.events.normal(
                        &JOB,
                        job,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", meta::name(p)),
                    );
                }
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The Job is gone: its pods must not keep the tracking finalizer forever.
    async fn release_orphans(&self, key: &ObjectKey) -> Result<(), ApiError> {
        self.removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        for p in self.pods.store().list(key.namespace.as_deref()) {
            let ours = owner::controller_of(&p).is_some_and(|r| {
                meta::str_at(r, "/kind") == JOB.kind && meta::str_at(r, "/name") == key.name
            });
            if !ours || !rules::has_finalizer(&p) {
                continue;
            }
            match self
                .client
                .update(&POD, meta::namespace(&p), rules::without_finalizer(&p))
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Keep the `Suspended` condition in step with `spec.suspend`.
fn set_suspended(conditions: &mut Vec<Value>, suspended: bool, now: &str) {
    let pos = conditions
        .iter()
        .position(|c| meta::str_at(c, "/type") == "Suspended");
    match (pos, suspended) {
        (None, true) => conditions.push(rules::condition(
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        )),
        (Some(i), s) => {
            let want = if s { "True" } else { "False" };
            if meta::str_at(&conditions[i], "/status") != want {
                conditions[i] = if s {
                    rules::condition("Suspended", "True", "JobSuspended", "Job suspended", now)
                } else {
                    rules::condition("Suspended", "False", "JobResumed", "Job resumed", now)
                };
            }
        }
        (None, false) => {}
    }
}

fn rv(obj: &Value) -> u64 {
    meta::str_at(obj, "/metadata/resourceVersion")
        .parse()
        .unwrap_or(0)
}
