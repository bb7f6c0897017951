//! A workflow run's life: start (or claim for replay), finish, fail, cancel, wait.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Field, Record};
use crate::spi::{self, Conn, Out, Statement, INT4, INTERVAL, JSONB, TEXT};
use crate::step::check_owner;
use crate::stats::{self, Counter};
use crate::{guc, queue, run_cache, sql, sql_function, wake};
use pgrx::pg_sys::{Datum, INT8OID as INT8};
use pgrx::IntoDatum;
use std::time::{Duration, Instant};

/// The fast path of `start`: a new run, owned by the caller and of the caller's app_version,
/// in one statement (one probe of the executor: it must exist, and it has the version).
static INSERT_RUN: Statement = Statement::new(
    sql!("INSERT INTO workflow.run (workflow_id, name, status, executor_id, input, timeout, deadline,
                                    started_at, app_version, parent_id)
      SELECT $1, $2, 'PENDING', $3, $4, $5, now() + $5, now(), e.app_version, $6
        FROM (VALUES (1)) one LEFT JOIN workflow.executor e ON e.executor_id = $3
       WHERE $3 IS NULL OR e.executor_id IS NOT NULL
      ON CONFLICT (workflow_id) DO NOTHING
      RETURNING deadline"),
    &[TEXT, TEXT, TEXT, JSONB, INTERVAL, TEXT],
);

/// The same for an id we just generated (UUIDv7): it cannot exist, so no ON CONFLICT probe.
static INSERT_NEW_RUN: Statement = Statement::new(
    sql!("INSERT INTO workflow.run (workflow_id, name, status, executor_id, input, timeout, deadline,
                                    started_at, app_version, parent_id)
      SELECT $1, $2, 'PENDING', $3, $4, $5, now() + $5, now(), e.app_version, $6
        FROM (VALUES (1)) one LEFT JOIN workflow.executor e ON e.executor_id = $3
       WHERE $3 IS NULL OR e.executor_id IS NOT NULL
      RETURNING deadline"),
    &[TEXT, TEXT, TEXT, JSONB, INTERVAL, TEXT],
);

/// Lock order, everywhere: a run's `ready` row before its `run` row (dequeue deletes the ready
/// row, then updates the run). `start` and `cancel` lock the ready row first for that reason.
static LOCK_READY: Statement =
    Statement::new(c"SELECT 1 FROM workflow.ready WHERE workflow_id = $1 FOR UPDATE", &[TEXT]);

static LOCK_RUN: Statement = Statement::new(
    c"SELECT name, status, executor_id, output, error, started_at IS NOT NULL, app_version, input
        FROM workflow.run WHERE workflow_id = $1 FOR UPDATE",
    &[TEXT],
);

static EXECUTOR_VERSION: Statement =
    Statement::new(c"SELECT app_version FROM workflow.executor WHERE executor_id = $1", &[TEXT]);

static LEASE_IS_LIVE: Statement = Statement::new(
    c"SELECT last_heartbeat + $2 * interval '1 millisecond' > now()
        FROM workflow.executor WHERE executor_id = $1",
    &[TEXT, INT8],
);

/// A replay claims the run; a replay is a recovery attempt, so a run that keeps crashing its
/// executors is dead-lettered instead of replayed forever.
static CLAIM_RUN: Statement = Statement::new(
    c"UPDATE workflow.run
         SET executor_id = $2, recovery_attempts = recovery_attempts + 1,
             status = CASE WHEN recovery_attempts + 1 > $3 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
                           ELSE status END,
             finished_at = CASE WHEN recovery_attempts + 1 > $3 THEN now() END
       WHERE workflow_id = $1
      RETURNING status, deadline",
    &[TEXT, TEXT, INT4],
);

/// Takes back a run that recovery (or resume) put on a queue: off the queue, PENDING again,
/// with a fresh deadline, as a dequeue would. Recovery counted the attempt already. A ready
/// row that a dequeuer holds is skipped, not waited for (the dequeuer would wait for our run
/// row: a deadlock): then the dequeuer gets the run, and this start does not.
static TAKE_BACK: Statement = Statement::new(
    c"WITH unready AS (
        DELETE FROM workflow.ready WHERE workflow_id = ANY (ARRAY(
          SELECT workflow_id FROM workflow.ready WHERE workflow_id = $1 FOR UPDATE SKIP LOCKED))
        RETURNING workflow_id)
      UPDATE workflow.run
         SET status = 'PENDING', executor_id = $2, attempt = attempt + 1, deadline = now() + timeout
       WHERE workflow_id = $1 AND status = 'ENQUEUED' AND EXISTS (SELECT 1 FROM unready)
      RETURNING status, deadline, queue",
    &[TEXT, TEXT],
);

