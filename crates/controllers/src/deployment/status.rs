//! A Deployment's status: counts summed over its ReplicaSets, the `Available` condition, and
//! the `Progressing` condition that tracks a rollout against `progressDeadlineSeconds`
//! (upstream `calculateStatus` in `sync.go`, `syncRolloutStatus` and `requeueStuckDeployment`
//! in `progress.go`, the condition helpers in `util/deployment_util.go`). `kubectl rollout
//! status` decides from exactly these fields.

use chrono::{DateTime, Duration, Utc};
use ledge_api::Pointer as _;
use serde_json::{Map, Value, json};

use super::plan::Rs;
use super::spec::Spec;
use crate::meta;

/// Condition type: enough pods are available.
pub const AVAILABLE: &str = "Available";
/// Condition type: the rollout makes progress, completed, or timed out.
pub const PROGRESSING: &str = "Progressing";
/// Reason: a ReplicaSet was scaled during the rollout.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// Reason: the new ReplicaSet could not be created.
pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";
/// Reason: the new ReplicaSet was created.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// Reason: an existing ReplicaSet matches the template.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// Reason: the rollout completed.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// Reason: no progress within `progressDeadlineSeconds`.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// Reason: the Deployment was paused.
pub const PAUSED: &str = "DeploymentPaused";
/// Reason: the Deployment was resumed.
pub const RESUMED: &str = "DeploymentResumed";
/// Reason: at least `replicas - maxUnavailable` pods are available.
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Reason: fewer than `replicas - maxUnavailable` pods are available.
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// One status condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `type`.
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Last time the condition was written with progress.
    pub last_update_time: String,
    /// Last time `status` changed.
    pub last_transition_time: String,
}

impl Condition {
    /// A condition stamped `now`.
    pub fn new(
        type_: &str,
        status: &str,
        reason: &str,
        message: String,
        now: DateTime<Utc>,
    ) -> Self {
        let t = meta::format_time(now);
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_update_time: t.clone(),
            last_transition_time: t,
        }
    }

    fn of(v: &Value) -> Self {
        let s = |f: &str| meta::str_at(v, f).to_string();
        Self {
            type_: s("/type"),
            status: s("/status"),
            reason: s("/reason"),
            message: s("/message"),
            last_update_time: s("/lastUpdateTime"),
            last_transition_time: s("/lastTransitionTime"),
        }
    }

    fn to_json(&self) -> Value {
        json!({"type": self.type_, "status": self.status, "lastUpdateTime": self.last_update_time,
               "lastTransitionTime": self.last_transition_time, "reason": self.reason,
               "message": self.message})
    }
}

/// `DeploymentStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The generation this status describes.
    pub observed_generation: i64,
    /// Pods of all its ReplicaSets.
    pub replicas: i32,
    /// Pods of the new ReplicaSet.
    pub updated_replicas: i32,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Available pods.
    pub available_replicas: i32,
    /// Wanted pods not available.
    pub unavailable_replicas: i32,
    /// Hash collisions met so far.
    pub collision_count: Option<i32>,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

impl Status {
    /// Read `status` of a Deployment.
    pub fn of(d: &Value) -> Self {
        let n = |f: &str| meta::int_at(d, &format!("/status/{f}"));
        Self {
            observed_generation: d
                .at("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            replicas: n("replicas"),
            updated_replicas: n("updatedReplicas"),
            ready_replicas: n("readyReplicas"),
            available_replicas: n("availableReplicas"),
            unavailable_replicas: n("unavailableReplicas"),
            collision_count: d
                .at("/status/collisionCount")
                .and_then(Value::as_i64)
                .map(|c| c.clamp(0, i32::MAX.into()) as i32),
            conditions: d
                .at("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(Condition::of)
                .collect(),
        }
    }

    /// The JSON upstream writes (zero counts omitted).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: i64| {
            if v != 0 {
                m.insert(k.into(), json!(v));
            }
        };
        put("observedGeneration", self.observed_generation);
        put("replicas", self.replicas.into());
        put("updatedReplicas", self.updated_replicas.into());
        put("readyReplicas", self.ready_replicas.into());
        put("availableReplicas", self.available_replicas.into());
        put("unavailableReplicas", self.unavailable_replicas.into());
        if let Some(c) = self.collision_count {
            m.insert("collisionCount".into(), json!(c));
        }
        if !self.conditions.is_empty() {
            m.insert(
                "conditions".into(),
                Value::Array(self.conditions.iter().map(Condition::to_json).collect()),
            );
        }
        Value::Object(m)
    }

