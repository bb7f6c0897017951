//! Firing schedules, from tick(): the due ones, and those with a buffered fire whose previous
//! run has ended. Each fire time enqueues one run with id `cron:<name>:<UTC time>`, so any
//! number of concurrent schedulers create it once.
//!
//! Each schedule is handled in its own subtransaction, and each of its fires in one more. A
//! fire that fails (its queue is gone, its id is taken by a run of another name, ...) is rolled
//! back alone, recorded on its schedule (`last_error`, `last_error_at`), and the schedule moves
//! on: one bad schedule never blocks another, and never makes a scheduler retry in a loop.

use super::options::{self, CatchUp, Decision, Overlap, FIRE_TIMES_PER_PASS};
use super::{enqueue_fire, pg_time};
use crate::cron::{self, CronSchedule};
use crate::error::Result;
use crate::fmgr::text_datum;
use crate::spi::{self, Conn, Out, Rows, Statement, TEXT};
use crate::{sql, warn};
use chrono::{DateTime, Utc};
use pgrx::pg_sys::{self, TIMESTAMPTZOID as TIMESTAMPTZ};
use pgrx::IntoDatum;

/// Whether the schema has the option columns (0.3.0 on): until ALTER EXTENSION UPDATE, the
/// new library fires the schedules of an older schema as that version did.
static HAS_OPTIONS: Statement = Statement::new(
    c"SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
                      WHERE attrelid = pg_catalog.to_regclass('workflow.schedule')
                        AND attname = 'catch_up_limit' AND NOT attisdropped)",
    &[],
);

/// The schedules to handle now: the due ones (SKIP LOCKED lets concurrent tick()s share them
/// out). `$columns`, `$from` and `$where` add the options, and the schedules with a buffered
/// fire whose previous run has ended.
macro_rules! due {
    ($columns:literal, $from:literal, $where:literal) => {
        sql!(
            "SELECT s.name, s.cron, s.timezone, s.workflow_name, s.input, s.queue, s.next_fire_at",
            $columns,
            " FROM workflow.schedule s",
            $from,
            " WHERE NOT s.paused AND ",
            $where,
            " ORDER BY s.next_fire_at FOR UPDATE OF s SKIP LOCKED"
        )
    };
}

/// Column 12, busy: the run of the previous fire is still active. The first condition picks
/// the candidates on the schedule alone; only they probe the run table, one primary-key
/// lookup each (LIMIT keeps the subquery a per-row lookup: never a join over the runs).
static DUE: Statement = Statement::new(
    due!(
        ", s.overlap, s.catch_up, s.catch_up_limit, s.buffered_fire_at, a.busy IS NOT NULL",
        " LEFT JOIN LATERAL (SELECT true AS busy FROM workflow.run r
                             WHERE r.workflow_id = s.last_workflow_id COLLATE \"C\"
                               AND r.status IN ('ENQUEUED', 'DELAYED', 'PENDING') LIMIT 1) a ON true",
        "(s.next_fire_at <= clock_timestamp() OR s.buffered_fire_at IS NOT NULL)
           AND (s.next_fire_at <= clock_timestamp() OR a.busy IS NULL)"
    ),
    &[],
);

static LEGACY_DUE: Statement = Statement::new(due!("", "", "s.next_fire_at <= clock_timestamp()"), &[]);

/// What a pass did to a schedule. NULL ($2, $3, $7): unchanged.
macro_rules! fired {
    ($more:literal) => {
        sql!(
            "UPDATE workflow.schedule SET last_fired_at = coalesce($2, last_fired_at),
                    last_workflow_id = coalesce($3, last_workflow_id), next_fire_at = $4",
            $more,
            " WHERE name = $1"
        )
    };
}

static FIRED: Statement = Statement::new(
    fired!(", buffered_fire_at = $5, skipped_fires = skipped_fires + $6, last_skipped_at = coalesce($7, last_skipped_at)"),
    &[TEXT, TIMESTAMPTZ, TEXT, TIMESTAMPTZ, TIMESTAMPTZ, pg_sys::INT8OID, TIMESTAMPTZ],
);

static LEGACY_FIRED: Statement = Statement::new(fired!(""), &[TEXT, TIMESTAMPTZ, TEXT, TIMESTAMPTZ]);

static FAILED: Statement = Statement::new(
    c"UPDATE workflow.schedule SET last_error = $2, last_error_at = clock_timestamp(), next_fire_at = $3
       WHERE name = $1",
    &[TEXT, TEXT, TIMESTAMPTZ],
);