static LAST_STEP: Statement = Statement::new(
    c"SELECT coalesce(max(step), 0) FROM workflow.checkpoint WHERE workflow_id = $1",
    &[TEXT],
);

/// finish and fail: one statement that only succeeds on a live run, owned by the caller when
/// the caller names itself ($5). The row lock it takes serialises it with a takeover.
static COMPLETE: Statement = Statement::new(
    c"UPDATE workflow.run SET status = $2, output = $3, error = $4, finished_at = now()
       WHERE workflow_id = $1 AND status = 'PENDING' AND (deadline IS NULL OR deadline > now())
         AND ($5 IS NULL OR executor_id = $5)
      RETURNING queue",
    &[TEXT, TEXT, JSONB, JSONB, TEXT],
);

/// An ENQUEUED run leaves the ready table first (the lock order), then is cancelled.
static UNREADY: Statement = Statement::new(c"DELETE FROM workflow.ready WHERE workflow_id = $1", &[TEXT]);

/// After the cancel: a ready row that recovery, promotion or resume committed between the two
/// statements. One a dequeuer holds is skipped: that dequeuer finds the run CANCELLED and
/// claims nothing, and its delete removes the row.
static UNREADY_LATE: Statement = Statement::new(
    c"DELETE FROM workflow.ready WHERE workflow_id = ANY (ARRAY(
        SELECT workflow_id FROM workflow.ready WHERE workflow_id = $1 FOR UPDATE SKIP LOCKED))",
    &[TEXT],
);

static CANCEL: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'CANCELLED', finished_at = now()
       WHERE workflow_id = $1 AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')
      RETURNING queue, executor_id",
    &[TEXT],
);

static STATE: Statement = Statement::new(
    c"SELECT status, status = 'PENDING' AND deadline <= now(), executor_id
        FROM workflow.run WHERE workflow_id = $1",
    &[TEXT],
);

static OUTCOME: Statement = Statement::new(
    c"SELECT status, output, error FROM workflow.run WHERE workflow_id = $1",
    &[TEXT],
);

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "SUCCESS" | "ERROR" | "CANCELLED" | "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
}

fn id_datum(id: &str) -> Option<Datum> {
    text_datum(id)
}

/// Wakes this run's waiters once the current transaction commits.
/// Also moves the run's epoch, which drops it from every backend's `run_cache`.
pub fn wake_waiters(workflow_id: &str) {
    run_cache::forget(workflow_id);
    wake::notify_on_commit(run_cache::slot(workflow_id));
}

/// A run changed state: wake its waiters (moving its epoch), and the dequeuers of its queue,
/// which may now have a free slot or new work.
pub fn announce(workflow_id: &str, queue: Option<&str>) {
    wake_waiters(workflow_id);
    if let Some(queue) = queue {
        queue::wake_dequeuers(queue);
    }
}

/// Why a statement that needs a live PENDING run did not touch it.
pub fn why_not_running(c: &Conn, workflow_id: &str) -> WorkflowError {
    let rows = STATE.run(c, &[id_datum(workflow_id)]);
    let workflow_id = workflow_id.to_string();
    match (rows.text(0, 1), rows.bool(0, 2)) {
        (None, _) => WorkflowError::UnknownWorkflow { workflow_id },
        (Some(s), _) if s == "CANCELLED" => WorkflowError::Cancelled { workflow_id },
        (Some(_), Some(true)) => WorkflowError::DeadlineExceeded { workflow_id },
        (Some(status), _) => WorkflowError::NotRunning { workflow_id, status },
    }
}

/// `why_not_running` for a statement that also required the caller to own the run.
fn why_not_completed(c: &Conn, workflow_id: &str, executor: Option<&str>) -> WorkflowError {
    let rows = STATE.run(c, &[id_datum(workflow_id)]);
    let live = rows.text(0, 1).as_deref() == Some("PENDING") && rows.bool(0, 2) != Some(true);
    match check_owner(workflow_id, rows.text(0, 3).as_deref(), executor) {
        Err(not_owner) if live => not_owner,
        _ => why_not_running(c, workflow_id),
    }
}

fn start(args: &Args) -> Result<Record> {
    let name = args.name(0, "name")?;
    let input = args.jsonb(1, "input")?;
    let given_id = args.optional_name(2, "workflow_id")?;
    let executor = args.optional_name(3, "executor_id")?;
    let timeout = args.interval(4, "timeout")?.map(|(d, _)| d);
    let parent = args.optional_name(5, "parent_id")?;
    let insert = if given_id.is_some() { &INSERT_RUN } else { &INSERT_NEW_RUN };
    let workflow_id = given_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());

    let epoch = run_cache::epoch_now(&workflow_id);
    spi::connect(|c| {
        let exec = executor.as_deref().and_then(text_datum);
        let parent = parent.as_deref().and_then(text_datum);
        let rows = insert.run(c, &[id_datum(&workflow_id), text_datum(&name), exec, input, timeout, parent]);
        if rows.len() == 1 {
            stats::count(Counter::RunsStarted);
            run_cache::remember(&workflow_id, epoch, rows.int8(0, 1), executor.as_deref());
            return Ok(start_row(&workflow_id, "PENDING", None, None, 0, true, input.map(Out::argument)));
        }
        claim(c, &workflow_id, &name, executor.as_deref())
    })
}

