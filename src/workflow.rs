//! A workflow run's life: start (or claim for replay), finish, fail, cancel, wait.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Record};
use crate::spi::{self, Statement, INT4, INTERVAL, JSONB, TEXT};
use crate::{guc, queue, run_cache, sql_function, wake};
use pgrx::pg_sys::{self, Datum, INT8OID as INT8};
use pgrx::IntoDatum;
use std::time::{Duration, Instant};

/// The fast path of `start`: a new run, owned by the caller, in one statement.
static INSERT_RUN: Statement = Statement::new(
    c"INSERT INTO workflow.run (workflow_id, name, status, executor_id, input, timeout, deadline, started_at)
      SELECT $1, $2, 'PENDING', $3, $4, $5, now() + $5, now()
       WHERE $3 IS NULL OR EXISTS (SELECT 1 FROM workflow.executor e WHERE e.executor_id = $3)
      ON CONFLICT (workflow_id) DO NOTHING
      RETURNING deadline",
    &[TEXT, TEXT, TEXT, JSONB, INTERVAL],
);

/// The same for an id we just generated (UUIDv7): it cannot exist, so no ON CONFLICT probe.
static INSERT_NEW_RUN: Statement = Statement::new(
    c"INSERT INTO workflow.run (workflow_id, name, status, executor_id, input, timeout, deadline, started_at)
      SELECT $1, $2, 'PENDING', $3, $4, $5, now() + $5, now()
       WHERE $3 IS NULL OR EXISTS (SELECT 1 FROM workflow.executor e WHERE e.executor_id = $3)
      RETURNING deadline",
    &[TEXT, TEXT, TEXT, JSONB, INTERVAL],
);

static LOCK_RUN: Statement = Statement::new(
    c"SELECT name, status, executor_id, output, error, recovery_attempts
        FROM workflow.run WHERE workflow_id = $1 FOR UPDATE",
    &[TEXT],
);

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

static LAST_STEP: Statement = Statement::new(
    c"SELECT coalesce(max(step), 0) FROM workflow.checkpoint WHERE workflow_id = $1",
    &[TEXT],
);

/// finish and fail: one statement that only succeeds on a live, owned-by-someone run.
static COMPLETE: Statement = Statement::new(
    c"UPDATE workflow.run SET status = $2, output = $3, error = $4, finished_at = now()
       WHERE workflow_id = $1 AND status = 'PENDING' AND (deadline IS NULL OR deadline > now())
      RETURNING queue",
    &[TEXT, TEXT, JSONB, JSONB],
);

/// An ENQUEUED run also leaves the ready table.
static CANCEL: Statement = Statement::new(
    c"WITH cancelled AS (
        UPDATE workflow.run SET status = 'CANCELLED', finished_at = now()
         WHERE workflow_id = $1 AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')
        RETURNING queue),
      unready AS (
        DELETE FROM workflow.ready WHERE workflow_id = $1 AND EXISTS (SELECT 1 FROM cancelled))
      SELECT queue FROM cancelled",
    &[TEXT],
);

static STATE: Statement = Statement::new(
    c"SELECT status, status = 'PENDING' AND deadline <= now() FROM workflow.run WHERE workflow_id = $1",
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

/// Why a statement that needs a live PENDING run did not touch it. Call inside `spi::connect`.
pub fn why_not_running(workflow_id: &str) -> WorkflowError {
    let rows = STATE.run(&[id_datum(workflow_id)]);
    let workflow_id = workflow_id.to_string();
    match (rows.text(0, 1), rows.bool(0, 2)) {
        (None, _) => WorkflowError::UnknownWorkflow { workflow_id },
        (Some(s), _) if s == "CANCELLED" => WorkflowError::Cancelled { workflow_id },
        (Some(_), Some(true)) => WorkflowError::DeadlineExceeded { workflow_id },
        (Some(status), _) => WorkflowError::NotRunning { workflow_id, status },
    }
}

fn start(args: &Args) -> Result<Record> {
    let name = args.name(0, "name")?;
    let input = args.jsonb(1, "input")?;
    let given_id = args.optional_name(2, "workflow_id")?;
    let executor = args.optional_name(3, "executor_id")?;
    let timeout = args.interval(4, "timeout")?.map(|(d, _)| d);
    let insert = if given_id.is_some() { &INSERT_RUN } else { &INSERT_NEW_RUN };
    let workflow_id = given_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());

    let epoch = run_cache::epoch_now(&workflow_id);
    let inserted = spi::connect(|| {
        let exec = executor.as_deref().and_then(text_datum);
        let rows = insert.run(&[id_datum(&workflow_id), text_datum(&name), exec, input, timeout]);
        (rows.len() == 1).then(|| rows.int8(0, 1))
    });
    if let Some(deadline) = inserted {
        run_cache::remember(&workflow_id, epoch, deadline);
        return Ok(start_row(&workflow_id, "PENDING", None, None, 0, true));
    }
    spi::connect(|| claim(&workflow_id, &name, executor.as_deref()))
}