    /// The condition of `type_`.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Set a condition; a condition with the same status and reason is left as it is, and a
    /// change of reason alone keeps the transition time (upstream `SetDeploymentCondition`).
    pub fn set_condition(&mut self, mut c: Condition) {
        if let Some(cur) = self.condition(&c.type_) {
            if cur.status == c.status && cur.reason == c.reason {
                return;
            }
            if cur.status == c.status {
                c.last_transition_time = cur.last_transition_time.clone();
            }
        }
        self.remove_condition(&c.type_.clone());
        self.conditions.push(c);
    }

    /// Remove the condition of `type_`.
    pub fn remove_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
    }
}

/// The status a Deployment should have with these ReplicaSets (upstream `calculateStatus`).
pub fn calculate(
    spec: &Spec,
    old: &Status,
    all: &[&Rs],
    new: Option<&Rs>,
    now: DateTime<Utc>,
) -> Status {
    let available: i32 = all.iter().map(|r| r.available).sum();
    let wanted: i32 = all.iter().map(|r| r.replicas).sum();
    let mut status = Status {
        observed_generation: spec.generation,
        replicas: all.iter().map(|r| r.status_replicas).sum(),
        updated_replicas: new.map_or(0, |r| r.status_replicas),
        ready_replicas: all.iter().map(|r| r.ready).sum(),
        available_replicas: available,
        unavailable_replicas: (wanted - available).max(0),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    let c = if available >= spec.replicas - spec.max_unavailable() {
        Condition::new(
            AVAILABLE,
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        Condition::new(
            AVAILABLE,
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    status.set_condition(c);
    status
}

/// Every wanted pod is updated and available, and the spec was observed (upstream
/// `DeploymentComplete`).
pub fn is_complete(spec: &Spec, s: &Status) -> bool {
    s.updated_replicas == spec.replicas
        && s.replicas == spec.replicas
        && s.available_replicas == spec.replicas
        && s.observed_generation >= spec.generation
}

/// The rollout moved since `old` (upstream `DeploymentProgressing`).
pub fn is_progressing(old: &Status, new: &Status) -> bool {
    let old_old = old.replicas - old.updated_replicas;
    let new_old = new.replicas - new.updated_replicas;
    new.updated_replicas > old.updated_replicas
        || new_old < old_old
        || new.ready_replicas > old.ready_replicas
        || new.available_replicas > old.available_replicas
}

/// No progress was reported for `progressDeadlineSeconds` (upstream `DeploymentTimedOut`).
pub fn is_timed_out(spec: &Spec, s: &Status, now: DateTime<Utc>) -> bool {
    let Some(deadline) = spec.progress_deadline_seconds else {
        return false;
    };
    let Some(c) = s.condition(PROGRESSING) else {
        return false;
    };
    match c.reason.as_str() {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => parse(&c.last_update_time)
            .is_some_and(|from| from + Duration::seconds(deadline.into()) < now),
    }
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The status after a rollout step (upstream `syncRolloutStatus`): counts, `Available`, and
/// `Progressing` as complete, progressing or timed out. `new_rs` names the new ReplicaSet.
pub fn rollout(
    spec: &Spec,
    old: &Status,
    all: &[&Rs],
    new: Option<&Rs>,
    now: DateTime<Utc>,
) -> Status {
    let mut s = calculate(spec, old, all, new, now);
    if !spec.has_progress_deadline() {
        s.remove_condition(PROGRESSING);
        return s;
    }
    let current = old.condition(PROGRESSING);
    let complete_before =
        s.replicas == s.updated_replicas && current.is_some_and(|c| c.reason == NEW_RS_AVAILABLE);
    if complete_before {
        return s;
    }
    let what = |suffix: &str| match new {
        Some(rs) => format!("ReplicaSet {:?} {suffix}", rs.name),
        None => format!("Deployment {:?} {suffix}", spec.name),
    };
    if is_complete(spec, &s) {
        s.set_condition(Condition::new(
            PROGRESSING,
            "True",
            NEW_RS_AVAILABLE,
            what("has successfully progressed."),
            now,
        ));
    } else if is_progressing(old, &s) {
        let mut c = Condition::new(
            PROGRESSING,
            "True",
            RS_UPDATED,
            what("is progressing."),
            now,
        );
        // Progress refreshes lastUpdateTime even with the same reason.
        if let Some(cur) = current {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            s.remove_condition(PROGRESSING);
        }
        s.set_condition(c);
    } else if is_timed_out(spec, &s, now) {
        s.set_condition(Condition::new(
            PROGRESSING,
            "False",
            TIMED_OUT,
            what("has timed out progressing."),
            now,
        ));
    }
    s
}

/// When to look again at a rollout that made no progress, to notice its deadline passing
/// (upstream `requeueStuckDeployment`); None when there is nothing to wait for.
pub fn recheck_after(
    spec: &Spec,
    old: &Status,
    new: &Status,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    let deadline = spec.progress_deadline_seconds?;
    let c = old.condition(PROGRESSING)?;
    if is_complete(spec, new) || c.reason == TIMED_OUT {
        return None;
    }
    let due = parse(&c.last_update_time)? + Duration::seconds(deadline.into());
    let after = (due - now).to_std().unwrap_or_default();
    // A second more, so the deadline has surely passed when we look.
    Some(after + std::time::Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(replicas: i64, generation: i64) -> Spec {
        Spec::of(
            &json!({"metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "progressDeadlineSeconds": 60,
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}),
        )
    }

    fn rs(name: &str, replicas: i32, ready: i32, available: i32) -> Rs {
        Rs {
            name: name.into(),
            replicas,
            status_replicas: replicas,
            ready,
            available,
            ..Rs::default()
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn counts_and_availability() {
        let old = rs("old", 2, 2, 2);
        let new = rs("new", 2, 1, 0);
        let s = calculate(
            &spec(3, 4),
            &Status::default(),
            &[&old, &new],
            Some(&new),
            at(0),
        );
        assert_eq!(
            (
                s.observed_generation,
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (4, 4, 2, 3, 2, 2)
        );
        let c = s
            .condition(AVAILABLE)
            .cloned()
            .unwrap_or_else(|| Condition::new("", "", "", String::new(), at(0)));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", MIN_UNAVAILABLE)
        );
        let json = s.to_json();
        assert_eq!(json["unavailableReplicas"], json!(2));
        assert_eq!(Status::of(&json!({"status": json})), s);
    }

    #[test]
    fn rollout_progresses_completes_and_times_out() {
        let sp = spec(2, 1);
        let mut s0 = Status::default();
        s0.set_condition(Condition::new(
            PROGRESSING,
            "True",
            NEW_RS_CREATED,
            "Created new replica set \"web-1\"".into(),
            at(0),
        ));
        let new = rs("web-1", 2, 1, 1);
        let s1 = rollout(&sp, &s0, &[&new], Some(&new), at(10));
        let p = s1.condition(PROGRESSING).cloned();
        assert_eq!(p.as_ref().map(|c| c.reason.as_str()), Some(RS_UPDATED));
        assert_eq!(
            p.as_ref().map(|c| c.message.as_str()),
            Some("ReplicaSet \"web-1\" is progressing.")
        );
        // No change for longer than the deadline: timed out.
        let s2 = rollout(&sp, &s1, &[&new], Some(&new), at(100));
        assert_eq!(
            s2.condition(PROGRESSING)
                .map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("False", TIMED_OUT))
        );
        // A stuck rollout is looked at again when its deadline passes.
        assert_eq!(
            recheck_after(&sp, &s1, &s1, at(20)),
            Some(std::time::Duration::from_secs(51))
        );
        let done = rs("web-1", 2, 2, 2);
        let s3 = rollout(&sp, &s1, &[&done], Some(&done), at(30));
        assert!(is_complete(&sp, &s3));
        assert_eq!(
            s3.condition(PROGRESSING).map(|c| c.reason.as_str()),
            Some(NEW_RS_AVAILABLE)
        );
        assert_eq!(
            s3.condition(AVAILABLE).map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(recheck_after(&sp, &s3, &s3, at(40)), None);
    }

    #[test]
    fn set_condition_keeps_transition_time_for_the_same_status() {
        let mut s = Status::default();
        s.set_condition(Condition::new(
            PROGRESSING,
            "True",
            NEW_RS_CREATED,
            "a".into(),
            at(0),
        ));
        s.set_condition(Condition::new(
            PROGRESSING,
            "True",
            NEW_RS_CREATED,
            "b".into(),
            at(5),
        ));
        assert_eq!(
            s.conditions[0].message, "a",
            "same status and reason: unchanged"
        );
        s.set_condition(Condition::new(
            PROGRESSING,
            "True",
            RS_UPDATED,
            "c".into(),
            at(9),
        ));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(
            s.conditions[0].last_transition_time,
            meta::format_time(at(0))
        );
        assert_eq!(s.conditions[0].last_update_time, meta::format_time(at(9)));
    }

    #[test]
    fn no_deadline_no_progressing_condition() {
        let sp = Spec::of(&json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}}));
        let mut s0 = Status::default();
        s0.set_condition(Condition::new(
            PROGRESSING,
            "True",
            NEW_RS_CREATED,
            String::new(),
            at(0),
        ));
        let s = rollout(&sp, &s0, &[], None, at(1));
        assert!(s.condition(PROGRESSING).is_none());
    }
}
