//! Housekeeping over runs, for tick(): promote DELAYED runs that are due, cancel runs past
//! their deadline, and release the PENDING runs of executors whose lease has expired (or
//! dead-letter them once they have been recovered too often).

use crate::fmgr::text_datum;
use crate::spi::{Conn, Rows, Statement, INT4, TEXT};
use crate::stats::{self, Counter};
use crate::{guc, ready_columns, ready_from, sql, workflow};
use pgrx::pg_sys::INT8OID as INT8;
use pgrx::IntoDatum;

static PROMOTE_DUE: Statement = Statement::new(sql!(
    "WITH promoted AS (
        UPDATE workflow.run SET status = 'ENQUEUED'
         WHERE status = 'DELAYED' AND available_at <= clock_timestamp()
        RETURNING ", ready_columns!(), "),
      readied AS (",
    ready_from!("promoted"),
    ") SELECT workflow_id, queue FROM promoted"),
    &[],
);

static CANCEL_TIMED_OUT: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'CANCELLED', finished_at = clock_timestamp()
       WHERE status = 'PENDING' AND deadline <= clock_timestamp()
      RETURNING workflow_id, queue",
    &[],
);

/// Puts the PENDING runs that `$runs` selects (a query of workflow_ids that locks them) back
/// on their queues, or dead-letters them once they have been recovered more than `$2` times.
macro_rules! release {
    ($runs:literal) => {
        sql!(
            "WITH expired AS (", $runs, "),
      released AS (
        UPDATE workflow.run r
           SET status = CASE WHEN r.recovery_attempts + 1 > $2 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
                             ELSE 'ENQUEUED' END,
               queue = coalesce(r.queue, 'default'),
               recovery_attempts = r.recovery_attempts + 1,
               finished_at = CASE WHEN r.recovery_attempts + 1 > $2 THEN clock_timestamp() END
         WHERE r.workflow_id = ANY (ARRAY(SELECT workflow_id FROM expired))
        RETURNING ", ready_columns!(), "),
      readied AS (",
            ready_from!("released"),
            ") SELECT workflow_id, queue, status FROM released"
        )
    };
}

/// Runs without an executor (started anonymously) have no lease to expire and stay as they
/// are; a later start() of the same id replays them.
static RELEASE_EXPIRED: Statement = Statement::new(
    release!(
        "SELECT r.workflow_id FROM workflow.run r
         WHERE r.status = 'PENDING' AND r.executor_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM workflow.executor e
                            WHERE e.executor_id = r.executor_id
                              AND e.last_heartbeat + $1 * interval '1 millisecond' > clock_timestamp())
         FOR UPDATE OF r SKIP LOCKED"
    ),
    &[INT8, INT4],
);

/// The runs of one executor, which knows that it left them: a restarted SQL worker.
static RELEASE_OWN: Statement = Statement::new(
    release!("SELECT workflow_id FROM workflow.run WHERE status = 'PENDING' AND executor_id = $1 FOR UPDATE"),
    &[TEXT, INT4],
);

/// Recovers the runs that `executor` left PENDING when its process died, at once, as the
/// lease's expiry would: each counts as a recovery. Returns how many.
pub fn release_own(c: &Conn, executor: &str) -> usize {
    let released = RELEASE_OWN.run(c, &[text_datum(executor), guc::MAX_RECOVERY_ATTEMPTS.get().into_datum()]);
    announce(&released);
    count_released(&released);
    released.len()
}

/// What one pass did.
#[derive(Default, serde::Serialize)]
pub struct Counts {
    pub fired: i64,
    pub promoted: i64,
    pub timed_out: i64,
    pub recovered: i64,
    pub dead_lettered: i64,
}

/// Counts the released runs that went back to their queues and those dead-lettered.
fn count_released(released: &Rows) -> (i64, i64) {
    let recovered = (0..released.len()).filter(|&i| released.text(i, 3).as_deref() == Some("ENQUEUED")).count() as i64;
    let dead = released.len() as i64 - recovered;
    stats::add(Counter::RunsRecovered, recovered as u64);
    stats::add(Counter::RunsDeadLettered, dead as u64);
    (recovered, dead)
}

/// Wakes whoever waits on these runs and their queues; moving the runs' epochs also drops
/// them from every backend's run cache, so a stale executor's next step_put re-reads the run.
fn announce(rows: &Rows) {
    for i in 0..rows.len() {
        if let Some(id) = rows.text(i, 1) {
            workflow::announce(&id, rows.text(i, 2).as_deref());
        }
    }
}

/// Runs the three passes.
pub fn housekeep(c: &Conn, counts: &mut Counts) {
    let promoted = PROMOTE_DUE.run(c, &[]);
    announce(&promoted);
    counts.promoted = promoted.len() as i64;

    let timed_out = CANCEL_TIMED_OUT.run(c, &[]);
    announce(&timed_out);
    counts.timed_out = timed_out.len() as i64;
    stats::add(Counter::RunsCancelled, timed_out.len() as u64);

    let timeout = guc::executor_timeout_ms().into_datum();
    let released = RELEASE_EXPIRED.run(c, &[timeout, guc::MAX_RECOVERY_ATTEMPTS.get().into_datum()]);
    announce(&released);
    (counts.recovered, counts.dead_lettered) = count_released(&released);
}
