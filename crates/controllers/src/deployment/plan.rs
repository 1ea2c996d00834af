//! How many replicas each of a Deployment's ReplicaSets should have: the new ReplicaSet's
//! next size in a rolling update, how far old ones may be scaled down, proportional scaling
//! when the Deployment is resized mid-rollout, and which old ReplicaSets the revision history
//! limit removes (upstream `pkg/controller/deployment/{rolling.go,sync.go}` and
//! `util/deployment_util.go`). Pure functions over [`Rs`] views, so every rule is testable.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use ledge_api::Pointer as _;
use serde_json::Value;

use super::revision::{DESIRED_REPLICAS, MAX_REPLICAS, REVISION};
use super::spec::Spec;
use crate::meta;

/// What planning needs to know about one ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rs {
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
    /// Creation time.
    pub created: Option<DateTime<Utc>>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`.
    pub status_replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// The revision annotation (0 when missing, None when malformed).
    pub revision: Option<i64>,
    /// The desired-replicas annotation.
    pub desired: Option<i32>,
    /// The max-replicas annotation.
    pub max_replicas: Option<i32>,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// Being deleted.
    pub deleting: bool,
}

impl Rs {
    /// Read a ReplicaSet.
    pub fn of(rs: &Value) -> Self {
        let annotation_int = |k: &str| meta::annotation(rs, k).and_then(|s| s.parse().ok());
        Self {
            name: meta::name(rs).to_string(),
            uid: meta::uid(rs).to_string(),
            created: meta::created(rs),
            replicas: meta::spec_replicas(rs),
            status_replicas: meta::int_at(rs, "/status/replicas"),
            ready: meta::int_at(rs, "/status/readyReplicas"),
            available: meta::int_at(rs, "/status/availableReplicas"),
            revision: match meta::annotation(rs, REVISION) {
                None => Some(0),
                Some(s) => s.parse().ok(),
            },
            desired: annotation_int(DESIRED_REPLICAS),
            max_replicas: annotation_int(MAX_REPLICAS),
            generation: meta::generation(rs),
            observed_generation: rs
                .at("/status/observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            deleting: meta::is_deleting(rs),
        }
    }

    /// Has pods wanted (`spec.replicas > 0`).
    pub fn is_active(&self) -> bool {
        self.replicas > 0
    }
}

/// Oldest first, then by name (upstream `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &Rs, b: &Rs) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// The highest revision among `rss` (malformed ones skipped).
pub fn max_revision(rss: &[Rs]) -> i64 {
    rss.iter().filter_map(|r| r.revision).max().unwrap_or(0)
}

/// Sum of `spec.replicas`.
pub fn spec_replicas(rss: &[&Rs]) -> i32 {
    rss.iter().map(|r| r.replicas).sum()
}

