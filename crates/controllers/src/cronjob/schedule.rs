//! When a CronJob should have started a Job (upstream `mostRecentScheduleTime` and
//! `nextScheduleTime` in `pkg/controller/cronjob/utils.go`), the Job's name for a scheduled time
//! (`<cronjob>-<minutes since the epoch>`), and which finished Jobs the history limits drop —
//! pure functions of the CronJob, its Jobs and a time.

use chrono::{DateTime, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::Value;

use super::cron::Schedule;
use crate::meta;

/// The annotation a CronJob's Job carries with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed start times past which the controller warns (upstream's 100).
pub const TOO_MANY_MISSED: usize = 100;
/// Schedule steps walked before skipping ahead to the last week.
const WALK_LIMIT: usize = 10_000;

/// The scheduled times a CronJob missed up to `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    /// The most recent one, the only one that may still start.
    pub most_recent: Option<DateTime<Utc>>,
    /// How many there were (capped).
    pub count: usize,
}

/// The time from which schedules count: the last scheduled time (or the creation time), moved
/// up to `now - startingDeadlineSeconds` when that is later.
pub fn earliest(cron_job: &Value, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut t = meta::time_at(cron_job, "/status/lastScheduleTime")
        .or_else(|| meta::created(cron_job))
        .unwrap_or(now);
    if let Some(d) = starting_deadline(cron_job) {
        t = t.max(now - d);
    }
    t
}

/// `spec.startingDeadlineSeconds`, if set.
pub fn starting_deadline(cron_job: &Value) -> Option<Duration> {
    cron_job
        .at("/spec/startingDeadlineSeconds")
        .and_then(Value::as_i64)
        .map(Duration::seconds)
}

/// The schedule times after `earliest` and at or before `now`.
pub fn missed(schedule: &Schedule, earliest: DateTime<Utc>, now: DateTime<Utc>) -> Missed {
    let mut most_recent = None;
    let mut count = 0;
    let mut t = earliest;
    let mut steps = 0;
    while let Some(n) = schedule.next_after(t) {
        if n > now {
            break;
        }
        most_recent = Some(n);
        count += 1;
        t = n;
        steps += 1;
        if steps == WALK_LIMIT && now - Duration::days(7) > t {
            // A long outage of a frequent schedule: only the latest time matters.
            t = now - Duration::days(7);
        }
    }
    Missed { most_recent, count }
}

/// Whether a Job scheduled for `scheduled` may still start at `now`.
pub fn too_late(cron_job: &Value, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    starting_deadline(cron_job).is_some_and(|d| scheduled + d < now)
}

/// The name of the Job for a scheduled time (upstream `getJobName`).
pub fn job_name(cron_job: &Value, scheduled: DateTime<Utc>) -> String {
    format!("{}-{}", meta::name(cron_job), scheduled.timestamp() / 60)
}

/// Finished Jobs beyond a history limit, oldest first: the ones to delete. `jobs` are the
/// CronJob's finished Jobs of one outcome.
pub fn beyond_limit(mut jobs: Vec<&Value>, limit: usize) -> Vec<&Value> {
    jobs.sort_by(|a, b| {
        let start = |j: &Value| meta::time_at(j, "/status/startTime").or_else(|| meta::created(j));
        start(a)
            .cmp(&start(b))
            .then_with(|| meta::name(a).cmp(meta::name(b)))
    });
    let excess = jobs.len().saturating_sub(limit);
    jobs.truncate(excess);
    jobs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cronjob::cron;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_most_recent_missed_time_is_found() {
        let every5 = cron::parse("*/5 * * * *").expect("valid");
        let m = missed(
            &every5,
            t("2024-01-01T00:00:00Z"),
            t("2024-01-01T00:17:00Z"),
        );
        assert_eq!(
            m,
            Missed {
                most_recent: Some(t("2024-01-01T00:15:00Z")),
                count: 3
            }
        );
        let none = missed(
            &every5,
            t("2024-01-01T00:15:00Z"),
            t("2024-01-01T00:19:59Z"),
        );
        assert_eq!(none.most_recent, None);
        // Two years of a minutely schedule do not take two years of steps.
        let minutely = cron::parse("* * * * *").expect("valid");
        let long = missed(
            &minutely,
            t("2022-01-01T00:00:00Z"),
            t("2024-01-01T00:00:30Z"),
        );
        assert_eq!(long.most_recent, Some(t("2024-01-01T00:00:00Z")));
        assert!(long.count > TOO_MANY_MISSED);
    }

    #[test]
    fn starting_deadline_limits_how_far_back_and_how_late() {
        let cj = json!({"metadata": {"name": "c", "creationTimestamp": "2024-01-01T00:00:00Z"},
                        "spec": {"startingDeadlineSeconds": 60}});
        assert_eq!(
            earliest(&cj, t("2024-01-01T01:00:00Z")),
            t("2024-01-01T00:59:00Z")
        );
        assert!(!too_late(
            &cj,
            t("2024-01-01T00:59:30Z"),
            t("2024-01-01T01:00:00Z")
        ));
        assert!(too_late(
            &cj,
            t("2024-01-01T00:58:30Z"),
            t("2024-01-01T01:00:00Z")
        ));
        let no_deadline = json!({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"},
                                 "status": {"lastScheduleTime": "2024-01-01T00:30:00Z"}});
        assert_eq!(
            earliest(&no_deadline, t("2024-01-01T01:00:00Z")),
            t("2024-01-01T00:30:00Z")
        );
        assert!(!too_late(
            &no_deadline,
            t("2020-01-01T00:00:00Z"),
            t("2024-01-01T01:00:00Z")
        ));
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        let cj = json!({"metadata": {"name": "backup"}});
        assert_eq!(job_name(&cj, t("2024-01-01T00:00:00Z")), "backup-28401120");
    }

    #[test]
    fn history_limits_drop_the_oldest() {
        let j =
            |n: &str, start: &str| json!({"metadata": {"name": n}, "status": {"startTime": start}});
        let jobs = [
            j("b", "2024-01-02T00:00:00Z"),
            j("a", "2024-01-01T00:00:00Z"),
            j("c", "2024-01-03T00:00:00Z"),
        ];
        let dropped: Vec<&str> = beyond_limit(jobs.iter().collect(), 1)
            .iter()
            .map(|j| meta::name(j))
            .collect();
        assert_eq!(dropped, ["a", "b"]);
        assert!(beyond_limit(jobs.iter().collect(), 3).is_empty());
    }
}
