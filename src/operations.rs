//! Operating on runs from psql: resume, fork, delete, gc.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args};
use crate::spi::{self, Statement, INT4, INTERVAL, TEXT};
use crate::workflow::{announce, is_terminal};
use crate::{queue, ready_from, sql, sql_function};
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
        RETURNING workflow_id, queue, priority, created_at, partition_key, status),
      readied AS (",
    ready_from!("resumed"),
    ") SELECT queue FROM resumed"),
    &[TEXT],
);

static LAST_STEP: Statement = Statement::new(
    c"SELECT coalesce(max(step), 0) FROM workflow.checkpoint WHERE workflow_id = $1",
    &[TEXT],
);

/// The new run, its checkpoints and event history before `from_step`, and its latest events.
static FORK: Statement = Statement::new(sql!(
    "WITH forked AS (
        INSERT INTO workflow.run (workflow_id, name, status, queue, input, priority, forked_from)
        SELECT $2, r.name, 'ENQUEUED', q.name, r.input, r.priority, r.workflow_id
          FROM workflow.run r, workflow.queue q WHERE r.workflow_id = $1 AND q.name = $4
        RETURNING workflow_id, queue, priority, created_at, partition_key, status),
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

/// Deletes runs and every row that belongs to them; `$1` is the list of ids.
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
         WHERE finished_at < clock_timestamp() - $1
           AND status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
         ORDER BY finished_at LIMIT 1000
         FOR UPDATE SKIP LOCKED) batch",
    &[INTERVAL],
);

fn resume(args: &Args) -> Result<&'static str> {
    let workflow_id = args.name(0, "workflow_id")?;
    spi::connect(|| {
        let resumed = RESUME.run(&[text_datum(&workflow_id)]);
        if let Some(queue) = resumed.text(0, 1) {
            announce(&workflow_id, Some(&queue));
            return Ok("ENQUEUED");
        }
        match STATE.run(&[text_datum(&workflow_id)]).text(0, 1) {
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
    spi::connect(|| {
        let source = STATE.run(&[text_datum(&workflow_id)]);
        if source.is_empty() {
            return Err(WorkflowError::UnknownWorkflow { workflow_id: workflow_id.clone() });
        }
        let last_step = LAST_STEP.run(&[text_datum(&workflow_id)]).int(0, 1).unwrap_or(0);
        if from_step > last_step + 1 {
            return Err(WorkflowError::ForkBeyondLastStep { workflow_id: workflow_id.clone(), from_step, last_step });
        }
        if QUEUE_EXISTS.run(&[text_datum(&queue)]).is_empty() {
            return Err(WorkflowError::UnknownQueue { queue: queue.clone() });
        }
        let args = [text_datum(&workflow_id), text_datum(&new_id), from_step.into_datum(), text_datum(&queue)];
        if FORK.run(&args).is_empty() {
            let existing = STATE.run(&[text_datum(&new_id)]).text(0, 2).unwrap_or_default();
            return Err(WorkflowError::NameMismatch { workflow_id: new_id.clone(), existing, requested: "fork".into() });
        }
        queue::wake_dequeuers(&queue);
        Ok(new_id.clone())
    })
}

/// Deletes one run that has ended, with all its rows; false if there was none.
fn delete(args: &Args) -> Result<bool> {
    let workflow_id = args.name(0, "workflow_id")?;
    spi::connect(|| {
        match STATE.run(&[text_datum(&workflow_id)]).text(0, 1) {
            None => return Ok(false),
            Some(status) if !is_terminal(&status) => {
                return Err(WorkflowError::RunInUse { workflow_id: workflow_id.clone(), status })
            }
            Some(_) => {}
        }
        let ids = vec![workflow_id.clone()].into_datum();
        Ok(DELETE_RUNS.run(&[ids]).int8(0, 1) == Some(1))
    })
}

/// Deletes finished runs older than `older_than`, in batches of 1000; returns how many.
fn gc(args: &Args) -> Result<i64> {
    let older_than = args.interval(0, "older_than")?.ok_or(WorkflowError::NullArgument { arg: "older_than" })?;
    spi::connect(|| {
        let mut deleted = 0;
        loop {
            let batch = OLD_FINISHED.run(&[Some(older_than.0)]);
            let Some(ids) = batch.varlena(0, 1) else { return Ok(deleted) };
            deleted += DELETE_RUNS.run(&[Some(ids)]).int8(0, 1).unwrap_or(0);
        }
    })
}

sql_function!(wf_resume, pg_finfo_wf_resume, resume);
sql_function!(wf_fork, pg_finfo_wf_fork, fork);
sql_function!(wf_delete, pg_finfo_wf_delete, delete);
sql_function!(wf_gc, pg_finfo_wf_gc, gc);
