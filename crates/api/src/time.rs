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

/// Now, as a `metav1.Time`.
pub fn now() -> String {
    format_time(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_api() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_time(t), "2024-01-02T03:04:05Z");
        assert_eq!(format_micro_time(t), "2024-01-02T03:04:05.123456Z");
    }
}
