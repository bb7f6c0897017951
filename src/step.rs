//! Step checkpoints: `step_put` records a step's outcome once, `step_get` replays it.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Field, Record};
use crate::spi::{self, Conn, Out, Statement, INT4, JSONB, TEXT};
use crate::workflow::why_not_running;
use crate::{run_cache, sql, sql_function};
use pgrx::pg_sys::Datum;
use pgrx::IntoDatum;

/// The hot path: one plain insert. The primary key makes the first writer win: a second
/// writer waits for the first to commit, then fails with 23505 unique_violation. (ON CONFLICT
/// would let us word that error ourselves, but costs a second index descent on every step.)
static PUT: Statement = Statement::new(
    c"INSERT INTO workflow.checkpoint (workflow_id, step, step_name, output, error)
      VALUES ($1, $2, $3, $4, $5)",
    &[TEXT, INT4, TEXT, JSONB, JSONB],
);

/// Whether the run may take steps, and who owns it, when `run_cache` does not already know.
macro_rules! live {
    () => {
        "SELECT status = 'PENDING' AND (deadline IS NULL OR deadline > now()), deadline, executor_id
           FROM workflow.run WHERE workflow_id = $1"
    };
}
static LIVE: Statement = Statement::new(sql!(live!()), &[TEXT]);

/// The same under REPEATABLE READ or SERIALIZABLE, where the snapshot may predate a cancel or
/// a takeover: the share lock raises a serialization failure (40001) if the run changed since,
/// and holds off such changes until this transaction ends.
static LIVE_LOCKED: Statement = Statement::new(sql!(live!(), " FOR SHARE"), &[TEXT]);

static GET: Statement = Statement::new(
    c"SELECT r.status, r.status = 'PENDING' AND r.deadline <= now(), c.step_name, c.output, c.error
        FROM workflow.run r
        LEFT JOIN workflow.checkpoint c ON c.workflow_id = r.workflow_id AND c.step = $2
       WHERE r.workflow_id = $1",
    &[TEXT, INT4],
);

/// Refuses unless the run may take steps now (PENDING, within its deadline) and, when
/// `executor` is given, no other executor owns it (WF007: fencing a stale executor).
pub fn ensure_live(c: &Conn, workflow_id: &str, executor: Option<&str>) -> Result<()> {
    if run_cache::is_known_live(workflow_id, executor) {
        return Ok(());
    }
    let epoch = run_cache::epoch_now(workflow_id);
    let live = if run_cache::read_committed() { &LIVE } else { &LIVE_LOCKED };
    let run = live.run(c, &[text_datum(workflow_id)]);
    if run.bool(0, 1) != Some(true) {
        return Err(why_not_running(c, workflow_id));
    }
    let owner = run.text(0, 3);
    check_owner(workflow_id, owner.as_deref(), executor)?;
    run_cache::remember(workflow_id, epoch, run.int8(0, 2), owner.as_deref());
    Ok(())
}

/// WF007 when `executor` is given and does not own the run: another executor does, or nobody
/// does (an anonymous `start` took it over after this executor's lease expired).
pub fn check_owner(workflow_id: &str, owner: Option<&str>, executor: Option<&str>) -> Result<()> {
    match executor {
        Some(executor) if owner != Some(executor) => Err(WorkflowError::NotOwner {
            workflow_id: workflow_id.into(),
            owner: owner.map(str::to_string),
            executor_id: executor.into(),
        }),
        _ => Ok(()),
    }
}

/// Checkpoints a step, after `ensure_live`.
pub fn record(c: &Conn, workflow_id: &str, step: i32, step_name: &str, output: Option<Datum>, error: Option<Datum>) {
    PUT.run(c, &[text_datum(workflow_id), step.into_datum(), text_datum(step_name), output, error]);
    crate::stats::count(crate::stats::Counter::StepsRecorded);
}

/// A step's checkpoint, if recorded: Some((output, error)), copied out of the connection.
pub type Checkpoint = (Option<Out>, Option<Out>);

/// Raises for an unknown, cancelled or timed-out run and for another step name there
/// (nondeterminism).
pub fn replay(c: &Conn, workflow_id: &str, step: i32, step_name: &str) -> Result<Option<Checkpoint>> {
    let workflow_id = workflow_id.to_string();
    let rows = GET.run(c, &[text_datum(&workflow_id), step.into_datum()]);
    match (rows.text(0, 1).as_deref(), rows.bool(0, 2)) {
        (None, _) => return Err(WorkflowError::UnknownWorkflow { workflow_id }),
        (Some("CANCELLED"), _) => return Err(WorkflowError::Cancelled { workflow_id }),
        (_, Some(true)) => return Err(WorkflowError::DeadlineExceeded { workflow_id }),
        _ => {}
    }
    let Some(recorded) = rows.text(0, 3) else { return Ok(None) };
    if recorded != step_name {
        return Err(WorkflowError::Nondeterministic { workflow_id, step, recorded, requested: step_name.into() });
    }
    Ok(Some((rows.varlena(0, 4), rows.varlena(0, 5))))
}

fn put(args: &Args) -> Result<()> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let step_name = args.name(2, "step_name")?;
    let output = args.jsonb(3, "output")?;
    let error = args.jsonb(4, "error")?;
    let executor = args.optional_name(5, "executor_id")?;
    spi::connect(|c| {
        ensure_live(c, &workflow_id, executor.as_deref())?;
        record(c, &workflow_id, step, &step_name, output, error);
        Ok(())
    })
}

fn get(args: &Args) -> Result<Record> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let step_name = args.name(2, "step_name")?;
    spi::connect(|c| {
        Ok(match replay(c, &workflow_id, step, &step_name)? {
            Some((output, error)) => Record(vec![Field::Bool(true), output.into(), error.into()]),
            None => Record(vec![Field::Bool(false), Field::Null, Field::Null]),
        })
    })
}

sql_function!(wf_step_put, pg_finfo_wf_step_put, put);
sql_function!(wf_step_get, pg_finfo_wf_step_get, get);