/// `FAILED` for a 0.1.0 schema, which has no last_error yet: the new library may run against
/// it until ALTER EXTENSION UPDATE, and its schedules must still move on.
static MOVED_ON: Statement =
    Statement::new(c"UPDATE workflow.schedule SET next_fire_at = $2 WHERE name = $1", &[TEXT, TIMESTAMPTZ]);

/// The next fire time after the pass began ($1). A schedule that was due before and that this
/// pass could not claim (another session holds its row) is left out: it is retried at the next
/// interval, not in a loop. One that came due during the pass is next, at once.
static NEXT_DUE: Statement = Statement::new(
    c"SELECT min(next_fire_at) FROM workflow.schedule WHERE NOT paused AND next_fire_at > $1",
    &[TIMESTAMPTZ],
);

/// Handles every schedule that is due, or whose buffered fire may start, each in its own
/// subtransaction. Returns how many runs were enqueued, and when the next schedule is due.
pub fn fire_due(c: &Conn) -> (i64, Option<i64>) {
    let now = Utc::now();
    let with_options = HAS_OPTIONS.run(c, &[]).bool(0, 1).unwrap_or(false);
    let due = if with_options { DUE.run(c, &[]) } else { LEGACY_DUE.run(c, &[]) };
    let mut fired = 0;
    for i in 0..due.len() {
        let schedule = Due::read(&due, i, with_options);
        let next = schedule.parsed.as_ref().ok().and_then(|p| p.next_after(now));
        let outcome = spi::catching(|| {
            let fired = fire_schedule(c, &schedule, now);
            let keep = fired.is_ok();
            (fired, keep)
        });
        let name = &schedule.name;
        match outcome {
            Ok(Ok(n)) => fired += n,
            Ok(Err(e)) => failed(c, name, &e.to_string(), next),
            // A deadlock or a serialization failure may pass: record it, and try the same fire
            // time again at the next interval.
            Err(e) if e.is_transient() => failed(c, name, &e.message, schedule.next_fire_at),
            Err(e) => failed(c, name, &e.message, next),
        }
    }
    crate::stats::add(crate::stats::Counter::ScheduleFires, fired as u64);
    (fired, NEXT_DUE.run(c, &[pg_time(Some(now))]).int8(0, 1))
}

fn from_pg(t: i64) -> Option<DateTime<Utc>> {
    chrono::DateTime::from_timestamp_micros(t + cron::PG_EPOCH_OFFSET_MICROS)
}

/// One row of `DUE` (or `LEGACY_DUE`: the options take their defaults), read out.
struct Due {
    name: String,
    parsed: Result<CronSchedule>,
    workflow_name: String,
    input: Option<Out>,
    queue: String,
    next_fire_at: Option<DateTime<Utc>>,
    overlap: Overlap,
    catch_up: CatchUp,
    limit: usize,
    buffered_fire_at: Option<DateTime<Utc>>,
    busy: bool,
    with_options: bool,
}

impl Due {
    fn read(due: &Rows, i: usize, with_options: bool) -> Due {
        let option = |col| if with_options { due.text(i, col) } else { None };
        Due {
            name: due.text(i, 1).unwrap_or_default(),
            parsed: cron::parse(&due.text(i, 2).unwrap_or_default(), &due.text(i, 3).unwrap_or_default()),
            workflow_name: due.text(i, 4).unwrap_or_default(),
            input: due.varlena(i, 5),
            queue: due.text(i, 6).unwrap_or_default(),
            next_fire_at: due.int8(i, 7).and_then(from_pg),
            // A value stored around schedule()'s checks counts as the default.
            overlap: option(8).and_then(|v| Overlap::parse(&v).ok()).unwrap_or(Overlap::Allow),
            catch_up: option(9).and_then(|v| CatchUp::parse(&v).ok()).unwrap_or(CatchUp::Latest),
            limit: with_options
                .then(|| due.int(i, 10))
                .flatten()
                .and_then(|l| options::catch_up_limit(l).ok())
                .unwrap_or(1),
            buffered_fire_at: if with_options { due.int8(i, 11).and_then(from_pg) } else { None },
            busy: with_options && due.bool(i, 12).unwrap_or(false),
            with_options,
        }
    }
}

/// How one fire time went.
enum Fire {
    Enqueued(String),
    Failed(String),
    /// A deadlock, serialization failure or lock timeout: try this fire time again next pass.
    Transient(String),
}

