//! Per-instance resource limits: `limits.memory` caps linear memory and table growth through a
//! [`ResourceLimiter`]; `limits.cpu` and stop act at epoch deadlines.
//!
//! Memory: upstream, a container that allocates past `limits.memory` is killed by the kernel
//! and reported `OOMKilled`, exit code 137. Here a growth past the limit traps at once with
//! [`MemoryLimitExceeded`] (rather than handing the guest a failed `memory.grow` it may not
//! expect), and [`exit`](crate::exit) reports that trap the same way. The limit applies to each
//! instance: a command's one instance, or each request's instance of an HTTP component.
//!
//! CPU: a guest given N < 1000 millicores runs one epoch tick, then sleeps
//! `tick × (1000 − N) / N` before running again — a duty cycle giving it about N/1000 of one
//! core (measured in wall time spent in Wasm, not in CPU time, so a guest on a busy node gets
//! less, never more). Without a limit (or N ≥ 1000: one instance uses at most one core) it
//! still yields to tokio at every tick, so other pods' tasks run between its slices.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

/// The trap raised when a guest grows its memory (or tables) past `limits.memory`.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded: the guest asked for {requested} bytes")]
pub(crate) struct MemoryLimitExceeded {
    pub(crate) limit: u64,
    pub(crate) requested: u64,
}

/// Caps the linear memories and tables of one store.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    limit: Option<u64>,
    /// Bytes of linear memory and table currently granted to the store's instances.
    used: u64,
}

/// What a table element costs the host: one pointer.
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

impl Limiter {
    /// A limiter for `limits.memory` (`None`: unlimited).
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Self { limit, used: 0 }
    }

    fn grow(&mut self, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let next = self.used.saturating_sub(current).saturating_add(desired);
        if let Some(limit) = self.limit
            && next > limit
        {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit,
                requested: next,
            }));
        }
        self.used = next;
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }
}

/// State types that carry a [`Limiter`].
pub(crate) trait HasLimiter: Send + 'static {
    fn limiter(&mut self) -> &mut Limiter;
}

/// Install the memory limiter and the epoch policy (CPU share, stop on `kill`) on a new store.
pub(crate) fn configure_store<T: HasLimiter>(
    store: &mut Store<T>,
    cpu_millis: Option<u64>,
    tick: Duration,
    kill: CancellationToken,
) {
    store.limiter(|state| state.limiter());
    let pause = throttle_pause(cpu_millis, tick);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if kill.is_cancelled() {
            // Stop: trap at this deadline (the task running the guest is also dropped at its
            // next await, which covers a guest blocked in a host call).
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(match pause {
            None => UpdateDeadline::Yield(1),
            Some(pause) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause))),
        })
    });
}

/// How long a guest with `cpu_millis` sleeps after each tick it ran (`None`: only yield).
fn throttle_pause(cpu_millis: Option<u64>, tick: Duration) -> Option<Duration> {
    let millis = cpu_millis?;
    if millis >= 1000 {
        return None;
    }
    let millis = millis.max(1);
    Some(tick * (1000 - millis) as u32 / millis as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_limit_is_refused_with_the_sizes() {
        let mut l = Limiter::new(Some(3 << 16));
        assert!(l.memory_growing(0, 2 << 16, None).unwrap());
        assert!(l.memory_growing(2 << 16, 3 << 16, None).unwrap());
        let err = l.memory_growing(3 << 16, 4 << 16, None).unwrap_err();
        let oom = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!((oom.limit, oom.requested), (3 << 16, 4 << 16));
        // A second memory of the same store counts against the same budget.
        assert!(l.memory_growing(0, 1, None).is_err());
    }

    #[test]
    fn tables_count_against_the_memory_budget() {
        let mut l = Limiter::new(Some(1024));
        assert!(l.table_growing(0, 100, None).unwrap());
        assert!(l.table_growing(100, 1000, None).is_err());
        let mut unlimited = Limiter::new(None);
        assert!(unlimited.memory_growing(0, usize::MAX / 2, None).unwrap());
    }

    #[test]
    fn cpu_share_is_a_duty_cycle() {
        let tick = Duration::from_millis(10);
        assert_eq!(throttle_pause(None, tick), None);
        assert_eq!(throttle_pause(Some(1000), tick), None);
        assert_eq!(throttle_pause(Some(2000), tick), None);
        assert_eq!(
            throttle_pause(Some(500), tick),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            throttle_pause(Some(100), tick),
            Some(Duration::from_millis(90))
        );
        assert_eq!(
            throttle_pause(Some(0), tick),
            Some(Duration::from_millis(9990))
        );
    }
}
