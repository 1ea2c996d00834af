//! The Job rules (upstream `pkg/controller/job`), as pure functions: which pods count as
//! succeeded or failed, how many should be active, Indexed completion indexes and their
//! `completedIndexes` text, the conditions a finished Job gets, its deadline and its
//! time-to-live after finishing.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::{meta, pod};

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation (and label) holding an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// How a pod ended, for the Job's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `phase: Succeeded`.
    Succeeded,
    /// `phase: Failed`, or deleted before it succeeded.
    Failed,
}

/// How `pod` ended, if it did (upstream `isPodFailed`: a pod deleted before succeeding failed).
pub fn outcome(pod: &Value) -> Option<Outcome> {
    match pod::phase(pod) {
        "Succeeded" => Some(Outcome::Succeeded),
        "Failed" => Some(Outcome::Failed),
        _ if meta::is_deleting(pod) => Some(Outcome::Failed),
        _ => None,
    }
}

/// Whether `pod` carries the tracking finalizer.
pub fn has_finalizer(pod: &Value) -> bool {
    pod.at("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(TRACKING_FINALIZER)))
}

/// `pod` without the tracking finalizer.
pub fn without_finalizer(pod: &Value) -> Value {
    let mut p = pod.clone();
    if let Some(f) = p
        .at_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        f.retain(|v| v.as_str() != Some(TRACKING_FINALIZER));
    }
    p
}

/// The Job's finished condition type (`Complete` or `Failed`), if it has one that is True.
pub fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| meta::condition(job, t).is_some_and(|c| meta::str_at(c, "/status") == "True"))
}

/// A Job condition as upstream writes it.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
           "reason": reason, "message": message})
}

/// `spec.completions`, if set.
pub fn completions(job: &Value) -> Option<i32> {
    job.at("/spec/completions")
        .and_then(Value::as_i64)
        .map(|n| n.clamp(0, i32::MAX.into()) as i32)
}

/// `spec.parallelism` (1 when unset).
pub fn parallelism(job: &Value) -> i32 {
    match job.at("/spec/parallelism") {
        Some(Value::Number(_)) => meta::int_at(job, "/spec/parallelism").max(0),
        _ => 1,
    }
}

/// Whether the Job is `Indexed`.
pub fn is_indexed(job: &Value) -> bool {
    meta::str_at(job, "/spec/completionMode") == "Indexed"
}

/// How many pods should be active (upstream `manageJob`): up to `parallelism`, never more than
/// the completions still missing; a work queue (no `completions`) starts no new pods once one
/// succeeded.
pub fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        None if succeeded > 0 => active.min(parallelism),
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    }
}

/// An Indexed pod's completion index (annotation first, then label).
pub fn index_of(pod: &Value) -> Option<i32> {
    meta::annotation(pod, COMPLETION_INDEX)
        .or_else(|| {
            pod.at("/metadata/labels")
                .and_then(|l| l.get(COMPLETION_INDEX))
                .and_then(Value::as_str)
        })
        .and_then(|s| s.parse().ok())
        .filter(|i| *i >= 0)
}

/// Parse `completedIndexes` (`1,3-5,7`); malformed parts are ignored.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Format indexes as `completedIndexes` does: ascending, runs of three or more as ranges
/// (upstream `orderedIntervals.String`: `1,2` stays a list, `3-5` is a range).
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        match last - first {
            0 => parts.push(first.to_string()),
            1 => parts.extend([first.to_string(), last.to_string()]),
            _ => parts.push(format!("{first}-{last}")),
        }
    }
    parts.join(",")
}

/// Whether the Job failed for good, and why (reason, message): more failed pods than
/// `backoffLimit`, restarts past it under `OnFailure`, or longer active than
/// `activeDeadlineSeconds`.
pub fn failure(
    job: &Value,
    failed: i32,
    active: &[&Value],
    now: DateTime<Utc>,
) -> Option<(&'static str, &'static str)> {
    let limit = match job.at("/spec/backoffLimit") {
        Some(Value::Number(_)) => meta::int_at(job, "/spec/backoffLimit"),
        _ => 6,
    };
    let on_failure = meta::str_at(job, "/spec/template/spec/restartPolicy") == "OnFailure";
    let restarts: i64 = active.iter().map(|p| restart_sum(p)).sum();
    let restarts_exceeded = on_failure
        && if limit == 0 {
            restarts > 0
        } else {
            restarts >= i64::from(limit)
        };
    if failed > limit || restarts_exceeded {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    if deadline(job).is_some_and(|d| d <= now) {
        return Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ));
    }
    None
}