/// `start` on an id that exists (or whose executor is unknown): replay, wait, or refuse.
fn claim(workflow_id: &str, name: &str, executor: Option<&str>) -> Result<Record> {
    let run = LOCK_RUN.run(&[id_datum(workflow_id)]);
    let Some(existing) = run.text(0, 1) else {
        // The insert skipped a run that does not exist: the executor was the problem.
        let executor_id = executor.unwrap_or_default().to_string();
        return Err(WorkflowError::UnknownExecutor { executor_id });
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
    let last_step = LAST_STEP.run(&[id_datum(workflow_id)]).int(0, 1).unwrap_or(0);
    if status != "PENDING" || !may_take_over(owner.as_deref(), executor) {
        let (output, error) = (run.varlena(0, 4), run.varlena(0, 5));
        return Ok(start_row(workflow_id, &status, output, error, last_step, false));
    }
    let epoch = run_cache::epoch_now(workflow_id);
    let max_attempts = guc::MAX_RECOVERY_ATTEMPTS.get().into_datum();
    let claimed = CLAIM_RUN.run(&[id_datum(workflow_id), executor.and_then(text_datum), max_attempts]);
    let status = claimed.text(0, 1).unwrap_or_default();
    if status == "PENDING" {
        run_cache::remember(workflow_id, epoch, claimed.int8(0, 2));
    } else {
        wake_waiters(workflow_id);
    }
    Ok(start_row(workflow_id, &status, None, None, last_step, status == "PENDING"))
}

/// A PENDING run may be taken by its own executor, by anyone when it has no owner, and by
/// anyone once its owner's lease has expired or the owner is no longer registered.
fn may_take_over(owner: Option<&str>, caller: Option<&str>) -> bool {
    match owner {
        None => true,
        Some(o) if Some(o) == caller => true,
        Some(o) => {
            let live = LEASE_IS_LIVE.run(&[text_datum(o), guc::executor_timeout_ms().into_datum()]);
            !live.bool(0, 1).unwrap_or(false)
        }
    }
}

fn start_row(
    id: &str,
    status: &str,
    output: Option<Datum>,
    error: Option<Datum>,
    last_step: i32,
    claimed: bool,
) -> Record {
    Record(vec![text_datum(id), text_datum(status), output, error, last_step.into_datum(), claimed.into_datum()])
}

fn complete(args: &Args, status: &'static str) -> Result<&'static str> {
    let workflow_id = args.name(0, "workflow_id")?;
    let (output, error) = if status == "SUCCESS" {
        (args.jsonb(1, "output")?, None)
    } else {
        (None, Some(args.jsonb(1, "error")?.ok_or(WorkflowError::NullArgument { arg: "error" })?))
    };
    spi::connect(|| {
        let done = COMPLETE.run(&[id_datum(&workflow_id), text_datum(status), output, error]);
        if done.is_empty() {
            return Err(why_not_running(&workflow_id));
        }
        announce(&workflow_id, done.text(0, 1).as_deref());
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
    spi::connect(|| {
        let cancelled = CANCEL.run(&[id_datum(&workflow_id)]);
        if cancelled.len() == 1 {
            announce(&workflow_id, cancelled.text(0, 1).as_deref());
            return Ok(true);
        }
        match why_not_running(&workflow_id) {
            e @ WorkflowError::UnknownWorkflow { .. } => Err(e),
            _ => Ok(false),
        }
    })
}

fn wait(args: &Args) -> Result<Record> {
    let workflow_id = args.name(0, "workflow_id")?;
    let timeout = args.interval(1, "timeout")?.map(|(_, micros)| Duration::from_micros(micros as u64));
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        return Err(WorkflowError::NeedsReadCommitted { function: "wait" });
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let waiter = wake::Waiter::new(run_cache::slot(&workflow_id));
    loop {
        let seen = waiter.epoch();
        let (status, output, error) = spi::connect(|| {
            let rows = OUTCOME.run(&[id_datum(&workflow_id)]);
            (rows.text(0, 1), rows.varlena(0, 2), rows.varlena(0, 3))
        });
        let Some(status) = status else {
            return Err(WorkflowError::UnknownWorkflow { workflow_id });
        };
        match wake::nap_ms(deadline) {
            Some(nap) if !is_terminal(&status) => waiter.sleep(seen, nap),
            _ => return Ok(Record(vec![text_datum(&workflow_id), text_datum(&status), output, error])),
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