/// `start` on an id that exists (or whose executor is unknown): replay, take back, wait, or
/// refuse. An executor claims only runs of its own app_version, or of none.
fn claim(c: &Conn, workflow_id: &str, name: &str, executor: Option<&str>) -> Result<Record> {
    let mut caller_version = None;
    if let Some(executor_id) = executor {
        let registered = EXECUTOR_VERSION.run(c, &[text_datum(executor_id)]);
        if registered.is_empty() {
            return Err(WorkflowError::UnknownExecutor { executor_id: executor_id.into() });
        }
        caller_version = registered.text(0, 1);
    }
    LOCK_READY.run(c, &[id_datum(workflow_id)]);
    let run = LOCK_RUN.run(c, &[id_datum(workflow_id)]);
    let Some(existing) = run.text(0, 1) else {
        // Only a concurrent delete gets here: the insert found the id taken.
        return Err(WorkflowError::UnknownWorkflow { workflow_id: workflow_id.into() });
    };
    if existing != name {
        return Err(WorkflowError::NameMismatch {
            workflow_id: workflow_id.into(),
            existing,
            requested: name.into(),
        });
    }
    let status = run.text(0, 2).unwrap_or_default();
    let owner = run.text(0, 3);
    let ran_before = run.bool(0, 6) == Some(true);
    let run_version = run.text(0, 7);
    // A SQL workflow's run is the SQL workers' alone: no start() takes it, anonymous or not.
    let other_version = run_version.as_deref() == Some(crate::sql_workflow::APP_VERSION)
        || (executor.is_some() && run_version.is_some() && run_version != caller_version);
    let last_step = LAST_STEP.run(c, &[id_datum(workflow_id)]).int(0, 1).unwrap_or(0);
    let stored_input = run.varlena(0, 8);
    let (claimed, queue) = match status.as_str() {
        _ if other_version => {
            let (output, error) = (run.varlena(0, 4), run.varlena(0, 5));
            return Ok(start_row(workflow_id, &status, output, error, last_step, false, stored_input));
        }
        "PENDING" if may_take_over(c, owner.as_deref(), executor) => {
            let max_attempts = guc::MAX_RECOVERY_ATTEMPTS.get().into_datum();
            (CLAIM_RUN.run(c, &[id_datum(workflow_id), executor.and_then(text_datum), max_attempts]), None)
        }
        // Recovery (or resume) put it back on a queue: whoever starts it again runs it now.
        "ENQUEUED" if ran_before => {
            let taken = TAKE_BACK.run(c, &[id_datum(workflow_id), executor.and_then(text_datum)]);
            if taken.is_empty() {
                return Ok(start_row(workflow_id, &status, None, None, last_step, false, stored_input)); // a dequeuer has it
            }
            let queue = taken.text(0, 3);
            (taken, queue)
        }
        _ => {
            let (output, error) = (run.varlena(0, 4), run.varlena(0, 5));
            return Ok(start_row(workflow_id, &status, output, error, last_step, false, stored_input));
        }
    };
    let status = claimed.text(0, 1).unwrap_or_default();
    if queue.is_none() {
        // A replay (CLAIM_RUN) is a recovery attempt, and may be the one too many.
        let dead = status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED";
        stats::count(if dead { Counter::RunsDeadLettered } else { Counter::RunsRecovered });
    }
    // A takeover ends the previous owner's cached claim everywhere (its epoch moves at our
    // commit, so there is nothing for this backend to remember either: the next step reads
    // the run once) and may free a queue slot.
    announce(workflow_id, queue.as_deref());
    Ok(start_row(workflow_id, &status, None, None, last_step, status == "PENDING", stored_input))
}

/// A PENDING run may be taken by its own executor, by anyone when it has no owner, and by
/// anyone once its owner's lease has expired or the owner is no longer registered.
fn may_take_over(c: &Conn, owner: Option<&str>, caller: Option<&str>) -> bool {
    match owner {
        None => true,
        Some(o) if Some(o) == caller => true,
        Some(o) => {
            let live = LEASE_IS_LIVE.run(c, &[text_datum(o), guc::executor_timeout_ms().into_datum()]);
            !live.bool(0, 1).unwrap_or(false)
        }
    }
}

