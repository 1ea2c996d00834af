//! The parts of a Deployment's spec the controller decides with, and the rolling-update
//! arithmetic: `maxSurge` and `maxUnavailable` as ints or percentages of `spec.replicas`, surge
//! rounded up and unavailability rounded down, never both zero (upstream `ResolveFenceposts`,
//! `MaxSurge`, `MaxUnavailable` in `pkg/controller/deployment/util/deployment_util.go`).

use ledge_api::Pointer as _;
use serde_json::{Value, json};

use crate::meta;

/// An `IntOrString` that is either a count or a percentage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    /// An absolute count.
    Int(i32),
    /// A percentage of a total.
    Percent(i32),
}

impl IntOrPercent {
    /// Parse `3` or `"25%"`. Anything else (`"3"`, `"x%"`) is invalid, as upstream's
    /// `GetScaledValueFromIntOrPercent` says ("string is not a percentage").
    pub fn parse(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .map(Self::Int),
            Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .map(Self::Percent),
            _ => None,
        }
    }

    /// The count this value stands for out of `total`, rounding a percentage up or down.
    pub fn scaled(self, total: i32, round_up: bool) -> i32 {
        match self {
            Self::Int(n) => n,
            Self::Percent(p) => {
                let x = i64::from(p) * i64::from(total);
                let v = if round_up {
                    (x + 99).div_euclid(100)
                } else {
                    x.div_euclid(100)
                };
                v.clamp(i32::MIN.into(), i32::MAX.into()) as i32
            }
        }
    }
}

/// `(maxSurge, maxUnavailable)` resolved against `desired` replicas. Both zero would stall a
/// rollout (rounding can make them so), so unavailability becomes 1 then.
pub fn resolve_fenceposts(
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
    desired: i32,
) -> (i32, i32) {
    let surge = max_surge.scaled(desired, true);
    let mut unavailable = max_unavailable.scaled(desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// What the controller reads from a Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicas` (1 when unset, the API default).
    pub replicas: i32,
    /// `Some((maxSurge, maxUnavailable))` before resolution for RollingUpdate; `None` for
    /// Recreate.
    pub rolling: Option<(IntOrPercent, IntOrPercent)>,
    /// `spec.minReadySeconds`.
    pub min_ready_seconds: i32,
    /// `spec.revisionHistoryLimit` (None: keep everything).
    pub revision_history_limit: Option<i32>,
    /// `spec.progressDeadlineSeconds`, None when unset or "never" (MaxInt32).
    pub progress_deadline_seconds: Option<i32>,
    /// `spec.paused`.
    pub paused: bool,
}

/// The default of each rolling-update bound (upstream `SetDefaults_Deployment`).
const DEFAULT_BOUND: &str = "25%";

impl Spec {
    /// Read a Deployment. Invalid bounds count as 0, as upstream's helpers treat them.
    pub fn of(d: &Value) -> Self {
        let rolling = match meta::str_at(d, "/spec/strategy/type") {
            "Recreate" => None,
            _ => {
                let bound = |field: &str| {
                    let v = d
                        .at(&format!("/spec/strategy/rollingUpdate/{field}"))
                        .filter(|v| !v.is_null())
                        .cloned()
                        .unwrap_or_else(|| json!(DEFAULT_BOUND));
                    IntOrPercent::parse(&v).unwrap_or(IntOrPercent::Int(0))
                };
                Some((bound("maxSurge"), bound("maxUnavailable")))
            }
        };
        let optional = |p: &str| {
            d.at(p)
                .and_then(Value::as_i64)
                .map(|n| n.clamp(0, i32::MAX.into()) as i32)
        };
        Self {
            name: meta::name(d).to_string(),
            generation: meta::generation(d),
            replicas: meta::spec_replicas(d),
            rolling,
            min_ready_seconds: meta::int_at(d, "/spec/minReadySeconds"),
            revision_history_limit: optional("/spec/revisionHistoryLimit"),
            progress_deadline_seconds: optional("/spec/progressDeadlineSeconds")
                .filter(|s| *s != i32::MAX),
            paused: d
                .at("/spec/paused")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// Whether the strategy is RollingUpdate.
    pub fn is_rolling(&self) -> bool {
        self.rolling.is_some()
    }

    /// Pods allowed above `replicas` during a rolling update (0 for Recreate).
    pub fn max_surge(&self) -> i32 {
        match self.rolling {
            Some((s, u)) => resolve_fenceposts(s, u, self.replicas).0,
            None => 0,
        }
    }

    /// Pods allowed to be unavailable during a rolling update, at most `replicas` (0 for
    /// Recreate and for zero replicas).
    pub fn max_unavailable(&self) -> i32 {
        match self.rolling {
            Some((s, u)) if self.replicas > 0 => {
                resolve_fenceposts(s, u, self.replicas).1.min(self.replicas)
            }
            _ => 0,
        }
    }

    /// Whether progress is tracked against a deadline.
    pub fn has_progress_deadline(&self) -> bool {
        self.progress_deadline_seconds.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 2},
               "spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let s = Spec::of(&deployment(10, json!("25%"), json!("25%")));
        assert_eq!((s.max_surge(), s.max_unavailable()), (3, 2));
        let s = Spec::of(&deployment(3, json!("25%"), json!("25%")));
        assert_eq!((s.max_surge(), s.max_unavailable()), (1, 0));
        let s = Spec::of(&deployment(5, json!(2), json!("40%")));
        assert_eq!((s.max_surge(), s.max_unavailable()), (2, 2));
    }

    #[test]
    fn zero_fenceposts_allow_one_unavailable_and_unavailability_is_capped() {
        let s = Spec::of(&deployment(3, json!(0), json!("10%")));
        assert_eq!((s.max_surge(), s.max_unavailable()), (0, 1));
        let s = Spec::of(&deployment(2, json!(0), json!(5)));
        assert_eq!(s.max_unavailable(), 2);
        let s = Spec::of(&deployment(0, json!(1), json!(1)));
        assert_eq!(s.max_unavailable(), 0);
    }

    #[test]
    fn recreate_and_defaults() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"strategy": {"type": "Recreate"},
                       "progressDeadlineSeconds": 2147483647}});
        let s = Spec::of(&d);
        assert_eq!(s.replicas, 1);
        assert!(!s.is_rolling());
        assert_eq!((s.max_surge(), s.max_unavailable()), (0, 0));
        assert!(!s.has_progress_deadline());
        // A rollingUpdate missing one bound gets upstream's 25% default for it.
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 4,
                       "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}}});
        assert_eq!(Spec::of(&d).max_unavailable(), 1);
    }

    #[test]
    fn only_ints_and_percentages_parse() {
        assert_eq!(IntOrPercent::parse(&json!(3)), Some(IntOrPercent::Int(3)));
        assert_eq!(
            IntOrPercent::parse(&json!("30%")),
            Some(IntOrPercent::Percent(30))
        );
        assert_eq!(IntOrPercent::parse(&json!("3")), None);
        assert_eq!(IntOrPercent::parse(&json!("x%")), None);
    }
}
