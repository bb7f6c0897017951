//! Cron schedules: registration, pause, resume and manual fires from SQL. Firing the due
//! ones, from tick(), is in `fire`; the options' decisions are in `options`.

use crate::cron::{self, CronSchedule};
use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Raw};
use crate::queue::{self, NewRun};
use crate::spi::{self, Conn, Out, Statement, INT4, JSONB, TEXT};
use crate::validate::MAX_SCHEDULE_NAME_BYTES;
use crate::{sql, sql_function, wake};
use chrono::Utc;
use options::{CatchUp, Overlap};
use pgrx::pg_sys::{self, Datum, TIMESTAMPTZOID as TIMESTAMPTZ};
use pgrx::IntoDatum;

mod fire;
mod options;

pub use fire::fire_due;

/// An upsert: a changed cron or time zone restarts the schedule from now. `$columns`,
/// `$values` and `$updates` add the option columns (none for a 0.1.0 or 0.2.0 declaration).
macro_rules! upsert {
    ($columns:literal, $values:literal, $updates:literal) => {
        sql!(
            "INSERT INTO workflow.schedule AS s (name, cron, timezone, workflow_name, input, queue, next_fire_at",
            $columns,
            ")
             SELECT $1, $2, $3, $4, $5, q.name, $7",
            $values,
            " FROM workflow.queue q WHERE q.name = $6
             ON CONFLICT (name) DO UPDATE
                SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, workflow_name = EXCLUDED.workflow_name,
                    input = EXCLUDED.input, queue = EXCLUDED.queue, next_fire_at = EXCLUDED.next_fire_at,
                    updated_at = now()",
            $updates,
            " RETURNING s.next_fire_at"
        )
    };
}

/// A buffered fire stays only while the schedule still buffers.
static UPSERT: Statement = Statement::new(
    upsert!(
        ", overlap, catch_up, catch_up_limit",
        ", $8, $9, $10",
        ", overlap = EXCLUDED.overlap, catch_up = EXCLUDED.catch_up, catch_up_limit = EXCLUDED.catch_up_limit,
           buffered_fire_at = CASE WHEN EXCLUDED.overlap = 'buffer_one' THEN s.buffered_fire_at END"
    ),
    &[TEXT, TEXT, TEXT, TEXT, JSONB, TEXT, TIMESTAMPTZ, TEXT, TEXT, INT4],
);

/// `UPSERT` through the 6-argument declaration of 0.1.0 and 0.2.0, whose schema has no option
/// columns: the new library serves it until ALTER EXTENSION UPDATE.
static LEGACY_UPSERT: Statement =
    Statement::new(upsert!("", "", ""), &[TEXT, TEXT, TEXT, TEXT, JSONB, TEXT, TIMESTAMPTZ]);

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
    // The 0.1.0 and 0.2.0 declarations pass 6 arguments, on a schema without the options.
    let with_options = args.count() > 6;
    let (overlap, catch_up, limit) = if with_options {
        let overlap = args.name(6, "overlap")?;
        let catch_up = args.name(7, "catch_up")?;
        let limit = args.int(8).ok_or(WorkflowError::NullArgument { arg: "catch_up_limit" })?;
        Overlap::parse(&overlap)?;
        CatchUp::parse(&catch_up)?;
        options::catch_up_limit(limit)?;
        (overlap, catch_up, limit)
    } else {
        Default::default()
    };
    let parsed = cron::parse(&expression, &timezone)?;
    if parsed.next_after(Utc::now()).is_none() {
        return Err(WorkflowError::CronNeverFires { cron: expression });
    }
    let mut row = vec![
        text_datum(&name),
        text_datum(&expression),
        text_datum(&timezone),
        text_datum(&workflow_name),
        input,
        text_datum(&queue),
        next_from_now(&parsed),
    ];
    if with_options {
        row.extend([text_datum(&overlap), text_datum(&catch_up), limit.into_datum()]);
    }
    spi::connect(|c| {
        let upserted = if with_options { UPSERT.run(c, &row) } else { LEGACY_UPSERT.run(c, &row) };
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
        let fired = enqueue_fire(c, &queue, &workflow_name, one.varlena(0, 4), &id)?;
        crate::stats::count(crate::stats::Counter::ScheduleFires);
        Ok(fired)
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

sql_function!(wf_schedule, pg_finfo_wf_schedule, schedule);
sql_function!(wf_unschedule, pg_finfo_wf_unschedule, unschedule);
sql_function!(wf_pause_schedule, pg_finfo_wf_pause_schedule, pause_schedule);
sql_function!(wf_resume_schedule, pg_finfo_wf_resume_schedule, resume_schedule);
sql_function!(wf_trigger_schedule, pg_finfo_wf_trigger_schedule, trigger_schedule);
