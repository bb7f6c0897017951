//! Cron math for schedules: parsing, time zones, fire times and fire ids. Pure Rust (croner and
//! chrono-tz), no Postgres calls, so plain `#[test]`s cover it.

use crate::error::{Result, WorkflowError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Microseconds between the Unix epoch and Postgres' (2000-01-01 UTC).
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

/// The macros that pg_cron and Vixie cron accept, as 5-field expressions.
fn expand_macro(expression: &str) -> Option<&'static str> {
    Some(match expression.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// Parses 5 fields, or 6 with leading seconds, or a macro (@hourly, @daily, ...), in an IANA
/// time zone.
pub fn parse(expression: &str, timezone: &str) -> Result<CronSchedule> {
    let tz: Tz = timezone
        .parse()
        .map_err(|_| WorkflowError::UnknownTimezone { timezone: timezone.into() })?;
    let fields_of = expand_macro(expression).unwrap_or(expression);
    let fields = fields_of.split_whitespace().count();
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let cron = match fields {
        5 | 6 => parser.parse(fields_of),
        _ => {
            return Err(WorkflowError::InvalidCron {
                cron: expression.into(),
                reason: format!("{fields} fields; expected 5, or 6 with leading seconds"),
            })
        }
    }
    .map_err(|e| WorkflowError::InvalidCron { cron: expression.into(), reason: e.to_string() })?;
    Ok(CronSchedule { cron, tz })
}

impl CronSchedule {
    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time at or before `t`: after downtime, only this one fires.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&local, true).ok().map(|d| d.with_timezone(&Utc))
    }

    /// The latest fire time strictly before `t`.
    pub fn previous_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&local, false).ok().map(|d| d.with_timezone(&Utc))
    }
}

/// The id of the run a schedule fires at `at`: any number of schedulers agree on it.
pub fn fire_id(schedule: &str, at: DateTime<Utc>) -> String {
    format!("cron:{schedule}:{}", at.format("%Y-%m-%dT%H:%M:%SZ"))
}

/// The id of a run fired by hand (`trigger_schedule`): unique per call.
pub fn manual_fire_id(schedule: &str, unique: uuid::Uuid) -> String {
    format!("cron:{schedule}:manual:{unique}")
}

pub fn to_pg(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields() {
        let every_minute = parse("* * * * *", "UTC").unwrap();
        assert_eq!(every_minute.next_after(utc("2026-01-01T00:00:30Z")), Some(utc("2026-01-01T00:01:00Z")));
        let every_second = parse("* * * * * *", "UTC").unwrap();
        assert_eq!(every_second.next_after(utc("2026-01-01T00:00:30Z")), Some(utc("2026-01-01T00:00:31Z")));
        let at_15s = parse("15 * * * * *", "UTC").unwrap();
        assert_eq!(at_15s.next_after(utc("2026-01-01T00:00:30Z")), Some(utc("2026-01-01T00:01:15Z")));
    }

    #[test]
    fn bad_expressions_and_zones_are_rejected() {
        assert!(matches!(parse("* * *", "UTC"), Err(WorkflowError::InvalidCron { .. })));
        assert!(matches!(parse("61 * * * *", "UTC"), Err(WorkflowError::InvalidCron { .. })));
        assert!(matches!(parse("* * * * * * 2030", "UTC"), Err(WorkflowError::InvalidCron { .. })));
        assert!(matches!(parse("not cron at all", "UTC"), Err(WorkflowError::InvalidCron { .. })));
        assert!(matches!(parse("* * * * *", "Mars/Olympus"), Err(WorkflowError::UnknownTimezone { .. })));
    }

    #[test]
    fn macros_are_the_usual_expressions() {
        let now = utc("2026-03-14T15:09:26Z");
        let hourly = parse("@hourly", "UTC").unwrap();
        assert_eq!(hourly.next_after(now), Some(utc("2026-03-14T16:00:00Z")));
        let daily = parse("@daily", "UTC").unwrap();
        assert_eq!(daily.next_after(now), Some(utc("2026-03-15T00:00:00Z")));
        assert_eq!(parse("@midnight", "UTC").unwrap().next_after(now), daily.next_after(now));
        assert_eq!(parse("@weekly", "UTC").unwrap().next_after(now), Some(utc("2026-03-15T00:00:00Z")));
        assert_eq!(parse("@monthly", "UTC").unwrap().next_after(now), Some(utc("2026-04-01T00:00:00Z")));
        for yearly in ["@yearly", "@annually", "@YEARLY"] {
            assert_eq!(parse(yearly, "UTC").unwrap().next_after(now), Some(utc("2027-01-01T00:00:00Z")));
        }
        assert!(matches!(parse("@reboot", "UTC"), Err(WorkflowError::InvalidCron { .. })));
    }

    #[test]
    fn a_cron_that_never_fires_has_no_next_time() {
        let feb_31 = parse("0 0 31 2 *", "UTC").unwrap();
        assert_eq!(feb_31.next_after(utc("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn manual_fire_ids_differ_per_call() {
        let a = manual_fire_id("nightly", uuid::Uuid::now_v7());
        let b = manual_fire_id("nightly", uuid::Uuid::now_v7());
        assert!(a.starts_with("cron:nightly:manual:"));
        assert_ne!(a, b);
    }

    #[test]
    fn time_zones_move_the_fire_time() {
        // 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
        let nine = parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(nine.next_after(utc("2026-01-10T12:00:00Z")), Some(utc("2026-01-11T08:00:00Z")));
        assert_eq!(nine.next_after(utc("2026-07-10T12:00:00Z")), Some(utc("2026-07-11T07:00:00Z")));
    }

    #[test]
    fn after_downtime_only_the_latest_missed_time_fires() {
        let hourly = parse("0 * * * *", "UTC").unwrap();
        assert_eq!(hourly.latest_at_or_before(utc("2026-01-01T05:30:00Z")), Some(utc("2026-01-01T05:00:00Z")));
        assert_eq!(hourly.latest_at_or_before(utc("2026-01-01T05:00:00Z")), Some(utc("2026-01-01T05:00:00Z")));
    }

    #[test]
    fn fire_ids_are_utc_and_second_precise() {
        assert_eq!(fire_id("nightly", utc("2026-03-01T02:00:00+01:00")), "cron:nightly:2026-03-01T01:00:00Z");
    }

    #[test]
    fn postgres_timestamps_count_from_2000() {
        assert_eq!(to_pg(utc("2000-01-01T00:00:00Z")), 0);
        assert_eq!(to_pg(utc("2000-01-01T00:00:01Z")), 1_000_000);
    }
}
