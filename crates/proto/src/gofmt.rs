//! Go's text forms of times and durations, as Kubernetes JSON shows them.
//!
//! `metav1.Time` prints `t.UTC().Format(time.RFC3339)` (whole seconds),
//! `metav1.MicroTime` prints RFC 3339 with exactly six fractional digits, and
//! `metav1.Duration` prints Go's `time.Duration.String()` (`1h2m3.5s`). These
//! are re-implemented here rather than pulling in a date crate, because the
//! exact Go spelling (year padding, `µs`, dropped zero units) is the point.

use std::fmt::Write as _;

/// Formats Unix `secs` (+ `micros`, if given) as Go's RFC 3339 in UTC.
pub(crate) fn rfc3339(secs: i64, micros: Option<u32>) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(27);
    // Go's appendInt pads the absolute value to 4 digits and prefixes '-'.
    if year < 0 {
        out.push('-');
    }
    let _ = write!(
        out,
        "{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        year.unsigned_abs(),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if let Some(micros) = micros {
        let _ = write!(out, ".{micros:06}");
    }
    out.push('Z');
    out
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`; exact for every `i64` day count a
/// protobuf `Timestamp` can produce (|secs| < 2^63 means |days| < 2^47).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in the small ranges noted above.
    (year, month as u32, day as u32)
}

/// Formats nanoseconds as Go's `time.Duration.String()`.
pub(crate) fn duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Below one second Go switches unit: 0s, 12ns, 1.5µs, 2.25ms.
        let (prec, unit) = match u {
            0 => return "0s".to_owned(),
            1..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let frac = frac_digits(&mut u, prec);
        let _ = write!(out, "{u}{frac}{unit}");
    } else {
        let frac = frac_digits(&mut u, 9);
        let (secs, mins, hours) = (u % 60, u / 60 % 60, u / 3600);
        if hours > 0 {
            let _ = write!(out, "{hours}h{mins}m");
        } else if mins > 0 {
            let _ = write!(out, "{mins}m");
        }
        let _ = write!(out, "{secs}{frac}s");
    }
    if nanos < 0 {
        out.insert(0, '-');
    }
    out
}

/// Splits the last `prec` decimal digits off `v` as ".ddd" without trailing
/// zeros (empty when they are all zero), like Go's `fmtFrac`.
fn frac_digits(v: &mut u64, prec: u32) -> String {
    let divisor = 10u64.pow(prec);
    let frac = *v % divisor;
    *v /= divisor;
    if frac == 0 {
        return String::new();
    }
    let digits = format!(".{frac:0width$}", width = prec as usize);
    digits.trim_end_matches('0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_like_go() {
        assert_eq!(rfc3339(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200, None), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_718_454_245, Some(5)),
            "2024-06-15T12:24:05.000005Z"
        );
        assert_eq!(rfc3339(-1, None), "1969-12-31T23:59:59Z");
        // Go's zero time, year 1, and a year past 9999.
        assert_eq!(rfc3339(-62_135_596_800, None), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_800, None), "10000-01-01T00:00:00Z");
        assert_eq!(rfc3339(-62_198_755_200, None), "-0001-01-01T00:00:00Z");
        // Never panics at the extremes.
        let _ = rfc3339(i64::MIN, Some(0));
        let _ = rfc3339(i64::MAX, Some(999_999));
    }

    #[test]
    fn formats_durations_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(duration(nanos), want, "{nanos}");
        }
    }
}
