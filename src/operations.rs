//! Operating on runs from psql: resume, fork, delete, gc.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Field, Record};
use crate::spi::{self, Conn, Statement, INT4, TEXT};
use crate::workflow::{announce, is_terminal};
use crate::{queue, ready_columns, ready_from, sql, sql_function, sql_workflow, wake};
use pgrx::pg_sys::{self, INT8OID as INT8};
use pgrx::IntoDatum;

static STATE: Statement =
    Statement::new(c"SELECT status, name, queue FROM workflow.run WHERE workflow_id = $1", &[TEXT]);

/// CANCELLED, ERROR or dead-lettered → ENQUEUED, with a fresh recovery budget.
static RESUME: Statement = Statement::new(sql!(
    "WITH resumed AS (
        UPDATE workflow.run
           SET status = 'ENQUEUED', queue = coalesce(queue, 'default'), recovery_attempts = 0,
               error = NULL, finished_at = NULL, deadline = NULL
         WHERE workflow_id = $1 AND status IN ('CANCELLED', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
        RETURNING ", ready_columns!(), "),
      readied AS (",
    ready_from!("resumed"),
    ") SELECT queue, app_version FROM resumed"),
    &[TEXT],
);

static LAST_STEP: Statement = Statement::new(
    c"SELECT coalesce(max(step), 0) FROM workflow.checkpoint WHERE workflow_id = $1",
    &[TEXT],
);

/// The new run, its checkpoints and event history before `from_step`, and its latest events.
static FORK: Statement = Statement::new(sql!(
    "WITH forked AS (
        INSERT INTO workflow.run (workflow_id, name, status, queue, input, priority, forked_from, app_version)
        SELECT $2, r.name, 'ENQUEUED', q.name, r.input, r.priority, r.workflow_id, r.app_version
          FROM workflow.run r, workflow.queue q WHERE r.workflow_id = $1 AND q.name = $4
        RETURNING ", ready_columns!(), "),
      readied AS (",
    ready_from!("forked"),
    "),
      steps AS (
        INSERT INTO workflow.checkpoint (workflow_id, step, step_name, output, error, recorded_at)
        SELECT $2, step, step_name, output, error, recorded_at FROM workflow.checkpoint
         WHERE workflow_id = $1 AND step < $3 AND EXISTS (SELECT 1 FROM forked)),
      history AS (
        INSERT INTO workflow.event_history (workflow_id, step, key, value, recorded_at)
        SELECT $2, step, key, value, recorded_at FROM workflow.event_history
         WHERE workflow_id = $1 AND step < $3 AND EXISTS (SELECT 1 FROM forked)),
      latest AS (
        INSERT INTO workflow.event (workflow_id, key, value)
        SELECT DISTINCT ON (key) $2, key, value FROM workflow.event_history
         WHERE workflow_id = $1 AND step < $3 AND EXISTS (SELECT 1 FROM forked)
         ORDER BY key, step DESC)
      SELECT workflow_id FROM forked"),
    &[TEXT, TEXT, INT4, TEXT],
);

static QUEUE_EXISTS: Statement = Statement::new(c"SELECT 1 FROM workflow.queue WHERE name = $1", &[TEXT]);

/// Deletes runs and every row that belongs to them; `$1` is the list of ids. Every delete
/// probes an index on the run's id (message_destination for messages).
static DELETE_RUNS: Statement = Statement::new(
    c"WITH runs AS (DELETE FROM workflow.run WHERE workflow_id = ANY ($1) RETURNING workflow_id),
      c AS (DELETE FROM workflow.checkpoint WHERE workflow_id = ANY ($1)),
      e AS (DELETE FROM workflow.event WHERE workflow_id = ANY ($1)),
      h AS (DELETE FROM workflow.event_history WHERE workflow_id = ANY ($1)),
      m AS (DELETE FROM workflow.message WHERE destination_id = ANY ($1)),
      r AS (DELETE FROM workflow.ready WHERE workflow_id = ANY ($1))
      SELECT count(*) FROM runs",
    &[pgrx::pg_sys::TEXTARRAYOID],
);

/// One batch of finished runs older than the cutoff. SKIP LOCKED: never wait on anyone.
static OLD_FINISHED: Statement = Statement::new(
    c"SELECT array_agg(workflow_id) FROM (
        SELECT workflow_id FROM workflow.run
         WHERE finished_at < clock_timestamp() - $1 * interval '1 microsecond'
           AND status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
         ORDER BY finished_at LIMIT 1000
         FOR UPDATE SKIP LOCKED) batch",
    &[INT8],
);

fn resume(args: &Args) -> Result<&'static str> {
    let workflow_id = args.name(0, "workflow_id")?;
    spi::connect(|c| {
        let resumed = RESUME.run(c, &[text_datum(&workflow_id)]);
        if let Some(queue) = resumed.text(0, 1) {
            announce(&workflow_id, Some(&queue));
            if resumed.text(0, 2).as_deref() == Some(sql_workflow::APP_VERSION) {
                // A resumed SQL run takes the current definition: the fix may be in its steps.
                sql_workflow::forget_runs(c, vec![workflow_id.clone()].into_datum());
                wake::notify_on_commit(wake::sql_slot());
            }
            return Ok("ENQUEUED");
        }
        match STATE.run(c, &[text_datum(&workflow_id)]).text(0, 1) {
            None => Err(WorkflowError::UnknownWorkflow { workflow_id: workflow_id.clone() }),
            Some(status) => Err(WorkflowError::NotResumable { workflow_id: workflow_id.clone(), status }),
        }
    })
}