fn restart_sum(pod: &Value) -> i64 {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|f| {
            pod.at(&format!("/status/{f}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum()
}

/// When the Job runs out of `activeDeadlineSeconds` (from `status.startTime`).
pub fn deadline(job: &Value) -> Option<DateTime<Utc>> {
    let seconds = job.at("/spec/activeDeadlineSeconds")?.as_i64()?;
    Some(meta::time_at(job, "/status/startTime")? + Duration::seconds(seconds))
}

/// When a finished Job is to be deleted (`ttlSecondsAfterFinished` after its completion time,
/// or after its finished condition turned True), if it has a TTL.
pub fn expires_at(job: &Value) -> Option<DateTime<Utc>> {
    let ttl = job.at("/spec/ttlSecondsAfterFinished")?.as_i64()?;
    let kind = finished(job)?;
    let at = meta::time_at(job, "/status/completionTime").or_else(|| {
        meta::condition(job, kind).and_then(|c| meta::time_at(c, "/lastTransitionTime"))
    })?;
    Some(at + Duration::seconds(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        meta::time_at(&json!({"t": "2024-01-01T00:00:00Z"}), "/t").expect("fixed time")
            + Duration::seconds(s)
    }

    #[test]
    fn active_pods_are_bounded_by_parallelism_and_missing_completions() {
        assert_eq!(want_active(Some(3), 2, 0, 0), 2);
        assert_eq!(want_active(Some(3), 2, 2, 1), 1);
        assert_eq!(want_active(Some(3), 2, 3, 0), 0);
        assert_eq!(want_active(None, 4, 0, 0), 4);
        assert_eq!(
            want_active(None, 4, 1, 2),
            2,
            "a work queue starts nothing new after a success"
        );
    }

    #[test]
    fn pods_deleted_before_success_count_as_failed() {
        let mut p = json!({"status": {"phase": "Running"}});
        assert_eq!(outcome(&p), None);
        p["metadata"] = json!({"deletionTimestamp": "2024-01-01T00:00:00Z"});
        assert_eq!(outcome(&p), Some(Outcome::Failed));
        p["status"]["phase"] = json!("Succeeded");
        assert_eq!(outcome(&p), Some(Outcome::Succeeded));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let set = parse_indexes("0,2-4,7,8");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 7, 8]);
        assert_eq!(format_indexes(&set), "0,2-4,7,8");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(parse_indexes("x,3-,5"), BTreeSet::from([5]));
    }

    #[test]
    fn backoff_limit_and_deadline_fail_the_job() {
        let job = json!({"spec": {"backoffLimit": 1, "activeDeadlineSeconds": 10,
                                  "template": {"spec": {"restartPolicy": "Never"}}},
                         "status": {"startTime": "2024-01-01T00:00:00Z"}});
        assert_eq!(failure(&job, 1, &[], at(5)), None);
        assert_eq!(
            failure(&job, 2, &[], at(5)).map(|f| f.0),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(
            failure(&job, 0, &[], at(10)).map(|f| f.0),
            Some("DeadlineExceeded")
        );
        let mut on_failure = job.clone();
        on_failure["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let restarting = json!({"status": {"containerStatuses": [{"restartCount": 1}]}});
        assert_eq!(
            failure(&on_failure, 0, &[&restarting], at(1)).map(|f| f.0),
            Some("BackoffLimitExceeded")
        );
    }

    #[test]
    fn finished_jobs_expire_after_their_ttl() {
        let mut job = json!({"spec": {"ttlSecondsAfterFinished": 5}, "status": {}});
        assert_eq!(expires_at(&job), None, "not finished");
        job["status"] = json!({"completionTime": "2024-01-01T00:00:10Z",
                               "conditions": [condition("Complete", "True", "", "", "2024-01-01T00:00:10Z")]});
        assert_eq!(expires_at(&job), Some(at(15)));
        job["status"] =
            json!({"conditions": [condition("Failed", "True", "", "", "2024-01-01T00:00:20Z")]});
        assert_eq!(expires_at(&job), Some(at(25)));
    }
}
