//! Kubernetes timestamps: `metav1.Time` (RFC 3339, whole seconds, `Z`) and `metav1.MicroTime`
//! (six fractional digits), the forms every object, condition, event and lease carries.

use chrono::{DateTime, Utc};

/// A `metav1.Time` string.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A `metav1.MicroTime` string.
pub fn format_micro_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The IANA time zone a CronJob's `spec.timeZone` names (`None` for an empty name: UTC).
///
/// # Errors
/// Upstream's validation message: `Local`, or a name the time zone database lacks.
pub fn time_zone(name: &str) -> Result<Option<jiff::tz::TimeZone>, String> {
    match name {
        "" => Ok(None),
        n if n.eq_ignore_ascii_case("local") => Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        ),
        _ => jiff::tz::TimeZone::get(name)
            .map(Some)
            .map_err(|_| format!("unknown time zone {name}")),
    }
}

/// Now, as a `metav1.Time`.
pub fn now() -> String {
    format_time(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zones_come_from_the_database() {
        assert_eq!(time_zone(""), Ok(None));
        let berlin = time_zone("Europe/Berlin")
            .expect("a known zone")
            .expect("a zone");
        assert_eq!(berlin.iana_name(), Some("Europe/Berlin"));
        assert_eq!(
            time_zone("Mars/Olympus"),
            Err("unknown time zone Mars/Olympus".into())
        );
        assert!(
            time_zone("Local")
                .unwrap_err()
                .contains("explicit time zone")
        );
    }

    #[test]
    fn formats_like_the_api() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t), "2024-01-02T03:04:05Z");
        assert_eq!(format_micro_time(t), "2024-01-02T03:04:05.123456Z");
    }
}
