//! Cron schedules as Kubernetes reads them (upstream uses `robfig/cron`'s standard parser):
//! five fields — minute, hour, day of month, month, day of week — each `*` (or `?`), a value, a
//! range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's end), or a list of
//! those; month and weekday names (`jan`, `mon`, any case); and the descriptors `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`. As in cron, when
//! both day fields are restricted a day matches either; when one is `*`, only the other counts.
//! Not supported: `@every <duration>` and `TZ=`/`CRON_TZ=` prefixes (upstream refuses the
//! latter too; the CronJob's `timeZone` field says the zone).
//!
//! A schedule is read in its [`Zone`] (UTC unless the CronJob names an IANA zone): the fields
//! match the wall clock there. A wall-clock time that a daylight-saving change skips does not
//! fire that day; one it repeats fires once, at its first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields.
    #[error("expected exactly 5 fields, found {0}: {1:?}")]
    FieldCount(usize, String),
    /// A descriptor ledge does not know.
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    /// A field that is not a number, name, range, step or list.
    #[error("failed to parse {field} field {text:?}")]
    Syntax {
        /// Which field.
        field: &'static str,
        /// Its text.
        text: String,
    },
    /// A value outside the field's range.
    #[error("{field} value {value} out of range {min}-{max}")]
    Range {
        /// Which field.
        field: &'static str,
        /// The value.
        value: u32,
        /// Lowest allowed.
        min: u32,
        /// Highest allowed.
        max: u32,
    },
}

/// The time zone a schedule's fields are read in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Zone {
    /// UTC: a CronJob without `timeZone`.
    #[default]
    Utc,
    /// An IANA zone from the system's time zone database (or, without one, ledge's copy).
    Named(jiff::tz::TimeZone),
}

impl Zone {
    /// The zone `spec.timeZone` names (`""`: UTC), or upstream's validation message.
    ///
    /// # Errors
    /// `Local`, or a name the time zone database does not have.
    pub fn named(name: &str) -> Result<Zone, String> {
        Ok(ledge_api::time::time_zone(name)?.map_or(Zone::Utc, Zone::Named))
    }

    /// The wall-clock time at `t`, to the minute.
    fn local(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        let t = t.with_second(0)?.with_nanosecond(0)?;
        match self {
            Zone::Utc => Some(t.naive_utc()),
            Zone::Named(tz) => {
                let ts = jiff::Timestamp::from_second(t.timestamp()).ok()?;
                let dt = tz.to_datetime(ts);
                NaiveDate::from_ymd_opt(dt.year().into(), dt.month() as u32, dt.day() as u32)?
                    .and_hms_opt(dt.hour() as u32, dt.minute() as u32, 0)
            }
        }
    }

    /// The instants a wall-clock time names, earliest first: none in a daylight-saving gap,
    /// two in a fold.
    fn instants(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        let Zone::Named(tz) = self else {
            return vec![local.and_utc()];
        };
        let Ok(civil) = jiff::civil::DateTime::new(
            local.year() as i16,
            local.month() as i8,
            local.day() as i8,
            local.hour() as i8,
            local.minute() as i8,
            0,
            0,
        ) else {
            return Vec::new();
        };
        let offsets = match tz.to_ambiguous_timestamp(civil).offset() {
            jiff::tz::AmbiguousOffset::Unambiguous { offset } => vec![offset],
            jiff::tz::AmbiguousOffset::Gap { .. } => Vec::new(),
            jiff::tz::AmbiguousOffset::Fold { before, after } => vec![before, after],
        };
        offsets
            .into_iter()
            .filter_map(|o| o.to_timestamp(civil).ok())
            .filter_map(|ts| Utc.timestamp_opt(ts.as_second(), 0).single())
            .collect()
    }
}

/// A parsed schedule: the set of allowed values of each field, as bit masks, and its zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    zone: Zone,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month was `*`/`?` (unrestricted).
    days_star: bool,
    /// Day of week was `*`/`?` (unrestricted).
    weekdays_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parse a schedule.
///
/// # Errors
/// [`CronError`] saying which part is wrong.
pub fn parse(text: &str) -> Result<Schedule, CronError> {
    let text = text.trim();
    let expanded = match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        d if d.starts_with('@') => return Err(CronError::Descriptor(text.to_string())),
        _ => text,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError::FieldCount(fields.len(), text.to_string()));
    }
    let (minutes, _) = parse_field(fields[0], &MINUTE)?;
    let (hours, _) = parse_field(fields[1], &HOUR)?;
    let (days, days_star) = parse_field(fields[2], &DAY)?;
    let (months, _) = parse_field(fields[3], &MONTH)?;
    let (weekdays, weekdays_star) = parse_field(fields[4], &WEEKDAY)?;
    Ok(Schedule {
        zone: Zone::Utc,
        minutes,
        hours,
        days,
        months,
        weekdays,
        days_star,
        weekdays_star,
    })
}

