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
use crate::spi::{self, Conn, Out, Statement, INT4, JSONB, TEXT};
use crate::user_sql;
use crate::{guc, recovery, sql, sql_app_version, wake, warn, workflow};
use pgrx::pg_sys::{self, Oid};
use pgrx::{FromDatum, IntoDatum, PgTryBuilder};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// What the executor ids of SQL workers start with.
pub const EXECUTOR_PREFIX: &str = "pg_workflow:sql:";

/// The executor id of SQL worker `index` (1-based) of this database. Fixed per slot, so that a
/// restarted worker takes back the runs its previous incarnation left PENDING at once.
pub fn executor_id(index: i32) -> String {
    format!("{EXECUTOR_PREFIX}{index}")
}

/// What a worker shows in pg_stat_activity while it runs a step of run `id`.
fn activity_prefix(id: &str) -> String {
    format!("pg_workflow: workflow {id}, step ")
}

/// Cancels the statement of the SQL worker that is running a step of run `$1`, if any (found
/// by what it shows in pg_stat_activity, `report`).
static INTERRUPT: Statement = Statement::new(
    c"SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity
       WHERE backend_type = 'pg_workflow sql worker' AND pg_catalog.starts_with(query, $1)
         AND datname = pg_catalog.current_database()",
    &[TEXT],
);

/// A cancelled run's step stops now rather than at its end: its statement is cancelled, the
/// step fails and rolls back, and the worker finds the run no longer PENDING.
pub fn interrupt_step(c: &Conn, id: &str) {
    INTERRUPT.run(c, &[text_datum(&activity_prefix(id))]);
}

/// The shortest nap between two looks for work.
const MIN_NAP_MS: i64 = 5;

/// 0x77660002 ("wf", 2): the advisory lock class of "a step of this run is executing".
static LOCK_RUN: Statement =
    Statement::new(c"SELECT pg_catalog.pg_advisory_xact_lock(2003173378, pg_catalog.hashtext($1))", &[TEXT]);

