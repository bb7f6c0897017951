//! Cron schedules: registration from SQL, and firing the due ones (from tick()). Each fire
//! time enqueues one run with id `cron:<name>:<UTC time>`, so any number of concurrent
//! schedulers create it once.
//!
//! Each fire runs in its own subtransaction. A fire that fails (its queue is gone, its id is
//! taken by a run of another name, ...) is rolled back alone, recorded on its schedule
//! (`last_error`, `last_error_at`), and the schedule moves on to its next fire time: one bad
//! schedule never blocks another, and never makes a scheduler retry in a loop.

use crate::cron::{self, CronSchedule};
use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Raw};
use crate::queue::{self, NewRun};
use crate::spi::{self, Conn, Out, Rows, Statement, JSONB, TEXT};
use crate::validate::MAX_SCHEDULE_NAME_BYTES;
use crate::{sql_function, wake, warn};
use chrono::Utc;
use pgrx::pg_sys::{self, Datum, TIMESTAMPTZOID as TIMESTAMPTZ};
use pgrx::IntoDatum;

/// An upsert: a changed cron or time zone restarts the schedule from now.
static UPSERT: Statement = Statement::new(
    c"INSERT INTO workflow.schedule AS s (name, cron, timezone, workflow_name, input, queue, next_fire_at)
      SELECT $1, $2, $3, $4, $5, q.name, $7 FROM workflow.queue q WHERE q.name = $6
      ON CONFLICT (name) DO UPDATE
         SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, workflow_name = EXCLUDED.workflow_name,
             input = EXCLUDED.input, queue = EXCLUDED.queue, next_fire_at = EXCLUDED.next_fire_at,
             updated_at = now()
      RETURNING s.next_fire_at",
    &[TEXT, TEXT, TEXT, TEXT, JSONB, TEXT, TIMESTAMPTZ],
);

static DELETE: Statement =
    Statement::new(c"DELETE FROM workflow.schedule WHERE name = $1 RETURNING name", &[TEXT]);

static SET_PAUSED: Statement = Statement::new(
    c"UPDATE workflow.schedule SET paused = $2, next_fire_at = $3, updated_at = now()
       WHERE name = $1 RETURNING name",
    &[TEXT, pg_sys::BOOLOID, TIMESTAMPTZ],
);

static ONE: Statement = Statement::new(
    c"SELECT cron, timezone, workflow_name, input, queue FROM workflow.schedule WHERE name = $1",
    &[TEXT],
);

/// The due schedules; SKIP LOCKED lets concurrent tick()s share them out.
static DUE: Statement = Statement::new(
    c"SELECT name, cron, timezone, workflow_name, input, queue, next_fire_at FROM workflow.schedule
       WHERE NOT paused AND next_fire_at <= clock_timestamp()
       ORDER BY next_fire_at
       FOR UPDATE SKIP LOCKED",
    &[],
);

static FIRED: Statement = Statement::new(
    c"UPDATE workflow.schedule SET last_fired_at = $2, last_workflow_id = $3, next_fire_at = $4
       WHERE name = $1",
    &[TEXT, TIMESTAMPTZ, TEXT, TIMESTAMPTZ],
);

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

fn pg_time(t: Option<chrono::DateTime<Utc>>) -> Option<Datum> {
    t.map(|t| Datum::from(cron::to_pg(t)))
}

fn next_from_now(schedule: &CronSchedule) -> Option<Datum> {
    pg_time(schedule.next_after(Utc::now()))
}

/// The name of a schedule that exists: no length limit, so that one stored before names had
/// a limit can still be paused, triggered or dropped.
fn existing_name(args: &Args) -> Result<String> {
    args.name_within(0, "name", usize::MAX)
}

fn schedule(args: &Args) -> Result<Raw> {
    let name = args.name_within(0, "name", MAX_SCHEDULE_NAME_BYTES)?;
    let expression = args.name(1, "cron")?;
    let workflow_name = args.name(2, "workflow_name")?;
    let input = args.jsonb(3, "input")?;
    let queue = args.name(4, "queue")?;
    let timezone = args.name(5, "timezone")?;
    let parsed = cron::parse(&expression, &timezone)?;
    if parsed.next_after(Utc::now()).is_none() {
        return Err(WorkflowError::CronNeverFires { cron: expression });
    }
    let row = [
        text_datum(&name),
        text_datum(&expression),
        text_datum(&timezone),
        text_datum(&workflow_name),
        input,
        text_datum(&queue),
        next_from_now(&parsed),
    ];
    spi::connect(|c| {
        let upserted = UPSERT.run(c, &row);
        if upserted.is_empty() {
            return Err(WorkflowError::UnknownQueue { queue: queue.clone() });
        }
        wake::notify_on_commit(wake::scheduler_slot()); // the schedulers recompute their wake-up
        Ok(Raw(upserted.int8(0, 1).map(Out::by_value)))
    })
}

fn unschedule(args: &Args) -> Result<()> {
    let name = existing_name(args)?;
    spi::connect(|c| match DELETE.run(c, &[text_datum(&name)]).len() {
        1 => Ok(()),
        _ => Err(WorkflowError::UnknownSchedule { schedule: name.clone() }),
    })
}