/// One field: its mask and whether it was an unrestricted `*`.
fn parse_field(text: &str, f: &Field) -> Result<(u64, bool), CronError> {
    let syntax = || CronError::Syntax {
        field: f.name,
        text: text.to_string(),
    };
    let mut mask = 0u64;
    let mut star = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().map_err(|_| syntax())?)),
            None => (item, None),
        };
        if step == Some(0) {
            return Err(syntax());
        }
        let (lo, hi, item_star) = if range == "*" || range == "?" {
            (f.min, f.max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, f)?, value(b, f)?, false)
        } else {
            let v = value(range, f)?;
            // `a/n` runs from `a` to the end of the field.
            (v, if step.is_some() { f.max } else { v }, false)
        };
        if lo > hi {
            return Err(syntax());
        }
        // `*/1` is still unrestricted; a larger step is not (robfig's star bit).
        star |= item_star && step.unwrap_or(1) == 1;
        let mut v = lo;
        while v <= hi {
            mask |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok((mask, star))
}

fn value(text: &str, f: &Field) -> Result<u32, CronError> {
    let lower = text.to_ascii_lowercase();
    let v = match f.names.iter().position(|n| *n == lower) {
        Some(i) => u32::try_from(i).unwrap_or(0) + f.min,
        None => text.parse::<u32>().map_err(|_| CronError::Syntax {
            field: f.name,
            text: text.to_string(),
        })?,
    };
    if v < f.min || v > f.max {
        return Err(CronError::Range {
            field: f.name,
            value: v,
            min: f.min,
            max: f.max,
        });
    }
    Ok(v)
}

fn has(mask: u64, v: u32) -> bool {
    mask & (1 << v) != 0
}

impl Schedule {
    /// The same schedule read in `zone`.
    pub fn in_zone(self, zone: Zone) -> Self {
        Self { zone, ..self }
    }

    fn day_matches(&self, t: NaiveDateTime) -> bool {
        let dom = has(self.days, t.day());
        let dow = has(self.weekdays, t.weekday().num_days_from_sunday());
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn matches_local(&self, t: NaiveDateTime) -> bool {
        has(self.months, t.month())
            && self.day_matches(t)
            && has(self.hours, t.hour())
            && has(self.minutes, t.minute())
    }

    /// Whether the schedule fires in the minute of `t`.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        self.zone.local(t).is_some_and(|l| self.matches_local(l))
    }