static REGISTER: Statement = Statement::new(
    sql!("INSERT INTO workflow.executor AS e (executor_id, app_version) VALUES ($1, '", sql_app_version!(), "')
      ON CONFLICT (executor_id) DO UPDATE SET app_version = EXCLUDED.app_version, last_heartbeat = now()"),
    &[TEXT],
);

static SCHEMA_PRESENT: Statement =
    Statement::new(c"SELECT pg_catalog.to_regclass('workflow.sql_run') IS NOT NULL", &[]);

/// The queues that hold claimable SQL runs: ready, or DELAYED and due (the claim promotes those).
static QUEUES_WITH_WORK: Statement = Statement::new(
    sql!("SELECT q.name FROM workflow.queue q
       WHERE EXISTS (SELECT 1 FROM workflow.ready r WHERE r.queue = q.name AND r.app_version = '", sql_app_version!(), "')
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

/// The run, if this worker still owns it and it may take steps, with what the next step needs.
static RUN: Statement = Statement::new(
    c"SELECT r.status = 'PENDING' AND r.executor_id = $2 AND (r.deadline IS NULL OR r.deadline > clock_timestamp()),
             r.name, r.input,
             (extract(epoch FROM r.deadline - clock_timestamp()) * 1000)::int8,
             (SELECT coalesce(max(c.step), 0) FROM workflow.checkpoint c WHERE c.workflow_id = r.workflow_id),
             (SELECT coalesce(jsonb_agg(c.output ORDER BY c.step), '[]') FROM workflow.checkpoint c
               WHERE c.workflow_id = r.workflow_id),
             (SELECT c.output FROM workflow.checkpoint c WHERE c.workflow_id = r.workflow_id
               ORDER BY c.step DESC LIMIT 1)
        FROM workflow.run r WHERE r.workflow_id = $1",
    &[TEXT, TEXT],
);

/// The definition a run executes is copied before its first step commits (or when a step
/// fails): later steps, retries and recoveries use the copy, whatever define() does
/// meanwhile. A one-step run that succeeds at once needs no copy, and writes none.
static PIN: Statement = Statement::new(
    c"INSERT INTO workflow.sql_run (workflow_id, steps, max_attempts, backoff, run_as, defined_by)
      SELECT r.workflow_id, d.steps, d.max_attempts, d.backoff, d.run_as, d.defined_by
        FROM workflow.run r JOIN workflow.sql_workflow d ON d.name = r.name
       WHERE r.workflow_id = $1
      ON CONFLICT (workflow_id) DO NOTHING",
    &[TEXT],
);

/// Step $2 of the run's copy (or, before it has one, of the current definition of $3), its
/// role, and whether that role may run it: it exists, it is no superuser, and whoever defined
/// the workflow may still SET ROLE to it. And the role's search_path: its setting for this
/// database, its own, this database's, or the server's.
static PLAN: Statement = Statement::new(
    c"WITH def AS (
        SELECT steps, run_as, defined_by, true AS copied FROM workflow.sql_run WHERE workflow_id = $1
        UNION ALL
        SELECT steps, run_as, defined_by, false FROM workflow.sql_workflow
         WHERE name = $3 AND NOT EXISTS (SELECT 1 FROM workflow.sql_run WHERE workflow_id = $1))
      SELECT p.steps[$2], pg_catalog.array_length(p.steps, 1), p.run_as::pg_catalog.oid, p.run_as::text,
             a.rolsuper,
             a.oid IS NOT NULL AND pg_catalog.pg_has_role(p.defined_by::pg_catalog.oid, a.oid, 'MEMBER'),
             coalesce(
               (SELECT pg_catalog.substr(setting, 13) FROM (
                  SELECT pg_catalog.unnest(s.setconfig) AS setting,
                         (s.setrole = 0)::int * 2 + (s.setdatabase = 0)::int AS rank
                    FROM pg_catalog.pg_db_role_setting s
                   WHERE s.setrole IN (0, a.oid)
                     AND s.setdatabase IN (0, (SELECT d.oid FROM pg_catalog.pg_database d
                                                WHERE d.datname = pg_catalog.current_database()))
                     AND NOT (s.setrole = 0 AND s.setdatabase = 0)) settings
                 WHERE setting LIKE 'search\\_path=%' ORDER BY rank LIMIT 1),
               (SELECT CASE WHEN source IN ('default', 'configuration file', 'command line', 'environment variable')
                            THEN reset_val ELSE boot_val END
                  FROM pg_catalog.pg_settings WHERE name = 'search_path')),
             p.copied
        FROM def p LEFT JOIN pg_catalog.pg_roles a ON a.oid = p.run_as::pg_catalog.oid",
    &[TEXT, INT4, TEXT],
);

/// The step's checkpoint, only while this worker owns the run.
static RECORD: Statement = Statement::new(
    c"INSERT INTO workflow.checkpoint (workflow_id, step, step_name, output)
      SELECT $1, $2, 'step ' || $2, $3
       WHERE EXISTS (SELECT 1 FROM workflow.run
                      WHERE workflow_id = $1 AND status = 'PENDING' AND executor_id = $4)",
    &[TEXT, INT4, JSONB, TEXT],
);

/// The last step's output is the run's.
static FINISH: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'SUCCESS', output = $2, error = NULL, finished_at = clock_timestamp()
       WHERE workflow_id = $1 AND status = 'PENDING' AND executor_id = $3
      RETURNING queue",
    &[TEXT, JSONB, TEXT],
);

/// One more failed attempt of step $2; returns the attempts so far, the limit, and the backoff
/// before the next: `backoff` doubled after each failure, at most an hour (or `backoff`).
static FAILED_ATTEMPT: Statement = Statement::new(
    c"UPDATE workflow.sql_run
         SET failures = CASE WHEN failed_step IS NOT DISTINCT FROM $2 THEN failures + 1 ELSE 1 END,
             failed_step = $2
       WHERE workflow_id = $1
      RETURNING failures, max_attempts,
                (extract(epoch FROM LEAST(backoff * pg_catalog.power(2::float8, (failures - 1)::float8),
                                          GREATEST(backoff, interval '1 hour'))) * 1000000)::int8",
    &[TEXT, INT4],
);

static RETRY_LATER: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'DELAYED', available_at = clock_timestamp() + $3 * interval '1 microsecond',
             error = $2
       WHERE workflow_id = $1 AND status = 'PENDING' AND executor_id = $4
      RETURNING queue",
    &[TEXT, JSONB, pg_sys::INT8OID, TEXT],
);

/// A step that ran out of time ends the run as tick() ends any run past its deadline.
static TIMED_OUT: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'CANCELLED', error = $2, finished_at = clock_timestamp()
       WHERE workflow_id = $1 AND status = 'PENDING' AND executor_id = $3 AND deadline <= clock_timestamp()
      RETURNING queue",
    &[TEXT, JSONB, TEXT],
);

static GIVE_UP: Statement = Statement::new(
    c"UPDATE workflow.run SET status = 'ERROR', error = $2, finished_at = clock_timestamp()
       WHERE workflow_id = $1 AND status = 'PENDING' AND executor_id = $3
      RETURNING queue",
    &[TEXT, JSONB, TEXT],
);

/// An error caught from a transaction, as the run's error records it.
#[derive(Clone)]
struct Failure {
    sqlstate: String,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
    /// Retrying cannot help (no definition, a forbidden role): the run ends at once.
    fatal: bool,
}

