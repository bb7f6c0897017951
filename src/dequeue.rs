//! dequeue: claim ENQUEUED runs with FOR UPDATE SKIP LOCKED, within every limit, and, with
//! `wait`, sleep on the queue's condition variable until an enqueue commits.
//!
//! Plain SKIP LOCKED is safe only without a global budget. When a queue has any limit, two
//! dequeuers could each count the same free capacity and both spend it. So on a limited queue
//! a dequeuer first takes a transaction-level advisory lock on the queue, then counts in a new
//! statement (whose snapshot sees every claim committed before it got the lock), then claims.
//! The lock lives until the dequeuer commits, so the next one counts its claims too. An
//! advisory lock lives in shared memory only: unlike a lock on the queue row, it writes no WAL.
//!
//! An executor claims only runs of its own app_version, or of none (version routing): a run
//! recovered from a v1 executor waits for a v1 executor.
//!
//! Times here are clock_timestamp(), not now(): a waiting dequeue runs inside one transaction,
//! and now() stands still for all of it.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Field, SetOf};
use crate::queue;
use crate::queue_cache::{self, Limits};
use crate::spi::{self, Conn, Statement, INT4, TEXT};
use crate::workflow::needs_read_committed;
use crate::{sql, sql_app_version, sql_function, wake};
use pgrx::pg_sys::{self, INT8OID as INT8};
use pgrx::IntoDatum;
use std::time::{Duration, Instant};

/// 0x77660001 ("wf", 1): our class of advisory locks, so user advisory locks do not collide.
static LOCK_QUEUE: Statement =
    Statement::new(c"SELECT pg_advisory_xact_lock(2003173377, hashtext($1))", &[TEXT]);

/// Runs past their deadline no longer hold a slot: their next step call stops them.
static RUNNING: Statement = Statement::new(
    c"SELECT count(*), count(*) FILTER (WHERE executor_id = $2) FROM workflow.run
       WHERE queue = $1 AND status = 'PENDING' AND (deadline IS NULL OR deadline > clock_timestamp())",
    &[TEXT, TEXT],
);

static PRUNE_STARTS: Statement = Statement::new(
    c"DELETE FROM workflow.queue_start
       WHERE queue = $1 AND started_at <= clock_timestamp() - $2 * interval '1 microsecond'",
    &[TEXT, INT8],
);

/// Starts in the window, and when the oldest of them leaves it.
static STARTS: Statement = Statement::new(
    c"SELECT count(*), min(started_at) + $2 * interval '1 microsecond'
        FROM workflow.queue_start WHERE queue = $1",
    &[TEXT, INT8],
);

static EXECUTOR_EXISTS: Statement =
    Statement::new(c"SELECT 1 FROM workflow.executor WHERE executor_id = $1", &[TEXT]);

static RECORD_STARTS: Statement = Statement::new(
    c"INSERT INTO workflow.queue_start (queue, started_at) SELECT $1, clock_timestamp() FROM generate_series(1, $2)",
    &[TEXT, INT4],
);

/// The end of both claims: the runs whose ready rows were `taken` become PENDING for the
/// executor, and are returned. The ready rows are locked (deleted) before the run rows: the
/// lock order that `start` and `cancel` follow too.
macro_rules! mark_taken_pending {
    () => {
        "
      UPDATE workflow.run r
         SET status = 'PENDING', executor_id = $2, started_at = clock_timestamp(), attempt = r.attempt + 1,
             deadline = clock_timestamp() + r.timeout
       WHERE r.workflow_id = ANY (ARRAY(SELECT workflow_id FROM taken)) AND r.status = 'ENQUEUED'
      RETURNING r.workflow_id, r.name, r.input, r.attempt,
                (SELECT coalesce(max(c.step), 0) FROM workflow.checkpoint c WHERE c.workflow_id = r.workflow_id),
                r.priority, r.created_at"
    };
}

/// Which ready rows an executor may claim. An application executor: runs of its own
/// app_version, or of none. A SQL worker: the runs of SQL workflows only.
macro_rules! app_runs {
    () => {
        "EXISTS (SELECT 1 FROM workflow.executor e WHERE e.executor_id = $2)
         AND (app_version IS NULL
              OR app_version = (SELECT e.app_version FROM workflow.executor e WHERE e.executor_id = $2))"
    };
}
macro_rules! sql_runs {
    () => {
        concat!("app_version = '", sql_app_version!(), "'")
    };
}