fn fork(args: &Args) -> Result<String> {
    let workflow_id = args.name(0, "workflow_id")?;
    let from_step = args.step(1)?;
    let new_id = args.optional_name(2, "new_workflow_id")?.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let queue = args.name(3, "queue")?;
    spi::connect(|c| {
        let source = STATE.run(c, &[text_datum(&workflow_id)]);
        if source.is_empty() {
            return Err(WorkflowError::UnknownWorkflow { workflow_id: workflow_id.clone() });
        }
        let last_step = LAST_STEP.run(c, &[text_datum(&workflow_id)]).int(0, 1).unwrap_or(0);
        if from_step > last_step + 1 {
            return Err(WorkflowError::ForkBeyondLastStep { workflow_id: workflow_id.clone(), from_step, last_step });
        }
        if QUEUE_EXISTS.run(c, &[text_datum(&queue)]).is_empty() {
            return Err(WorkflowError::UnknownQueue { queue: queue.clone() });
        }
        let args = [text_datum(&workflow_id), text_datum(&new_id), from_step.into_datum(), text_datum(&queue)];
        if FORK.run(c, &args).is_empty() {
            let existing = STATE.run(c, &[text_datum(&new_id)]).text(0, 2).unwrap_or_default();
            return Err(WorkflowError::NameMismatch { workflow_id: new_id.clone(), existing, requested: "fork".into() });
        }
        queue::wake_dequeuers(&queue);
        crate::stats::count(crate::stats::Counter::RunsStarted);
        Ok(new_id.clone())
    })
}

/// Deletes one run that has ended, with all its rows; false if there was none.
fn delete(args: &Args) -> Result<bool> {
    let workflow_id = args.name(0, "workflow_id")?;
    spi::connect(|c| {
        match STATE.run(c, &[text_datum(&workflow_id)]).text(0, 1) {
            None => return Ok(false),
            Some(status) if !is_terminal(&status) => {
                return Err(WorkflowError::RunInUse { workflow_id: workflow_id.clone(), status })
            }
            Some(_) => {}
        }
        Ok(delete_runs(c, vec![workflow_id.clone()].into_datum()) == 1)
    })
}

/// Deletes up to 1000 finished runs older than `older_than_micros`; returns how many.
fn gc_one_batch(c: &Conn, older_than_micros: i64) -> i64 {
    let batch = OLD_FINISHED.run(c, &[older_than_micros.into_datum()]);
    let Some(ids) = batch.varlena(0, 1) else { return 0 };
    delete_runs(c, Some(ids.datum()))
}

/// Deletes the runs `ids` (a text[]) with all their rows; returns how many runs.
fn delete_runs(c: &Conn, ids: Option<pg_sys::Datum>) -> i64 {
    sql_workflow::forget_runs(c, ids);
    DELETE_RUNS.run(c, &[ids]).int8(0, 1).unwrap_or(0)
}

fn older_than(args: &Args) -> Result<(pg_sys::Datum, i64)> {
    args.interval(0, "older_than")?.ok_or(WorkflowError::NullArgument { arg: "older_than" })
}

/// `gc_batch(older_than)`: one batch.
fn gc_batch(args: &Args) -> Result<i64> {
    let (_, micros) = older_than(args)?;
    spi::connect(|c| Ok(gc_one_batch(c, micros)))
}

/// 0.1.0's `gc(older_than)` function: every batch in the caller's transaction.
fn gc_function(args: &Args) -> Result<i64> {
    let (_, micros) = older_than(args)?;
    spi::connect(|c| Ok(std::iter::from_fn(|| Some(gc_one_batch(c, micros)).filter(|n| *n > 0)).sum()))
}

static GC_BATCH: Statement = Statement::new(c"SELECT workflow.gc_batch($1)", &[pg_sys::INTERVALOID]);

/// `CALL workflow.gc(older_than)`: `gc_batch` until nothing is left, committing after each
/// batch when called as a top-level CALL, so that a large purge never holds its locks and dead
/// rows in one long transaction. Inside a transaction block it cannot commit, and runs every
/// batch in the caller's transaction. It runs as its caller, who needs EXECUTE on gc_batch.
fn gc_procedure(args: &Args) -> Result<Record> {
    let (interval, _) = older_than(args)?;
    // A copy that outlives the commits (the argument's memory need not).
    // SAFETY: an interval argument points to a pg_sys::Interval.
    let interval = Box::new(unsafe { *interval.cast_mut_ptr::<pg_sys::Interval>() });
    let arg = [Some(pg_sys::Datum::from(&*interval as *const pg_sys::Interval))];
    // SAFETY: `context` is null or a node; a CALL passes a CallContext.
    let nonatomic = unsafe {
        let context = (*args.fcinfo()).context;
        !context.is_null()
            && (*context).type_ == pg_sys::NodeTag::T_CallContext
            && !(*context.cast::<pg_sys::CallContext>()).atomic
    };
    let batch = |c: &Conn| GC_BATCH.run(c, &arg).int8(0, 1).unwrap_or(0);
    let deleted = if nonatomic {
        spi::connect_nonatomic(|c| {
            let mut deleted = 0;
            loop {
                match batch(c) {
                    0 => return deleted,
                    n => deleted += n,
                }
                spi::commit(c);
            }
        })
    } else {
        spi::connect(|c| std::iter::from_fn(|| Some(batch(c)).filter(|n| *n > 0)).sum())
    };
    Ok(Record(vec![Field::Int8(deleted)]))
}

sql_function!(wf_resume, pg_finfo_wf_resume, resume);
sql_function!(wf_fork, pg_finfo_wf_fork, fork);
sql_function!(wf_delete, pg_finfo_wf_delete, delete);
sql_function!(wf_gc, pg_finfo_wf_gc, gc_function);
sql_function!(wf_gc_batch, pg_finfo_wf_gc_batch, gc_batch);
sql_function!(wf_gc_procedure, pg_finfo_wf_gc_procedure, gc_procedure);
