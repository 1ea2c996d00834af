//! The time seam: controllers whose decisions depend on the wall clock (schedules, deadlines,
//! grace periods) read it through [`Clock`] once per reconcile and hand the instant to their
//! pure rules, which tests call at chosen instants — nothing sleeps.

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
