//! Argument checks. Pure Rust, no Postgres calls, so plain `#[test]`s cover them.

use crate::error::{Result, WorkflowError};

pub fn non_empty(value: &str, arg: &'static str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(WorkflowError::EmptyArgument { arg });
    }
    Ok(())
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
