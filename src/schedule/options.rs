//! A schedule's options, as pure decisions (no Postgres calls, so plain `#[test]`s cover them):
//! what a fire does while the run of the previous fire is still active (`overlap`), and which
//! missed fire times fire after downtime (`catch_up`, at most `catch_up_limit` of them).

use crate::cron::CronSchedule;
use crate::error::{Result, WorkflowError};
use chrono::{DateTime, Utc};

/// The largest `catch_up_limit`: finding the missed times walks back over at most this many.
pub const MAX_CATCH_UP_LIMIT: i32 = 1000;

/// The most fire times one pass handles per schedule; a longer catch-up goes on at the next pass.
pub const FIRE_TIMES_PER_PASS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Every fire enqueues a run (the default).
    Allow,
    /// A fire while the previous fire's run is active enqueues nothing.
    Skip,
    /// A fire while the previous fire's run is active is remembered (one at most) and enqueued
    /// once that run has ended.
    BufferOne,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// After downtime, only the latest missed fire time fires (the default).
    Latest,
    /// After downtime, every missed fire time fires, oldest first (the latest `catch_up_limit`).
    All,
}

/// What one fire time does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Fire,
    Buffer,
    Skip,
}

impl Overlap {
    pub const ALLOWED: &'static str = "'allow', 'skip', 'buffer_one'";

    pub fn parse(value: &str) -> Result<Overlap> {
        Ok(match value {
            "allow" => Overlap::Allow,
            "skip" => Overlap::Skip,
            "buffer_one" => Overlap::BufferOne,
            _ => return Err(WorkflowError::InvalidOption { arg: "overlap", value: value.into(), allowed: Self::ALLOWED }),
        })
    }

    /// `busy`: the previous fire's run is still active; `buffered`: a fire is buffered already.
    pub fn decide(self, busy: bool, buffered: bool) -> Decision {
        match self {
            Overlap::Allow => Decision::Fire,
            _ if !busy => Decision::Fire,
            Overlap::BufferOne if !buffered => Decision::Buffer,
            _ => Decision::Skip,
        }
    }
}

impl CatchUp {
    pub const ALLOWED: &'static str = "'latest', 'all'";

    pub fn parse(value: &str) -> Result<CatchUp> {
        Ok(match value {
            "latest" => CatchUp::Latest,
            "all" => CatchUp::All,
            _ => return Err(WorkflowError::InvalidOption { arg: "catch_up", value: value.into(), allowed: Self::ALLOWED }),
        })
    }
}

pub fn catch_up_limit(value: i32) -> Result<usize> {
    if !(1..=MAX_CATCH_UP_LIMIT).contains(&value) {
        return Err(WorkflowError::OutOfRange {
            arg: "catch_up_limit",
            value: value.into(),
            min: 1,
            max: MAX_CATCH_UP_LIMIT.into(),
        });
    }
    Ok(value as usize)
}

/// The fire times a due schedule fires in one pass, oldest first, and the span of missed
/// times dropped because they are older than the latest `limit`.
#[derive(Debug, PartialEq, Eq)]
pub struct Missed {
    pub times: Vec<DateTime<Utc>>,
    pub dropped: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The fire times in `[since, now]` that fire: the latest only, or (`All`) the latest `limit`
/// of them. `since` is the schedule's next_fire_at: the first fire time not handled yet.
pub fn missed(cron: &CronSchedule, catch_up: CatchUp, limit: usize, since: DateTime<Utc>, now: DateTime<Utc>) -> Missed {
    let latest = cron.latest_at_or_before(now).unwrap_or(now);
    if catch_up == CatchUp::Latest {
        return Missed { times: vec![latest], dropped: None };
    }
    let mut times = vec![latest];
    let mut before = cron.previous_before(latest).filter(|t| *t >= since);
    while let Some(t) = before {
        if times.len() == limit {
            break;
        }
        times.push(t);
        before = cron.previous_before(t).filter(|t| *t >= since);
    }
    times.reverse();
    Missed { times, dropped: before.map(|last| (since, last)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn options_parse_and_bad_ones_are_22023() {
        assert_eq!(Overlap::parse("buffer_one"), Ok(Overlap::BufferOne));
        assert_eq!(CatchUp::parse("all"), Ok(CatchUp::All));
        for bad in [Overlap::parse("Skip").err(), CatchUp::parse("none").err(), catch_up_limit(0).err(), catch_up_limit(1001).err()] {
            assert_eq!(bad.map(|e| e.sqlstate()), Some("22023"));
        }
        assert_eq!(catch_up_limit(1000), Ok(1000));
    }

    #[test]
    fn overlap_decides_only_while_the_previous_run_is_active() {
        use Decision::*;
        assert_eq!(Overlap::Allow.decide(true, true), Fire);
        assert_eq!(Overlap::Skip.decide(false, false), Fire);
        assert_eq!(Overlap::Skip.decide(true, false), Skip);
        assert_eq!(Overlap::BufferOne.decide(false, false), Fire);
        assert_eq!(Overlap::BufferOne.decide(true, false), Buffer);
        assert_eq!(Overlap::BufferOne.decide(true, true), Skip);
    }

    #[test]
    fn latest_fires_one_time_and_all_fires_each_missed_time_oldest_first() {
        let hourly = cron::parse("0 * * * *", "UTC").unwrap();
        let (since, now) = (utc("2026-01-01T02:00:00Z"), utc("2026-01-01T05:30:00Z"));
        let latest = missed(&hourly, CatchUp::Latest, 100, since, now);
        assert_eq!(latest, Missed { times: vec![utc("2026-01-01T05:00:00Z")], dropped: None });
        let all = missed(&hourly, CatchUp::All, 100, since, now);
        let hours = ["02", "03", "04", "05"].map(|h| utc(&format!("2026-01-01T{h}:00:00Z")));
        assert_eq!(all, Missed { times: hours.to_vec(), dropped: None });
    }

    #[test]
    fn all_keeps_the_latest_limit_and_names_the_dropped_span() {
        let hourly = cron::parse("0 * * * *", "UTC").unwrap();
        let (since, now) = (utc("2026-01-01T00:00:00Z"), utc("2026-01-01T05:00:00Z"));
        let bounded = missed(&hourly, CatchUp::All, 2, since, now);
        assert_eq!(bounded.times, vec![utc("2026-01-01T04:00:00Z"), utc("2026-01-01T05:00:00Z")]);
        assert_eq!(bounded.dropped, Some((since, utc("2026-01-01T03:00:00Z"))));
        // Exactly `limit` missed times: nothing dropped.
        assert_eq!(missed(&hourly, CatchUp::All, 6, since, now).dropped, None);
    }

    #[test]
    fn a_long_downtime_walks_back_only_limit_times() {
        let every_second = cron::parse("* * * * * *", "UTC").unwrap();
        let (since, now) = (utc("2025-01-01T00:00:00Z"), utc("2026-01-01T00:00:00Z"));
        let m = missed(&every_second, CatchUp::All, 1000, since, now);
        assert_eq!(m.times.len(), 1000);
        assert_eq!(m.times.last(), Some(&now));
        assert_eq!(m.dropped.map(|d| d.1), Some(utc("2025-12-31T23:43:20Z")));
    }
}