    /// The first time strictly after `t` (at a whole minute) the schedule fires; `None` when it
    /// never does within five years (e.g. `0 0 30 2 *`).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut local = self.zone.local(t)?;
        loop {
            local = self.next_local(local)?;
            // The first instant of that wall-clock time after `t`; none in a gap.
            if let Some(at) = self.zone.instants(local).into_iter().find(|at| *at > t) {
                return Some(at);
            }
        }
    }

    /// The first wall-clock minute strictly after `t` whose fields match.
    fn next_local(&self, t: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = t + Duration::minutes(1);
        let limit = t.year() + 5;
        while t.year() <= limit {
            if !has(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(t) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !has(self.hours, t.hour()) {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if !has(self.minutes, t.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn next(schedule: &str, after: &str) -> String {
        let s = parse(schedule).expect("valid schedule");
        s.next_after(t(after))
            .map(|n| n.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    }

    fn next_in(schedule: &str, zone: &str, after: &str) -> String {
        let s = parse(schedule)
            .expect("valid schedule")
            .in_zone(Zone::named(zone).expect("known zone"));
        s.next_after(t(after))
            .map(|n| n.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn schedules_follow_the_wall_clock_of_their_zone() {
        // 09:00 in Berlin is 08:00 UTC in winter (CET), 07:00 in summer (CEST).
        assert_eq!(
            next_in("0 9 * * *", "Europe/Berlin", "2024-01-15T00:00:00Z"),
            "2024-01-15T08:00:00Z"
        );
        assert_eq!(
            next_in("0 9 * * *", "Europe/Berlin", "2024-07-15T00:00:00Z"),
            "2024-07-15T07:00:00Z"
        );
        // Day boundaries are the zone's: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
        assert_eq!(
            next_in("30 0 * * mon", "Asia/Tokyo", "2024-01-01T00:00:00Z"),
            "2024-01-07T15:30:00Z"
        );
        // 2024-03-31 02:00 → 03:00 in Berlin: 02:30 does not exist that day.
        assert_eq!(
            next_in("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00Z"),
            "2024-04-01T00:30:00Z"
        );
        // 2024-10-27 03:00 → 02:00: 02:30 happens twice and fires once, the first time.
        let first = next_in("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z");
        assert_eq!(first, "2024-10-27T00:30:00Z");
        assert_eq!(
            next_in("30 2 * * *", "Europe/Berlin", &first),
            "2024-10-28T01:30:00Z"
        );
        assert!(
            parse("0 9 * * *")
                .expect("valid")
                .in_zone(Zone::named("Europe/Berlin").expect("zone"))
                .matches(t("2024-01-15T08:00:00Z"))
        );
        assert_eq!(
            next_in("0 9 * * *", "", "2024-01-15T00:00:00Z"),
            "2024-01-15T09:00:00Z"
        );
    }

    #[test]
    fn fields_steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2024-01-01T00:07:30Z"),
            "2024-01-01T00:15:00Z"
        );
        assert_eq!(
            next("5-10/2 * * * *", "2024-01-01T00:07:00Z"),
            "2024-01-01T00:09:00Z"
        );
        assert_eq!(
            next("30/10 * * * *", "2024-01-01T00:51:00Z"),
            "2024-01-01T01:30:00Z"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2024-01-06T10:00:00Z"),
            "2024-01-08T09:00:00Z"
        );
        assert_eq!(
            next("0 0 1 JAN,jul *", "2024-02-01T00:00:00Z"),
            "2024-07-01T00:00:00Z"
        );
        assert_eq!(
            next("0 12 * * SUN", "2024-01-01T00:00:00Z"),
            "2024-01-07T12:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 30 2 *", "2024-03-01T00:00:00Z"),
            "",
            "never fires"
        );
    }

    #[test]
    fn descriptors_expand() {
        assert_eq!(
            next("@hourly", "2024-01-01T00:00:00Z"),
            "2024-01-01T01:00:00Z"
        );
        assert_eq!(
            next("@daily", "2024-01-01T00:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2024-01-01T05:00:00Z"),
            "2024-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2024-01-01T00:00:00Z"),
            "2024-01-07T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2024-01-15T00:00:00Z"),
            "2024-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2024-01-15T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2024-01-15T00:00:00Z"),
            "2025-01-01T00:00:00Z"
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th, or any Friday.
        assert_eq!(
            next("0 0 13 * 5", "2024-01-01T00:00:00Z"),
            "2024-01-05T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2024-01-12T01:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        // With `*` in one, only the other counts.
        assert_eq!(
            next("0 0 13 * *", "2024-01-01T00:00:00Z"),
            "2024-01-13T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 5", "2024-01-06T00:00:00Z"),
            "2024-01-12T00:00:00Z"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(matches!(parse("* * * *"), Err(CronError::FieldCount(4, _))));
        assert!(matches!(parse("@every 1h"), Err(CronError::Descriptor(_))));
        assert!(matches!(
            parse("60 * * * *"),
            Err(CronError::Range {
                field: "minute",
                ..
            })
        ));
        assert!(matches!(parse("* * * * 7"), Err(CronError::Range { .. })));
        assert!(matches!(
            parse("*/0 * * * *"),
            Err(CronError::Syntax { .. })
        ));
        assert!(matches!(
            parse("5-1 * * * *"),
            Err(CronError::Syntax { .. })
        ));
        assert!(matches!(
            parse("* * * foo *"),
            Err(CronError::Syntax { .. })
        ));
        assert!(matches!(
            parse("TZ=UTC * * * * *"),
            Err(CronError::FieldCount(6, _))
        ));
    }

    fn field(max: u32, min: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (min..=max).prop_map(|v| v.to_string()),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=max.max(1)).prop_map(|s| format!("*/{s}")),
            (min..=max, min..=max).prop_map(|(a, b)| format!("{a},{b}")),
        ]
    }

    fn schedule() -> impl Strategy<Value = String> {
        (
            field(59, 0),
            field(23, 0),
            field(31, 1),
            field(12, 1),
            field(6, 0),
        )
            .prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
    }

    proptest! {
        #[test]
        fn next_fires_later_and_nothing_fires_in_between(s in schedule(), start in 0i64..400_000_000) {
            let sched = parse(&s).expect("generated schedules are valid");
            let from = Utc.timestamp_opt(1_600_000_000 + start, 0).single().expect("time");
            if let Some(n) = sched.next_after(from) {
                prop_assert!(n > from);
                prop_assert!(sched.matches(n));
                prop_assert_eq!(n.second(), 0);
                // No earlier minute in between fires (checked over up to two days).
                let mut m = from.with_second(0).and_then(|x| x.with_nanosecond(0)).expect("minute")
                    + Duration::minutes(1);
                let mut steps = 0;
                while m < n && steps < 2 * 24 * 60 {
                    prop_assert!(!sched.matches(m), "{} fires at {} before {}", s, m, n);
                    m += Duration::minutes(1);
                    steps += 1;
                }
            }
        }

        #[test]
        fn parsing_never_panics(s in "[ -~]{0,40}") {
            let _ = parse(&s);
        }
    }
}
