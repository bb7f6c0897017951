//! Step checkpoints: `step_put` records a step's outcome once, `step_get` replays it.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Record};
use crate::spi::{self, Statement, INT4, JSONB, TEXT};
use crate::{run_cache, sql_function};
use crate::workflow::why_not_running;
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

/// Whether the run may take steps, when `run_cache` does not already know.
static LIVE: Statement = Statement::new(
    c"SELECT status = 'PENDING' AND (deadline IS NULL OR deadline > now()), deadline
        FROM workflow.run WHERE workflow_id = $1",
    &[TEXT],
);

static GET: Statement = Statement::new(
    c"SELECT r.status, r.status = 'PENDING' AND r.deadline <= now(), c.step_name, c.output, c.error
        FROM workflow.run r
        LEFT JOIN workflow.checkpoint c ON c.workflow_id = r.workflow_id AND c.step = $2
       WHERE r.workflow_id = $1",
    &[TEXT, INT4],
);

/// Refuses unless the run may take steps now (PENDING, within its deadline). Call inside
/// `spi::connect`.
pub fn ensure_live(workflow_id: &str) -> Result<()> {
    if run_cache::is_known_live(workflow_id) {
        return Ok(());
    }
    let epoch = run_cache::epoch_now(workflow_id);
    let run = LIVE.run(&[text_datum(workflow_id)]);
    if run.bool(0, 1) != Some(true) {
        return Err(why_not_running(workflow_id));
    }
    run_cache::remember(workflow_id, epoch, run.int8(0, 2));
    Ok(())
}

/// Checkpoints a step. Call inside `spi::connect`, after `ensure_live`.
pub fn record(workflow_id: &str, step: i32, step_name: &str, output: Option<Datum>, error: Option<Datum>) {
    PUT.run(&[text_datum(workflow_id), step.into_datum(), text_datum(step_name), output, error]);
}

/// A step's checkpoint, if recorded: Some((output, error)). Raises for an unknown, cancelled or
/// timed-out run and for another step name there (nondeterminism). Call inside `spi::connect`.
pub type Checkpoint = (Option<Datum>, Option<Datum>);

pub fn replay(workflow_id: &str, step: i32, step_name: &str) -> Result<Option<Checkpoint>> {
    let workflow_id = workflow_id.to_string();
    let rows = GET.run(&[text_datum(&workflow_id), step.into_datum()]);
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
    spi::connect(|| {
        ensure_live(&workflow_id)?;
        record(&workflow_id, step, &step_name, output, error);
        Ok(())
    })
}

fn get(args: &Args) -> Result<Record> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let step_name = args.name(2, "step_name")?;
    spi::connect(|| {
        Ok(match replay(&workflow_id, step, &step_name)? {
            Some((output, error)) => Record(vec![true.into_datum(), output, error]),
            None => Record(vec![false.into_datum(), None, None]),
        })
    })
}

sql_function!(wf_step_put, pg_finfo_wf_step_put, put);
sql_function!(wf_step_get, pg_finfo_wf_step_get, get);
