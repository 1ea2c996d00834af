//! Bounded waits for eventual state. The timeouts are generous on purpose: they bound how long a
//! broken system is waited for, they do not assert how fast a working one is.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Calls `check` every `poll` until it returns `Ok(Some(value))` (returned) or `timeout` passes
/// ([`Error::Timeout`], carrying the last error `check` returned). `Ok(None)` and `Err(_)` both
/// mean "not yet".
pub fn wait_for<T, E: Display>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> std::result::Result<Option<T>, E>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = format!("; last error: {e}"),
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                secs: timeout.as_secs_f64(),
                last,
            });
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value() {
        let mut n = 0;
        let got = wait_for(
            "n to reach 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                Ok::<_, String>((n >= 3).then_some(n))
            },
        );
        assert_eq!(got.unwrap(), 3);
    }

    #[test]
    fn times_out_with_the_last_error() {
        let err = wait_for::<(), _>("never", Duration::ZERO, Duration::ZERO, || {
            Err("still broken")
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 0s waiting for never; last error: still broken"
        );
    }
}