impl Failure {
    fn fatal(sqlstate: &str, message: String) -> Self {
        Failure { sqlstate: sqlstate.into(), message, detail: None, hint: None, fatal: true }
    }

    /// The run's `error`, in the JSON shape every SDK shares (`type`, `message`) plus the SQL
    /// error's own fields and where it happened.
    fn to_json(&self, step: i32, attempts: i32) -> serde_json::Value {
        serde_json::json!({
            "type": "SQLError",
            "message": self.message,
            "sqlstate": self.sqlstate,
            "detail": self.detail,
            "hint": self.hint,
            "step": step,
            "attempts": attempts,
        })
    }
}

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
        // SAFETY: the failed transaction is the current one; abort it before the next.
        unsafe { pg_sys::AbortCurrentTransaction() };
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
        crate::spawn::reload_if_asked();
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
        if SCHEMA_PRESENT.run(c, &[]).bool(0, 1) != Some(true) {
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
/// that gave nothing is released before the next.
fn claim_next(me: &str, index: i32) -> Claim {
    // SAFETY: reads a global set at transaction start.
    if unsafe { pg_sys::XactReadOnly } {
        return Claim::Nothing(None);
    }
    let queues: Option<Vec<String>> = spi::connect(|c| {
        if SCHEMA_PRESENT.run(c, &[]).bool(0, 1) != Some(true) {
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
        let claimed = spi::in_subtransaction(|| {
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
        if let Some(id) = claimed {
            return Claim::Run(id);
        }
    }
    Claim::Nothing(spi::connect(|c| NEXT_DELAYED.run(c, &[]).int8(0, 1)))
}

/// Sleeps on the wake slot. A query cancel that arrives meanwhile was meant for a step that
/// has just ended (cancel() races the step's end, `interrupt_step`): it is dropped, rather
/// than ending the idle worker.
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

/// What one step's transaction did.
enum Stepped {
    Recorded,
    Finished,
    /// The run is no longer ours to run (cancelled, past its deadline, taken over).
    Stopped,
}

/// Runs the claimed run's steps one transaction each, until it ends, fails or stops.
fn execute(me: &str, id: &str) {
    loop {
        let step = Cell::new(0);
        let outcome = transaction(|| {
            let stepped = take_step(me, id, &step);
            let commit = !matches!(stepped, Ok(Stepped::Stopped));
            match stepped {
                Ok(s) => (Ok(s), commit),
                Err(fatal) => (Err(fatal), false),
            }
        });
        idle();
        let failure = match outcome {
            Ok(Ok(Stepped::Recorded)) => continue,
            Ok(Ok(Stepped::Finished | Stepped::Stopped)) => return,
            Ok(Err(fatal)) => fatal,
            Err(failure) => failure,
        };
        if let Err(f) = transaction(|| (record_failure(me, id, step.get(), &failure), true)) {
            // Left PENDING and ours: the next look for work (recovery, at the latest) retries.
            complain("recording a failed step", &f);
        }
        return;
    }
}

/// Shows in pg_stat_activity what the worker does.
fn report(activity: &str) {
    let text = std::ffi::CString::new(activity).unwrap_or_default();
    // SAFETY: the text is NUL-ended; pgstat copies it.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
}

fn idle() {
    // SAFETY: a null text is allowed for the idle state.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
}

/// The next step of run `id`, in the current transaction: check that it is still ours, run the
/// step as its role, record its checkpoint (and, after the last step, the run's end).
fn take_step(me: &str, id: &str, step_number: &Cell<i32>) -> Result<Stepped, Failure> {
    let plan = spi::connect(|c| plan_step(c, me, id, step_number))?;
    let Some(plan) = plan else { return Ok(Stepped::Stopped) };
    if plan.step > plan.step_count {
        // Resumed onto a definition with fewer steps than it has already recorded.
        return Ok(finish(me, id, plan.outputs_last));
    }
    report(&format!("{}{} of {}", activity_prefix(id), plan.step, plan.step_count));
    let output = user_sql::run(&user_sql::Step {
        sql: &plan.sql,
        role: plan.role,
        search_path: &plan.search_path,
        input: plan.input.map(Out::datum),
        outputs: plan.outputs.map(Out::datum),
        time_left_ms: plan.time_left_ms,
    });
    if let Some(out) = output {
        // SAFETY: a jsonb Datum.
        let bytes = unsafe { pg_sys::toast_raw_datum_size(out.datum()) };
        if bytes > guc::max_payload_bytes() {
            let message = format!("step {} output is {bytes} bytes, over workflow.max_payload_size", plan.step);
            return Err(Failure { sqlstate: "54000".into(), message, detail: None, hint: None, fatal: false });
        }
    }
    let output = output.map(Out::datum);
    let recorded = spi::connect(|c| {
        RECORD.run(c, &[text_datum(id), plan.step.into_datum(), output, text_datum(me)]).len() == 1
    });
    if !recorded {
        return Ok(Stepped::Stopped); // cancelled or taken over meanwhile: roll the step back
    }
    if plan.step == plan.step_count {
        return Ok(finish(me, id, output.map(|d| unsafe { Out::transferred(d) })));
    }
    Ok(Stepped::Recorded)
}

fn finish(me: &str, id: &str, output: Option<Out>) -> Stepped {
    spi::connect(|c| {
        let done = FINISH.run(c, &[text_datum(id), output.map(Out::datum), text_datum(me)]);
        match done.len() {
            1 => {
                workflow::announce(id, done.text(0, 1).as_deref());
                Stepped::Finished
            }
            _ => Stepped::Stopped,
        }
    })
}

struct Plan {
    step: i32,
    step_count: i32,
    sql: String,
    role: Oid,
    search_path: String,
    input: Option<Out>,
    outputs: Option<Out>,
    outputs_last: Option<Out>,
    time_left_ms: Option<i64>,
}

/// What the next step needs, under the run's advisory lock (so that two processes never run
/// steps of one run at once). None when the run is no longer this worker's to run.
fn plan_step(c: &Conn, me: &str, id: &str, step_number: &Cell<i32>) -> Result<Option<Plan>, Failure> {
    LOCK_RUN.run(c, &[text_datum(id)]);
    let run = RUN.run(c, &[text_datum(id), text_datum(me)]);
    if run.bool(0, 1) != Some(true) {
        return Ok(None);
    }
    let name = run.text(0, 2).unwrap_or_default();
    let step = run.int(0, 5).unwrap_or(0) + 1;
    step_number.set(step);
    let plan = PLAN.run(c, &[text_datum(id), step.into_datum(), text_datum(&name)]);
    if plan.is_empty() {
        return Err(Failure::fatal("42704", format!("SQL workflow \"{name}\" is not defined")));
    }
    let role_name = plan.text(0, 4).unwrap_or_default();
    match (plan.bool(0, 5), plan.bool(0, 6)) {
        (None, _) => return Err(Failure::fatal("42704", format!("role \"{role_name}\" of SQL workflow \"{name}\" does not exist"))),
        (Some(true), _) => {
            return Err(Failure::fatal("42501", format!("SQL workflows never run as a superuser, and \"{role_name}\" is one now")))
        }
        (_, Some(true)) => {}
        _ => {
            return Err(Failure::fatal(
                "42501",
                format!("the role that defined SQL workflow \"{name}\" can no longer SET ROLE to \"{role_name}\""),
            ))
        }
    }
    let step_count = plan.int(0, 2).unwrap_or(0);
    if plan.bool(0, 8) != Some(true) && step < step_count {
        PIN.run(c, &[text_datum(id)]); // more steps will follow this one: keep this definition
    }
    let outputs = run.varlena(0, 6);
    Ok(Some(Plan {
        step,
        step_count,
        sql: plan.text(0, 1).unwrap_or_default(),
        role: Oid::from(plan.int(0, 3).unwrap_or(0) as u32),
        search_path: plan.text(0, 7).unwrap_or_else(|| "\"$user\", public".into()),
        input: run.varlena(0, 3),
        outputs,
        outputs_last: run.varlena(0, 7),
        time_left_ms: run.int8(0, 4),
    }))
}

/// After a failed step (rolled back): retry it after the backoff, or end the run ERROR with
/// the error when its attempts are spent or retrying cannot help; a run past its deadline ends
/// CANCELLED, as tick() ends any such run.
fn record_failure(me: &str, id: &str, step: i32, failure: &Failure) {
    spi::connect(|c| {
        let (i, m) = (text_datum(id), text_datum(me));
        if !failure.fatal {
            PIN.run(c, &[i]); // the retry runs this definition
        }
        let attempt = if failure.fatal { None } else { Some(FAILED_ATTEMPT.run(c, &[i, step.into_datum()])) };
        let attempts = attempt.as_ref().and_then(|a| a.int(0, 1)).unwrap_or(1);
        let error = pgrx::JsonB(failure.to_json(step, attempts)).into_datum();
        let ended = TIMED_OUT.run(c, &[i, error, m]);
        if !ended.is_empty() {
            workflow::announce(id, ended.text(0, 1).as_deref());
            return;
        }
        if let Some(a) = &attempt {
            if let (Some(failures), Some(max)) = (a.int(0, 1), a.int(0, 2)) {
                if failures < max {
                    RETRY_LATER.run(c, &[i, error, a.int8(0, 3).into_datum(), m]);
                    return;
                }
            }
        }
        let ended = GIVE_UP.run(c, &[i, error, m]);
        if !ended.is_empty() {
            workflow::announce(id, ended.text(0, 1).as_deref());
        }
    });
}