/// Pausing clears next_fire_at; resuming restarts from now, so paused time is not made up.
fn set_paused(args: &Args, paused: bool) -> Result<()> {
    let name = existing_name(args)?;
    spi::connect(|c| {
        let one = ONE.run(c, &[text_datum(&name)]);
        let (Some(expression), Some(timezone)) = (one.text(0, 1), one.text(0, 2)) else {
            return Err(WorkflowError::UnknownSchedule { schedule: name.clone() });
        };
        let next = if paused { None } else { next_from_now(&cron::parse(&expression, &timezone)?) };
        SET_PAUSED.run(c, &[text_datum(&name), paused.into_datum(), next]);
        wake::notify_on_commit(wake::scheduler_slot());
        Ok(())
    })
}

fn pause_schedule(args: &Args) -> Result<()> {
    set_paused(args, true)
}

fn resume_schedule(args: &Args) -> Result<()> {
    set_paused(args, false)
}

/// Fires the schedule now, off its cron; returns the run's id, which is new on every call.
fn trigger_schedule(args: &Args) -> Result<String> {
    let name = existing_name(args)?;
    spi::connect(|c| {
        let one = ONE.run(c, &[text_datum(&name)]);
        let (Some(workflow_name), Some(queue)) = (one.text(0, 3), one.text(0, 5)) else {
            return Err(WorkflowError::UnknownSchedule { schedule: name.clone() });
        };
        let id = cron::manual_fire_id(&name, uuid::Uuid::now_v7());
        enqueue_fire(c, &queue, &workflow_name, one.varlena(0, 4), &id)
    })
}

fn enqueue_fire(c: &Conn, queue: &str, workflow_name: &str, input: Option<Out>, id: &str) -> Result<String> {
    queue::enqueue_run(c, &NewRun {
        queue,
        name: workflow_name,
        workflow_id: id,
        input: input.map(Out::datum),
        priority: 0,
        deduplication_id: None,
        partition_key: None,
        delay: None,
        timeout: None,
        app_version: None,
        parent_id: None,
    })
}

/// Fires every due schedule once, at its latest fire time not after now (missed earlier times
/// are not replayed). Returns how many fired, and when the next one is due.
pub fn fire_due(c: &Conn) -> (i64, Option<i64>) {
    let now = Utc::now();
    let due = DUE.run(c, &[]);
    let mut fired = 0;
    for i in 0..due.len() {
        let name = due.text(i, 1).unwrap_or_default();
        let parsed = cron::parse(&due.text(i, 2).unwrap_or_default(), &due.text(i, 3).unwrap_or_default());
        let next = parsed.as_ref().ok().and_then(|p| p.next_after(now));
        let outcome = spi::catching(|| {
            let fired = parsed.as_ref().map_err(Clone::clone).and_then(|p| fire_one(c, &due, i, &name, p, now));
            let keep = fired.is_ok();
            (fired, keep)
        });
        match outcome {
            Ok(Ok(())) => fired += 1,
            Ok(Err(e)) => failed(c, &name, &e.to_string(), next),
            // A deadlock or a serialization failure may pass: record it, and try the same fire
            // time again at the next interval.
            Err(e) if e.is_transient() => failed(c, &name, &e.message, due.int8(i, 7).and_then(from_pg)),
            Err(e) => failed(c, &name, &e.message, next),
        }
    }
    (fired, NEXT_DUE.run(c, &[pg_time(Some(now))]).int8(0, 1))
}

fn from_pg(t: i64) -> Option<chrono::DateTime<Utc>> {
    chrono::DateTime::from_timestamp_micros(t + cron::PG_EPOCH_OFFSET_MICROS)
}

fn fire_one(c: &Conn, due: &Rows, i: usize, name: &str, parsed: &CronSchedule, now: chrono::DateTime<Utc>) -> Result<()> {
    let at = parsed.latest_at_or_before(now).unwrap_or(now);
    let id = cron::fire_id(name, at);
    // A name stored before names had a limit may make an id that no call could name.
    crate::validate::length(&id, "fire id (rename the schedule)", crate::validate::MAX_ID_BYTES)?;
    let workflow_name = due.text(i, 4).unwrap_or_default();
    let queue = due.text(i, 6).unwrap_or_default();
    enqueue_fire(c, &queue, &workflow_name, due.varlena(i, 5), &id)?;
    FIRED.run(c, &[text_datum(name), pg_time(Some(at)), text_datum(&id), pg_time(parsed.next_after(now))]);
    Ok(())
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

sql_function!(wf_schedule, pg_finfo_wf_schedule, schedule);
sql_function!(wf_unschedule, pg_finfo_wf_unschedule, unschedule);
sql_function!(wf_pause_schedule, pg_finfo_wf_pause_schedule, pause_schedule);
sql_function!(wf_resume_schedule, pg_finfo_wf_resume_schedule, resume_schedule);
sql_function!(wf_trigger_schedule, pg_finfo_wf_trigger_schedule, trigger_schedule);