/// Enqueues the run of `schedule`'s fire at `at`, in its own subtransaction.
fn fire_at(c: &Conn, schedule: &Due, at: DateTime<Utc>) -> Fire {
    let id = cron::fire_id(&schedule.name, at);
    // A name stored before names had a limit may make an id that no call could name.
    if let Err(e) = crate::validate::length(&id, "fire id (rename the schedule)", crate::validate::MAX_ID_BYTES) {
        return Fire::Failed(e.to_string());
    }
    let enqueued = spi::catching(|| {
        let r = enqueue_fire(c, &schedule.queue, &schedule.workflow_name, schedule.input, &id);
        let keep = r.is_ok();
        (r, keep)
    });
    match enqueued {
        Ok(Ok(id)) => Fire::Enqueued(id),
        Ok(Err(e)) => Fire::Failed(e.to_string()),
        Err(e) if e.is_transient() => Fire::Transient(e.message),
        Err(e) => Fire::Failed(e.message),
    }
}

/// What a pass does to one schedule, written back by `FIRED`.
struct Pass {
    fired: i64,
    last: Option<(DateTime<Utc>, String)>,
    next: Option<DateTime<Utc>>,
    buffered: Option<DateTime<Utc>>,
    skipped: i64,
    last_skipped: Option<DateTime<Utc>>,
    error: Option<String>,
}

/// First a buffered fire whose previous run has ended, then the due fire times, each as its
/// overlap option decides. Returns how many runs it enqueued.
fn fire_schedule(c: &Conn, schedule: &Due, now: DateTime<Utc>) -> Result<i64> {
    let parsed = schedule.parsed.as_ref().map_err(Clone::clone)?;
    let mut pass = Pass {
        fired: 0,
        last: None,
        next: schedule.next_fire_at,
        buffered: schedule.buffered_fire_at,
        skipped: 0,
        last_skipped: None,
        error: None,
    };
    let mut busy = schedule.busy;
    let mut transient = false;
    if let (Some(at), false) = (pass.buffered, busy) {
        match fire_at(c, schedule, at) {
            Fire::Enqueued(id) => (pass.fired, pass.last, pass.buffered, busy) = (1, Some((at, id)), None, true),
            Fire::Failed(e) => (pass.error, pass.buffered) = (Some(e), None),
            Fire::Transient(e) => (pass.error, transient) = (Some(e), true),
        }
    }
    if let Some(since) = schedule.next_fire_at.filter(|t| *t <= now && !transient) {
        let missed = options::missed(parsed, schedule.catch_up, schedule.limit, since, now);
        if let Some((from, to)) = missed.dropped {
            pgrx::log!(
                "pg_workflow: schedule \"{}\" catches up on its latest {} missed fire times; the earlier ones, from {from} to {to}, do not fire",
                schedule.name,
                schedule.limit
            );
        }
        pass.next = parsed.next_after(now);
        for (k, &at) in missed.times.iter().enumerate() {
            if k == FIRE_TIMES_PER_PASS {
                pass.next = Some(at); // the next pass goes on from here
                break;
            }
            match schedule.overlap.decide(busy, pass.buffered.is_some()) {
                Decision::Fire => match fire_at(c, schedule, at) {
                    Fire::Enqueued(id) => {
                        pass.fired += 1;
                        pass.last = Some((at, id));
                        busy = true;
                    }
                    Fire::Failed(e) => pass.error = Some(e),
                    Fire::Transient(e) => {
                        (pass.error, pass.next) = (Some(e), Some(at));
                        break;
                    }
                },
                Decision::Buffer => pass.buffered = Some(at),
                Decision::Skip => (pass.skipped, pass.last_skipped) = (pass.skipped + 1, Some(at)),
            }
        }
    }
    let (at, id) = pass.last.clone().unzip();
    let name = text_datum(&schedule.name);
    if schedule.with_options {
        let skipped = [pg_time(pass.buffered), pass.skipped.into_datum(), pg_time(pass.last_skipped)];
        FIRED.run(c, &[&[name, pg_time(at), id.as_deref().and_then(text_datum), pg_time(pass.next)][..], &skipped].concat());
    } else {
        LEGACY_FIRED.run(c, &[name, pg_time(at), id.as_deref().and_then(text_datum), pg_time(pass.next)]);
    }
    if let Some(e) = &pass.error {
        failed(c, &schedule.name, e, pass.next);
    }
    Ok(pass.fired)
}

/// A fire that failed: recorded on the schedule, which moves on to its next fire time (none
/// when its cron no longer parses or never fires again), and logged at most once a minute.
fn failed(c: &Conn, name: &str, message: &str, next: Option<chrono::DateTime<Utc>>) {
    let recorded = spi::catching(|| (FAILED.run(c, &[text_datum(name), text_datum(message), pg_time(next)]).len(), true));
    if recorded.is_err() {
        MOVED_ON.run(c, &[text_datum(name), pg_time(next)]);
    }
    warn::at_most_once_a_minute(&format!("schedule {name}"), &format!("pg_workflow: schedule \"{name}\" did not fire: {message}"));
}