/// start()'s row. `run_input` is the run's stored input: a claimed run replays with it (the
/// first start's input wins). A 0.2.0 declaration has no such column, and never reads it.
fn start_row(
    id: &str,
    status: &str,
    output: Option<Out>,
    error: Option<Out>,
    last_step: i32,
    claimed: bool,
    run_input: Option<Out>,
) -> Record {
    Record(vec![
        Field::text(id),
        Field::text(status),
        output.into(),
        error.into(),
        Field::Int(last_step),
        Field::Bool(claimed),
        run_input.into(),
    ])
}

fn complete(args: &Args, status: &'static str) -> Result<&'static str> {
    let workflow_id = args.name(0, "workflow_id")?;
    let (output, error) = if status == "SUCCESS" {
        (args.jsonb(1, "output")?, None)
    } else {
        (None, Some(args.jsonb(1, "error")?.ok_or(WorkflowError::NullArgument { arg: "error" })?))
    };
    let executor = args.optional_name(2, "executor_id")?;
    spi::connect(|c| {
        let exec = executor.as_deref().and_then(text_datum);
        let done = COMPLETE.run(c, &[id_datum(&workflow_id), text_datum(status), output, error, exec]);
        if done.is_empty() {
            return Err(why_not_completed(c, &workflow_id, executor.as_deref()));
        }
        announce(&workflow_id, done.text(0, 1).as_deref());
        stats::count(if status == "SUCCESS" { Counter::RunsSucceeded } else { Counter::RunsFailed });
        Ok(status)
    })
}

fn finish(args: &Args) -> Result<&'static str> {
    complete(args, "SUCCESS")
}

fn fail(args: &Args) -> Result<&'static str> {
    complete(args, "ERROR")
}

/// Returns true when this call cancelled the run, false when it had already ended.
fn cancel(args: &Args) -> Result<bool> {
    let workflow_id = args.name(0, "workflow_id")?;
    spi::connect(|c| {
        UNREADY.run(c, &[id_datum(&workflow_id)]);
        let cancelled = CANCEL.run(c, &[id_datum(&workflow_id)]);
        if cancelled.len() == 1 {
            UNREADY_LATE.run(c, &[id_datum(&workflow_id)]);
            stats::count(Counter::RunsCancelled);
            announce(&workflow_id, cancelled.text(0, 1).as_deref());
            if cancelled.text(0, 2).is_some_and(|e| e.starts_with(crate::sql_worker::EXECUTOR_PREFIX)) {
                crate::sql_step::interrupt_on_commit(c, &workflow_id);
            }
            return Ok(true);
        }
        match why_not_running(c, &workflow_id) {
            e @ WorkflowError::UnknownWorkflow { .. } => Err(e),
            _ => Ok(false),
        }
    })
}

/// 0A000 outside READ COMMITTED, for calls that wait for other sessions' commits.
pub fn needs_read_committed(function: &'static str) -> Result<()> {
    match run_cache::read_committed() {
        true => Ok(()),
        false => Err(WorkflowError::NeedsReadCommitted { function }),
    }
}

fn wait(args: &Args) -> Result<Record> {
    let workflow_id = args.name(0, "workflow_id")?;
    let timeout = args.interval(1, "timeout")?.map(|(_, micros)| Duration::from_micros(micros as u64));
    needs_read_committed("wait")?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let waiter = wake::Waiter::new(run_cache::slot(&workflow_id));
    loop {
        let seen = waiter.epoch();
        let (status, output, error) = spi::connect(|c| {
            let rows = OUTCOME.run(c, &[id_datum(&workflow_id)]);
            (rows.text(0, 1), rows.varlena(0, 2), rows.varlena(0, 3))
        });
        let Some(status) = status else {
            return Err(WorkflowError::UnknownWorkflow { workflow_id });
        };
        match wake::nap_ms(deadline) {
            Some(nap) if !is_terminal(&status) => waiter.sleep(seen, nap),
            _ => return Ok(Record(vec![Field::text(&workflow_id), Field::text(&status), output.into(), error.into()])),
        }
    }
}

sql_function!(wf_start, pg_finfo_wf_start, start);
sql_function!(wf_finish, pg_finfo_wf_finish, finish);
sql_function!(wf_fail, pg_finfo_wf_fail, fail);
sql_function!(wf_cancel, pg_finfo_wf_cancel, cancel);
sql_function!(wf_wait, pg_finfo_wf_wait, wait);

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_statuses() {
        for s in ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"] {
            assert!(super::is_terminal(s));
        }
        for s in ["ENQUEUED", "DELAYED", "PENDING"] {
            assert!(!super::is_terminal(s));
        }
    }
}