/// Takes the first ready rows (that `$mine` allows) that no other dequeuer has locked, and
/// marks their runs PENDING.
macro_rules! claim {
    ($mine:expr) => {
        sql!("WITH taken AS (
        DELETE FROM workflow.ready
         WHERE workflow_id = ANY (ARRAY(
                 SELECT workflow_id FROM workflow.ready
                  WHERE queue = $1 AND ", $mine, "
                  ORDER BY priority, created_at, workflow_id
                  LIMIT $3
                  FOR UPDATE SKIP LOCKED))
        RETURNING workflow_id)
", mark_taken_pending!())
    };
}
static CLAIM: Statement = Statement::new(claim!(app_runs!()), &[TEXT, TEXT, INT4]);
static CLAIM_SQL: Statement = Statement::new(claim!(sql_runs!()), &[TEXT, TEXT, INT4]);

/// With partition_concurrency: rank the first 1000 ready runs within their partition, on top
/// of what already runs there. Runs without a partition_key are not partition-limited.
/// Dequeuers of this queue hold the queue lock, so no SKIP LOCKED is needed.
macro_rules! claim_partitioned {
    ($mine:expr) => {
        sql!("WITH running AS (
        SELECT partition_key, count(*) AS n FROM workflow.run
         WHERE queue = $1 AND status = 'PENDING' AND (deadline IS NULL OR deadline > clock_timestamp())
         GROUP BY partition_key),
      candidates AS (
        SELECT workflow_id, partition_key, priority, created_at FROM workflow.ready
         WHERE queue = $1 AND ", $mine, "
         ORDER BY priority, created_at, workflow_id
         LIMIT 1000),
      ranked AS (
        SELECT c.workflow_id, c.partition_key, c.priority, c.created_at,
               row_number() OVER (PARTITION BY c.partition_key
                                  ORDER BY c.priority, c.created_at, c.workflow_id)
               + coalesce(r.n, 0) AS slot
          FROM candidates c LEFT JOIN running r ON r.partition_key = c.partition_key),
      picked AS (
        SELECT workflow_id FROM ranked WHERE partition_key IS NULL OR slot <= $4
         ORDER BY priority, created_at, workflow_id
         LIMIT $3),
      taken AS (
        DELETE FROM workflow.ready WHERE workflow_id = ANY (ARRAY(SELECT workflow_id FROM picked))
        RETURNING workflow_id)
", mark_taken_pending!())
    };
}
static CLAIM_PARTITIONED: Statement = Statement::new(claim_partitioned!(app_runs!()), &[TEXT, TEXT, INT4, INT4]);
static CLAIM_PARTITIONED_SQL: Statement =
    Statement::new(claim_partitioned!(sql_runs!()), &[TEXT, TEXT, INT4, INT4]);

/// Who is claiming: an application's executor, or a SQL worker.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Claimer {
    App,
    SqlWorker,
}

/// The claimed runs, plus when to look again if there were none (µs since 2000, Postgres' epoch).
pub struct Attempt {
    pub rows: Vec<Vec<Field>>,
    pub retry_at: Option<i64>,
}

fn dequeue(args: &Args) -> Result<SetOf> {
    let queue = args.name(0, "queue")?;
    let executor = args.name(1, "executor_id")?;
    let max_count = args.int(2).ok_or(WorkflowError::NullArgument { arg: "max_count" })?;
    if max_count < 1 {
        return Err(WorkflowError::InvalidLimit { arg: "max_count", value: max_count as i64 });
    }
    let wait = args.interval(3, "wait")?.map_or(0, |(_, micros)| micros);
    needs_read_committed("dequeue")?;
    if wait == 0 {
        return attempt(&queue, &executor, max_count, false, Claimer::App).map(|a| SetOf(a.rows));
    }
    let deadline = Instant::now() + Duration::from_micros(wait as u64);
    let waiter = wake::Waiter::new(queue::slot(&queue));
    loop {
        let seen = waiter.epoch();
        // Each try runs in a subtransaction, so a try that claims nothing also gives back the
        // queue lock before we sleep.
        let tried = spi::in_subtransaction(|| {
            let tried = attempt(&queue, &executor, max_count, true, Claimer::App);
            let keep = matches!(&tried, Ok(a) if !a.rows.is_empty());
            (tried, keep)
        })?;
        let mut nap = match wake::nap_ms(Some(deadline)) {
            Some(nap) if tried.rows.is_empty() => nap,
            _ => return Ok(SetOf(tried.rows)),
        };
        if let Some(at) = tried.retry_at {
            // SAFETY: reads the clock.
            let until = (at - unsafe { pg_sys::GetCurrentTimestamp() }) / 1000;
            nap = nap.min(until.max(1));
        }
        waiter.sleep(seen, nap);
    }
}

