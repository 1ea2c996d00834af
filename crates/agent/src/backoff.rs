//! Capped exponential back-off with jitter, for retrying an unreachable server: the delay doubles
//! from `base` up to `cap`, and each wait is drawn from the upper half of it ("equal jitter"), so
//! a fleet of agents that lost the same server does not come back in lock step.

use std::time::Duration;

use ledge_api::ApiError;
use tokio_util::sync::CancellationToken;

/// A source of jitter: returns a number in `[0, 1)`. A seam so tests are deterministic.
pub type Jitter = Box<dyn FnMut() -> f64 + Send>;

/// Back-off state for one retried operation.
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    jitter: Jitter,
}

impl Backoff {
    /// Back-off from `base` to `cap` with random jitter.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self::with_jitter(base, cap, Box::new(rand::random::<f64>))
    }

    /// Back-off with a given jitter source.
    pub fn with_jitter(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            jitter,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt.min(20)))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let r = (self.jitter)().clamp(0.0, 1.0);
        exp / 2 + exp.mul_f64(r / 2.0)
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Sleep for the next delay; `false` if cancelled meanwhile.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future only skips the sleep.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        sleep(cancel, delay).await
    }
}

/// Sleep for `delay`; `false` if `cancel` fired first.
///
/// # Cancel safety
/// Cancel safe.
pub async fn sleep(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Run `op` until it succeeds, fails for good (an error [`retryable`](crate::client::retryable)
/// says not to retry), or `cancel` fires (`Ok(None)`). Each retry is announced with the error
/// and the wait, once per attempt, as a warning.
///
/// # Cancel safety
/// Cancel safe between attempts; an attempt in flight is dropped.
pub async fn retry<T, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    mut op: F,
) -> Result<Option<T>, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), crate::RECONNECT_CAP);
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            r = op() => r,
        };
        match result {
            Ok(v) => return Ok(Some(v)),
            Err(e) if crate::client::retryable(&e) => {
                let delay = backoff.next_delay();
                failures += 1;
                // Said at the first failure and then once a minute or so, not at every attempt:
                // an agent may wait hours for its server.
                if failures % 12 == 1 {
                    tracing::warn!("{what} failed: {}; retrying every few seconds", e.message,);
                } else {
                    tracing::debug!(
                        "{what} failed: {}; retrying in {:.1}s",
                        e.message,
                        delay.as_secs_f64()
                    );
                }
                if !sleep(cancel, delay).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::with_jitter(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Box::new(|| 0.999),
        );
        let ms: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms[0], 499);
        assert_eq!(ms[1], 999);
        assert!(ms.windows(2).all(|w| w[0] <= w[1]));
        assert!(ms.iter().all(|&d| d <= 30_000));
        assert_eq!(ms[9], 29_985);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 499);
        let mut low = Backoff::with_jitter(
            Duration::from_secs(1),
            Duration::from_secs(8),
            Box::new(|| 0.0),
        );
        let ms: Vec<u128> = (0..6).map(|_| low.next_delay().as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000]);
    }
}
