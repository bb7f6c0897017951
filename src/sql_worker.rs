//! The SQL workers: background workers that claim the runs of SQL workflows
//! (`sql_workflow.rs`) from every queue of their database, within the queues' limits, and
//! execute their steps.
//!
//! Each step runs in its own transaction together with its checkpoint, so it happens exactly
//! once: a crash before the commit undoes both, and the step runs again. The last step's
//! transaction also ends the run. A failed step is rolled back and its run waits DELAYED for
//! the backoff, then any SQL worker retries it; when its attempts are spent, the run ends
//! ERROR with the SQL error. Nothing a step does stops the worker: an ERROR is caught and
//! recorded, and a step that kills its worker (FATAL, a crash) is recovered by the worker's
//! restart like any executor's run, up to workflow.max_recovery_attempts.
//!
//! A worker is executor `executor_id(index)`, with app_version `sql_workflow::APP_VERSION`.
//! A worker may spend an hour in one step, so its database's scheduler renews its lease while
//! the process lives (`worker.rs`); a restarted worker takes back at once the runs its previous
//! incarnation left PENDING. All our statements go through `spi::connect` (names resolve in
//! pg_catalog only); the steps' own SQL runs as their role through `user_sql.rs`.

use crate::dequeue::{self, Claimer};
use crate::fmgr::{text_datum, Field};
use crate::spi::{self, Statement, TEXT};
use crate::sql_step::{self, Failure, Stepped};
use crate::user_sql;
use crate::{guc, recovery, sql, sql_app_version, sql_workflow, wake, warn};
use pgrx::pg_sys;
use pgrx::{FromDatum, PgTryBuilder};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// What the executor ids of SQL workers start with.
pub const EXECUTOR_PREFIX: &str = "pg_workflow:sql:";

/// The executor id of SQL worker `index` (1-based) of this database. Fixed per slot, so that a
/// restarted worker takes back the runs its previous incarnation left PENDING at once.
pub fn executor_id(index: i32) -> String {
    format!("{EXECUTOR_PREFIX}{index}")
}

/// The shortest nap between two looks for work.
const MIN_NAP_MS: i64 = 5;