/// One try at claiming up to `max_count` runs of `queue`, within its limits.
pub fn attempt(queue: &str, executor: &str, max_count: i32, waiting: bool, claimer: Claimer) -> Result<Attempt> {
    spi::connect(|c| {
        let (limits, next_due) = queue_cache::limits_promoting_due(c, queue)?;
        let (budget, rate_retry_at) =
            if limits.any() { budget(c, queue, executor, &limits, max_count) } else { (max_count, None) };
        let mut rows = Vec::new();
        if budget > 0 {
            rows = claim(c, queue, executor, budget, limits.partition_concurrency, claimer);
            if limits.rate_limit.is_some() && !rows.is_empty() {
                RECORD_STARTS.run(c, &[text_datum(queue), (rows.len() as i32).into_datum()]);
            }
        }
        // The claim checks the executor's registration itself; say which was missing.
        if rows.is_empty() && EXECUTOR_EXISTS.run(c, &[text_datum(executor)]).is_empty() {
            return Err(WorkflowError::UnknownExecutor { executor_id: executor.into() });
        }
        let retry_at = match (rows.is_empty() && waiting, rate_retry_at) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => next_due,
        };
        Ok(Attempt { rows, retry_at })
    })
}

/// How many runs this dequeuer may claim now, under the queue lock; and, when the rate limit
/// is what stops it, when the next start frees up.
fn budget(c: &Conn, queue: &str, executor: &str, limits: &Limits, max_count: i32) -> (i32, Option<i64>) {
    let q = text_datum(queue);
    LOCK_QUEUE.run(c, &[q]);
    let mut budget = max_count as i64;
    let running = RUNNING.run(c, &[q, text_datum(executor)]);
    if let Some(c) = limits.concurrency {
        budget = budget.min(c as i64 - running.int8(0, 1).unwrap_or(0));
    }
    if let Some(w) = limits.worker_concurrency {
        budget = budget.min(w as i64 - running.int8(0, 2).unwrap_or(0));
    }
    let mut retry_at = None;
    if let (Some(limit), Some(period)) = (limits.rate_limit, limits.rate_period_micros) {
        PRUNE_STARTS.run(c, &[q, period.into_datum()]);
        let starts = STARTS.run(c, &[q, period.into_datum()]);
        let left = limit as i64 - starts.int8(0, 1).unwrap_or(0);
        if left <= 0 {
            retry_at = starts.int8(0, 2);
        }
        budget = budget.min(left);
    }
    (budget.clamp(0, i32::MAX as i64) as i32, retry_at)
}

fn claim(c: &Conn, queue: &str, executor: &str, budget: i32, partition_limit: Option<i32>, claimer: Claimer) -> Vec<Vec<Field>> {
    let (q, e, n) = (text_datum(queue), text_datum(executor), budget.into_datum());
    let (plain, partitioned) = match claimer {
        Claimer::App => (&CLAIM, &CLAIM_PARTITIONED),
        Claimer::SqlWorker => (&CLAIM_SQL, &CLAIM_PARTITIONED_SQL),
    };
    let claimed = match partition_limit {
        Some(p) => partitioned.run(c, &[q, e, n, p.into_datum()]),
        None => plain.run(c, &[q, e, n]),
    };
    // RETURNING has no order: restore the queue's (priority, then FIFO by created_at).
    let mut rows: Vec<(i32, i64, Vec<Field>)> = (0..claimed.len())
        .map(|i| {
            let row = vec![claimed.varlena(i, 1).into(), claimed.varlena(i, 2).into(), claimed.varlena(i, 3).into(),
                           claimed.int(i, 4).into(), claimed.int(i, 5).into()];
            (claimed.int(i, 6).unwrap_or(0), claimed.int8(i, 7).unwrap_or(0), row)
        })
        .collect();
    crate::stats::add(crate::stats::Counter::RunsDequeued, rows.len() as u64);
    rows.sort_by_key(|(priority, created, _)| (*priority, *created));
    rows.into_iter().map(|(_, _, row)| row).collect()
}

sql_function!(wf_dequeue, pg_finfo_wf_dequeue, dequeue);
