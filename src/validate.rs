//! Argument checks. Pure Rust, no Postgres calls, so plain `#[test]`s cover them.

use crate::error::{Result, WorkflowError};

/// The longest id, name or key, in bytes (Temporal's limit for workflow ids). Btree entries
/// must stay under about 2 700 bytes, and our widest keys hold two such values.
pub const MAX_ID_BYTES: usize = 1000;

/// The longest schedule name: its fire ids (`cron:<name>:manual:<uuid>`) must stay ids.
pub const MAX_SCHEDULE_NAME_BYTES: usize = 900;

pub fn non_empty(value: &str, arg: &'static str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(WorkflowError::EmptyArgument { arg });
    }
    Ok(())
}

pub fn length(value: &str, arg: &'static str, limit: usize) -> Result<()> {
    if value.len() > limit {
        return Err(WorkflowError::TooLong { arg, bytes: value.len(), limit });
    }
    Ok(())
}

/// An id, name or key: not blank, and at most `limit` bytes.
pub fn identifier(value: &str, arg: &'static str, limit: usize) -> Result<()> {
    non_empty(value, arg)?;
    length(value, arg, limit)
}

pub fn step(step: i32) -> Result<()> {
    if step < 1 {
        return Err(WorkflowError::InvalidStep { step });
    }
    Ok(())
}

pub fn payload_size(arg: &'static str, bytes: usize, limit: usize) -> Result<()> {
    if bytes > limit {
        return Err(WorkflowError::PayloadTooLarge { arg, bytes, limit });
    }
    Ok(())
}

/// A flow-control limit: NULL (no limit) or at least 1.
pub fn limit(arg: &'static str, value: Option<i32>) -> Result<Option<i32>> {
    match value {
        Some(v) if v < 1 => Err(WorkflowError::InvalidLimit { arg, value: v as i64 }),
        v => Ok(v),
    }
}

/// An interval's length in microseconds, with a month as 30 days, like Postgres'
/// `interval_cmp_value`. Saturates instead of overflowing.
pub fn interval_micros(months: i32, days: i32, time: i64) -> i64 {
    const DAY: i64 = 86_400_000_000;
    (months as i64 * 30 + days as i64).saturating_mul(DAY).saturating_add(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_have_content() {
        assert!(non_empty("a", "name").is_ok());
        assert_eq!(non_empty("", "name"), Err(WorkflowError::EmptyArgument { arg: "name" }));
        assert!(non_empty("  ", "name").is_err());
    }

    #[test]
    fn ids_have_a_length_limit() {
        assert!(identifier(&"x".repeat(MAX_ID_BYTES), "workflow_id", MAX_ID_BYTES).is_ok());
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            identifier(&long, "workflow_id", MAX_ID_BYTES),
            Err(WorkflowError::TooLong { arg: "workflow_id", bytes: MAX_ID_BYTES + 1, limit: MAX_ID_BYTES })
        );
        assert!(length("", "topic", 10).is_ok());
    }

    #[test]
    fn steps_start_at_one() {
        assert!(step(1).is_ok());
        assert!(step(0).is_err());
        assert!(step(-5).is_err());
    }

    #[test]
    fn payload_limit_is_inclusive() {
        assert!(payload_size("input", 10, 10).is_ok());
        assert!(payload_size("input", 11, 10).is_err());
    }

    #[test]
    fn limits_are_null_or_positive() {
        assert_eq!(limit("concurrency", None), Ok(None));
        assert_eq!(limit("concurrency", Some(1)), Ok(Some(1)));
        assert!(limit("concurrency", Some(0)).is_err());
        assert!(limit("concurrency", Some(-3)).is_err());
    }

    #[test]
    fn interval_length_counts_months_and_days() {
        assert_eq!(interval_micros(0, 0, 5), 5);
        assert_eq!(interval_micros(0, 1, -1), 86_400_000_000 - 1);
        assert!(interval_micros(0, -1, 3_600_000_000) < 0);
        assert_eq!(interval_micros(1, 0, 0), 30 * 86_400_000_000);
        assert_eq!(interval_micros(i32::MAX, i32::MAX, i64::MAX), i64::MAX);
    }
}