static REGISTER: Statement = Statement::new(
    sql!("INSERT INTO workflow.executor AS e (executor_id, app_version) VALUES ($1, '", sql_app_version!(), "')
      ON CONFLICT (executor_id) DO UPDATE SET app_version = EXCLUDED.app_version, last_heartbeat = now()"),
    &[TEXT],
);

/// The queues that hold claimable SQL runs: ready, or DELAYED and due (the claim promotes those).
/// The ORDER BY and LIMIT make the ready_sql index the plan whatever the statistics say: when
/// every ready row is a SQL run, a sequential scan would look cheaper, and would then walk the
/// dead rows that claims leave at the table's head.
static QUEUES_WITH_WORK: Statement = Statement::new(
    sql!("SELECT q.name FROM workflow.queue q
       WHERE EXISTS (SELECT 1 FROM workflow.ready r WHERE r.queue = q.name AND r.app_version = '", sql_app_version!(), "'
                      ORDER BY r.priority, r.created_at, r.workflow_id LIMIT 1)
          OR EXISTS (SELECT 1 FROM workflow.run r
                      WHERE r.status = 'DELAYED' AND r.queue = q.name AND r.available_at <= clock_timestamp()
                        AND r.app_version = '", sql_app_version!(), "')
       ORDER BY q.name"),
    &[],
);

/// When the next DELAYED SQL run (a retry after its backoff, or an enqueue with a delay) is due.
static NEXT_DELAYED: Statement = Statement::new(
    sql!("SELECT min(available_at) FROM workflow.run WHERE status = 'DELAYED' AND app_version = '", sql_app_version!(), "'"),
    &[],
);

/// Runs `f` in a transaction of its own: committed when `f` says so, rolled back otherwise or
/// when it raises, in which case the error is returned. READ COMMITTED whatever the
/// database's default: claims need it (`dequeue`), and so do the steps' checkpoints.
fn transaction<T>(f: impl FnOnce() -> (T, bool)) -> Result<T, Failure> {
    let f = std::panic::AssertUnwindSafe(Cell::new(Some(f)));
    PgTryBuilder::new(|| {
        // SAFETY: the worker is between transactions; isolation is set before any snapshot.
        // SPI wants an outer snapshot; its statements still take their own (READ COMMITTED).
        // now() is the transaction's start, which a worker must set itself (a backend does it
        // per client statement): without it, every step would see the worker's start time.
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::XactIsoLevel = pg_sys::XACT_READ_COMMITTED as i32;
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let (value, commit) = (f.take().expect("runs once"))();
        // SAFETY: the transaction begun above is the current one.
        unsafe {
            if commit {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            } else {
                pg_sys::AbortCurrentTransaction();
            }
        }
        Ok(value)
    })
    .catch_others(|error| {
        let failure = match &error {
            pg_sys::panic::CaughtError::PostgresError(e)
            | pg_sys::panic::CaughtError::ErrorReport(e)
            | pg_sys::panic::CaughtError::RustPanic { ereport: e, .. } => Failure {
                sqlstate: sqlstate_text(e.sql_error_code() as i32),
                message: e.message().to_string(),
                detail: e.detail().map(str::to_string),
                hint: e.hint().map(str::to_string),
                fatal: false,
            },
        };
        user_sql::disarm_timeout();
        // SAFETY: the failed transaction (and any subtransaction an error left open) is ours;
        // end all of it before the next.
        unsafe { pg_sys::AbortOutOfAnyTransaction() };
        Err(failure)
    })
    .execute()
}

/// The five characters of an encoded SQLSTATE (the inverse of `make_sqlstate`).
fn sqlstate_text(code: i32) -> String {
    (0..5).map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char).collect()
}

/// The worker's loop, entered connected to its database, with signals set up. Returns when the
/// worker should exit: the extension (or its SQL workflows) is gone.
pub fn serve(index: i32) {
    let me = executor_id(index);
    let mut registered = false;
    let mut last_heartbeat = Instant::now();
    let waiter = wake::Waiter::new(wake::sql_slot());
    loop {
        if crate::spawn::reload_if_asked() {
            sql_step::forget_server_search_path();
        }
        let seen = waiter.epoch();
        // SAFETY: reads shared state of this backend.
        if unsafe { pg_sys::RecoveryInProgress() } {
            nap(&waiter, seen, guc::TICK_INTERVAL_MS.get() as i64); // a standby: the primary runs them
            continue;
        }
        let lease_third = Duration::from_millis((guc::executor_timeout_ms() / 3).max(1) as u64);
        if !registered || last_heartbeat.elapsed() >= lease_third {
            match transaction(|| (register(&me), true)) {
                Ok(Some(_)) => (registered, last_heartbeat) = (true, Instant::now()),
                Ok(None) => return, // the extension, or its SQL workflows, are gone
                Err(f) => complain("register", &f),
            }
        }
        match transaction(|| (claim_next(&me, index), true)) {
            Ok(Claim::Run(id)) => execute(&me, &id),
            Ok(Claim::Nothing(next_due)) => nap(&waiter, seen, nap_ms(next_due)),
            Ok(Claim::SchemaGone) => return,
            Err(f) => {
                complain("claim", &f);
                registered = false; // e.g. our executor row was deleted: register again
                nap(&waiter, seen, guc::TICK_INTERVAL_MS.get() as i64);
            }
        }
    }
}

fn complain(what: &str, f: &Failure) {
    warn::at_most_once_a_minute(&format!("sql worker {what}"), &format!("pg_workflow sql worker: {what} failed: {}", f.message));
}

/// Registers the worker's executor, then takes back what its previous incarnation left
/// PENDING. None when this database has no SQL workflows (anymore).
fn register(me: &str) -> Option<usize> {
    // SAFETY: reads a global set at transaction start.
    if unsafe { pg_sys::XactReadOnly } {
        return Some(0); // read-only for now: nothing to take back, nothing to claim
    }
    spi::connect(|c| {
        if !sql_workflow::schema_has_them(c) {
            return None;
        }
        REGISTER.run(c, &[text_datum(me)]);
        let taken_back = recovery::release_own(c, me);
        if taken_back > 0 {
            pgrx::log!("pg_workflow: {me} took back {taken_back} runs its previous process left");
            wake::notify_on_commit(wake::sql_slot());
        }
        Some(taken_back)
    })
}

enum Claim {
    Run(String),
    Nothing(Option<i64>),
    SchemaGone,
}

/// Claims one SQL run from the first queue (in an order that differs per worker) that gives
/// one. Each queue is tried in a subtransaction, so a queue lock taken for a limited queue
/// that gave nothing is released before the next, and an error is that queue's alone.
fn claim_next(me: &str, index: i32) -> Claim {
    // SAFETY: reads a global set at transaction start.
    if unsafe { pg_sys::XactReadOnly } {
        return Claim::Nothing(None);
    }
    let queues: Option<Vec<String>> = spi::connect(|c| {
        if !sql_workflow::schema_has_them(c) {
            return None;
        }
        let rows = QUEUES_WITH_WORK.run(c, &[]);
        Some((0..rows.len()).filter_map(|i| rows.text(i, 1)).collect())
    });
    let Some(mut queues) = queues else { return Claim::SchemaGone };
    if !queues.is_empty() {
        let shift = (index as usize) % queues.len();
        queues.rotate_left(shift);
    }
    for queue in &queues {
        let claimed = spi::catching(|| {
            let id = dequeue::attempt(queue, me, 1, false, Claimer::SqlWorker)
                .ok()
                .and_then(|a| a.rows.into_iter().next())
                .and_then(|row| match row.into_iter().next() {
                    // SAFETY: the claim's first column is the run's id, a text copied out.
                    Some(Field::Datum(id)) => unsafe { String::from_datum(id.datum(), false) },
                    _ => None,
                });
            let keep = id.is_some();
            (id, keep)
        });
        // One queue whose claim raises (say, its limits are being changed) does not hold up
        // the others.
        if let Ok(Some(id)) = claimed {
            return Claim::Run(id);
        }
    }
    Claim::Nothing(spi::connect(|c| NEXT_DELAYED.run(c, &[]).int8(0, 1)))
}

/// Sleeps on the wake slot. A query cancel that arrives meanwhile was meant for a step that
/// has just ended (cancel() races the step's end, `sql_step::interrupt_on_commit`): it is
/// dropped, rather than ending the idle worker.
fn nap(waiter: &wake::Waiter, seen: Option<u64>, ms: i64) {
    let sleep = std::panic::AssertUnwindSafe(|| waiter.sleep(seen, ms));
    PgTryBuilder::new(|| sleep())
        .catch_when(pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED, |_| ())
        .execute()
}

/// Until the next DELAYED SQL run is due, or tick_interval at most (a safety net: enqueues
/// and resumes wake the workers at once).
fn nap_ms(next_due: Option<i64>) -> i64 {
    let interval = guc::TICK_INTERVAL_MS.get() as i64;
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let until_due = next_due.map_or(interval, |due| (due - now + 999) / 1000);
    until_due.clamp(MIN_NAP_MS, interval.max(MIN_NAP_MS))
}

/// Runs the claimed run's steps one transaction each, until it ends, fails or stops.
fn execute(me: &str, id: &str) {
    loop {
        let step = Cell::new(0);
        let outcome = transaction(|| {
            let stepped = sql_step::take_step(me, id, &step);
            let commit = !matches!(stepped, Ok(Stepped::Stopped));
            match stepped {
                Ok(s) => (Ok(s), commit),
                Err(fatal) => (Err(fatal), false),
            }
        });
        sql_step::idle();
        let failure = match outcome {
            Ok(Ok(Stepped::Recorded)) => continue,
            Ok(Ok(Stepped::Finished | Stepped::Stopped)) => return,
            Ok(Err(fatal)) => fatal,
            Err(failure) => failure,
        };
        if let Err(f) = transaction(|| (sql_step::record_failure(me, id, step.get(), &failure), true)) {
            // Left PENDING and ours: the next look for work (recovery, at the latest) retries.
            complain("recording a failed step", &f);
        }
        return;
    }
}