/// The one ReplicaSet to give all replicas to when scaling, if there is at most one active
/// one: that one, or the newest when none is active (upstream `FindActiveOrLatest`).
pub fn active_or_latest<'a>(new: Option<&'a Rs>, old: &'a [Rs]) -> Option<&'a Rs> {
    let mut old_sorted: Vec<&Rs> = old.iter().collect();
    old_sorted.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&Rs> = old_sorted
        .iter()
        .copied()
        .chain(new)
        .filter(|r| r.is_active())
        .collect();
    match active.len() {
        0 => new.or(old_sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// The new ReplicaSet has all replicas, all available, for the current size (upstream
/// `IsSaturated`).
pub fn is_saturated(spec: &Spec, new: Option<&Rs>) -> bool {
    new.is_some_and(|rs| {
        rs.desired == Some(spec.replicas)
            && rs.replicas == spec.replicas
            && rs.available == spec.replicas
    })
}

/// The size the new ReplicaSet may grow to now (upstream `NewRSNewReplicas`): for
/// RollingUpdate, as far as `replicas + maxSurge` pods in total allow, never above
/// `replicas`; for Recreate, all of them.
pub fn new_rs_replicas(spec: &Spec, all: &[&Rs], new: &Rs) -> i32 {
    if !spec.is_rolling() {
        return spec.replicas;
    }
    let current = spec_replicas(all);
    let max_total = spec.replicas + spec.max_surge();
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(spec.replicas - new.replicas);
    new.replicas + up
}

/// Final sizes for old ReplicaSets in a rolling update (upstream `reconcileOldReplicaSets`):
/// first unhealthy replicas go (they block the rollout and cost no availability), then
/// available ones as far as `replicas - maxUnavailable` available pods remain, oldest
/// ReplicaSet first. Returns `(name, from, to)` for each ReplicaSet that changes.
///
/// A ReplicaSet just scaled down may still report the pods it is deleting as available; as it
/// deletes unavailable pods first, it keeps `min(available, replicas)` of them, and that is
/// what is counted here. (Upstream counts the stale figure and can scale down too far, or
/// fails "cleaning up unhealthy replicas" with a negative count, until the status catches up.)
pub fn scale_down_old(spec: &Spec, old: &[Rs], new: &Rs) -> Vec<(String, i32, i32)> {
    let settled = |r: &Rs| Rs {
        available: r.available.min(r.replicas),
        ..r.clone()
    };
    let new = &settled(new);
    let mut old: Vec<Rs> = old.iter().filter(|r| r.is_active()).map(settled).collect();
    old.sort_by(by_creation);
    let old_count: i32 = old.iter().map(|r| r.replicas).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + new.replicas;
    let min_available = spec.replicas - spec.max_unavailable();
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let before: Vec<i32> = old.iter().map(|r| r.replicas).collect();
    // Unhealthy replicas first.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if rs.replicas <= rs.available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= n;
        cleaned += n;
    }
    // Then available ones, keeping minAvailable.
    let available: i32 = old.iter().map(|r| r.available).sum::<i32>() + new.available;
    if available > min_available {
        let budget = available - min_available;
        let mut done = 0;
        for rs in old.iter_mut() {
            if done >= budget {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let n = rs.replicas.min(budget - done);
            rs.replicas -= n;
            done += n;
        }
    }
    old.iter()
        .zip(before)
        .filter(|(rs, from)| rs.replicas != *from)
        .map(|(rs, from)| (rs.name.clone(), from, rs.replicas))
        .collect()
}

/// Sizes for every active ReplicaSet when the Deployment is resized during a rollout
/// (upstream `scale`): the replicas added or removed are shared in proportion to each
/// ReplicaSet's size (its max-replicas annotation records the total it was sized for), the
/// largest ReplicaSet takes the rounding leftovers. Returns `(name, to)` for every active one.
pub fn proportional_sizes(spec: &Spec, status_replicas: i32, active: &[Rs]) -> Vec<(String, i32)> {
    let refs: Vec<&Rs> = active.iter().collect();
    let current = spec_replicas(&refs);
    let allowed = if spec.replicas > 0 {
        spec.replicas + spec.max_surge()
    } else {
        0
    };
    let to_add = allowed - current;
    let mut sorted: Vec<&Rs> = active.iter().collect();
    // Larger first; on ties, newer first when growing and older first when shrinking.
    sorted.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then_with(|| {
            if to_add > 0 {
                by_creation(b, a)
            } else {
                by_creation(a, b)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sorted {
        if to_add == 0 {
            sizes.push((rs.name.clone(), rs.replicas));
            continue;
        }
        let p = proportion(spec, status_replicas, rs, to_add, added);
        sizes.push((rs.name.clone(), rs.replicas + p));
        added += p;
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// Upstream `GetReplicaSetProportion`.
fn proportion(spec: &Spec, status_replicas: i32, rs: &Rs, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(spec, status_replicas, rs);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream `getReplicaSetFraction`: this ReplicaSet's share of the new total, minus its size.
fn fraction(spec: &Spec, status_replicas: i32, rs: &Rs) -> i32 {
    if spec.replicas == 0 {
        return -rs.replicas;
    }
    let total = spec.replicas + spec.max_surge();
    let annotated = rs.max_replicas.unwrap_or(status_replicas);
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs.replicas) * f64::from(total) / f64::from(annotated);
    (size.round() as i32) - rs.replicas
}

/// Old ReplicaSets the revision history limit removes (upstream `cleanupDeployment`): the
/// oldest revisions beyond the limit that have no pods, wanted or running, and whose status is
/// current.
pub fn history_to_remove(spec: &Spec, old: &[Rs]) -> Vec<String> {
    let Some(limit) = spec.revision_history_limit else {
        return Vec::new();
    };
    let mut alive: Vec<&Rs> = old.iter().filter(|r| !r.deleting).collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| match (a.revision, b.revision) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    });
    alive
        .iter()
        .take(diff as usize)
        .filter(|r| {
            r.status_replicas == 0 && r.replicas == 0 && r.generation <= r.observed_generation
        })
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(replicas: i64, surge: Value, unavailable: Value) -> Spec {
        Spec::of(&json!({"metadata": {"name": "web"},
            "spec": {"replicas": replicas, "revisionHistoryLimit": 2, "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}}))
    }

    fn rs(name: &str, created: i64, replicas: i32, available: i32) -> Rs {
        Rs {
            name: name.into(),
            created: DateTime::from_timestamp(1_700_000_000 + created, 0),
            replicas,
            status_replicas: replicas,
            ready: available,
            available,
            revision: Some(created),
            ..Rs::default()
        }
    }

    #[test]
    fn new_replica_set_grows_within_max_surge() {
        let s = spec(5, json!(2), json!(0));
        let old = rs("old", 1, 5, 5);
        let new = rs("new", 2, 0, 0);
        assert_eq!(new_rs_replicas(&s, &[&old, &new], &new), 2);
        let new = rs("new", 2, 2, 0);
        assert_eq!(
            new_rs_replicas(&s, &[&old, &new], &new),
            2,
            "at 7 = 5 + 2 pods"
        );
        let old = rs("old", 1, 3, 3);
        assert_eq!(new_rs_replicas(&s, &[&old, &new], &new), 4);
        let recreate =
            Spec::of(&json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}));
        assert_eq!(new_rs_replicas(&recreate, &[&new], &new), 3);
    }

    #[test]
    fn old_replica_sets_shrink_keeping_min_available() {
        // 5 replicas, maxUnavailable 1: with 5 old available and 2 new unavailable, only 1 may go.
        let s = spec(5, json!(2), json!(1));
        let old = [rs("old", 1, 5, 5)];
        assert_eq!(
            scale_down_old(&s, &old, &rs("new", 2, 2, 0)),
            [("old".to_string(), 5, 4)]
        );
        // Once the new pods are available, old ones go as far as 4 available remain.
        assert_eq!(
            scale_down_old(&s, &old, &rs("new", 2, 2, 2)),
            [("old".to_string(), 5, 2)]
        );
        // Unhealthy old replicas go first, even without spare availability.
        let old = [rs("old", 1, 5, 3)];
        assert_eq!(
            scale_down_old(&s, &old, &rs("new", 2, 1, 1)),
            [("old".to_string(), 5, 3)]
        );
        assert!(scale_down_old(&s, &[rs("old", 1, 0, 0)], &rs("new", 2, 5, 5)).is_empty());
    }

    #[test]
    fn pods_being_deleted_do_not_count_as_available() {
        // The old ReplicaSet was just scaled from 4 to 3 and still reports 4 available: only 3
        // will remain, so with 2 new available there is exactly 1 to spare above 4.
        let s = spec(4, json!(1), json!(0));
        let mut old = rs("old", 1, 3, 3);
        old.available = 4;
        assert_eq!(
            scale_down_old(&s, &[old], &rs("new", 2, 2, 2)),
            [("old".to_string(), 3, 2)]
        );
    }

    #[test]
    fn oldest_old_replica_set_shrinks_first() {
        let s = spec(4, json!(0), json!(2));
        let old = [rs("b", 2, 2, 2), rs("a", 1, 2, 2)];
        assert_eq!(
            scale_down_old(&s, &old, &rs("new", 3, 0, 0)),
            [("a".to_string(), 2, 0)]
        );
    }

    #[test]
    fn resizing_mid_rollout_is_proportional() {
        // 10 replicas (surge 3) being rolled: old 8, new 5 were sized for 13; scale to 20 (surge 5).
        let s = spec(20, json!("25%"), json!("25%"));
        let mut old = rs("old", 1, 8, 8);
        old.max_replicas = Some(13);
        let mut new = rs("new", 2, 5, 0);
        new.max_replicas = Some(13);
        let sizes = proportional_sizes(&s, 13, &[old, new]);
        assert_eq!(sizes, [("old".to_string(), 15), ("new".to_string(), 10)]);
        let total: i32 = sizes.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 25);
    }

    #[test]
    fn scaling_to_zero_empties_every_replica_set() {
        let s = spec(0, json!(1), json!(0));
        let sizes = proportional_sizes(&s, 3, &[rs("a", 1, 2, 2), rs("b", 2, 1, 1)]);
        assert_eq!(sizes, [("a".to_string(), 0), ("b".to_string(), 0)]);
    }

    #[test]
    fn one_active_or_the_newest_takes_the_scale() {
        let old = [rs("a", 1, 0, 0), rs("b", 2, 3, 3)];
        let new = rs("n", 3, 0, 0);
        assert_eq!(
            active_or_latest(Some(&new), &old).map(|r| r.name.as_str()),
            Some("b")
        );
        let idle = [rs("a", 1, 0, 0), rs("b", 2, 0, 0)];
        assert_eq!(
            active_or_latest(Some(&new), &idle).map(|r| r.name.as_str()),
            Some("n")
        );
        assert_eq!(
            active_or_latest(None, &idle).map(|r| r.name.as_str()),
            Some("b")
        );
        let busy = [rs("a", 1, 1, 1), rs("b", 2, 3, 3)];
        assert_eq!(active_or_latest(Some(&new), &busy), None);
    }

    #[test]
    fn history_limit_removes_the_oldest_empty_revisions() {
        let s = spec(1, json!(1), json!(0));
        let old = [
            rs("r1", 1, 0, 0),
            rs("r2", 2, 0, 0),
            rs("r3", 3, 1, 1),
            rs("r4", 4, 0, 0),
        ];
        // 4 old, limit 2: the two oldest go if empty.
        assert_eq!(history_to_remove(&s, &old), ["r1", "r2"]);
        let busy = [rs("r1", 1, 1, 1), rs("r2", 2, 0, 0), rs("r3", 3, 0, 0)];
        assert!(history_to_remove(&s, &busy).is_empty(), "r1 still has pods");
    }

    #[test]
    fn saturation_needs_size_annotation_and_availability() {
        let s = spec(3, json!(1), json!(0));
        let mut new = rs("n", 1, 3, 3);
        assert!(!is_saturated(&s, Some(&new)));
        new.desired = Some(3);
        assert!(is_saturated(&s, Some(&new)));
        new.available = 2;
        assert!(!is_saturated(&s, Some(&new)));
    }
}
