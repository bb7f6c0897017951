//! One step of a SQL run, in the SQL worker's transaction: check that the run is still this
//! worker's, run the step's SQL as its role (`user_sql.rs`), and record its checkpoint, and
//! the run's end after its last step, in the same transaction. And what follows a failed step:
//! a retry after the backoff, or the run's end with the SQL error.
//!
//! Two workers never commit the same step: the checkpoint's primary key and the ownership
//! check in RECORD let one commit and roll the other back. (A step can run twice at once only
//! after a takeover, which needs a worker whose lease its scheduler could not renew.)

use crate::fmgr::text_datum;
use crate::spi::{self, Conn, Out, Statement, INT4, JSONB, TEXT};
use crate::stats::{self, Counter};
use crate::{guc, privileged_role, queue_cache, spawn, sql, user_sql, workflow};
use pgrx::pg_sys::{self, Oid};
use pgrx::IntoDatum;
use std::cell::{Cell, RefCell};

/// An error caught from a transaction, as the run's error records it.
#[derive(Clone)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Retrying cannot help (no definition, a forbidden role): the run ends at once.
    pub fatal: bool,
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

/// What one step's transaction did.
pub enum Stepped {
    Recorded,
    Finished,
    /// The run is no longer ours to run (cancelled, past its deadline, taken over).
    Stopped,
}

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

/// The definition a run executes is copied when its first step commits with more to come:
/// later steps, retries and recoveries use the copy, whatever define() does meanwhile. It
/// copies the very definition that PLAN read for the step. (A one-step run that succeeds at
/// once needs no copy, and writes none.)
static COPY: Statement = Statement::new(
    c"INSERT INTO workflow.sql_run (workflow_id, steps, max_attempts, backoff, run_as, defined_by)
      VALUES ($1, $2, $3, $4::pg_catalog.interval, $5, $6)
      ON CONFLICT (workflow_id) DO NOTHING",
    &[TEXT, pg_sys::TEXTARRAYOID, INT4, TEXT, pg_sys::REGROLEOID, pg_sys::REGROLEOID],
);

/// A failed step's run keeps the current definition for its retries, if it has no copy yet.
static COPY_CURRENT: Statement = Statement::new(
    c"INSERT INTO workflow.sql_run (workflow_id, steps, max_attempts, backoff, run_as, defined_by)
      SELECT r.workflow_id, d.steps, d.max_attempts, d.backoff, d.run_as, d.defined_by
        FROM workflow.run r JOIN workflow.sql_workflow d ON d.name = r.name
       WHERE r.workflow_id = $1
      ON CONFLICT (workflow_id) DO NOTHING",
    &[TEXT],
);

/// Step $2 of the run's copy (or, before it has one, of the current definition of $3), its
/// role, and whether that role may run it: it exists, it is not privileged (`privileged_role`),
/// and whoever defined the workflow may still SET ROLE to it; and the definition itself, to
/// copy exactly what this step ran. And the role's search_path: its setting for this
/// database, its own, this database's, or the server's.
static PLAN: Statement = Statement::new(
    sql!("WITH def AS (
        SELECT steps, max_attempts, backoff, run_as, defined_by, true AS copied
          FROM workflow.sql_run WHERE workflow_id = $1
        UNION ALL
        SELECT steps, max_attempts, backoff, run_as, defined_by, false FROM workflow.sql_workflow
         WHERE name = $3 AND NOT EXISTS (SELECT 1 FROM workflow.sql_run WHERE workflow_id = $1))
      SELECT p.steps[$2], pg_catalog.array_length(p.steps, 1), p.run_as::pg_catalog.oid, p.run_as::text,
             CASE WHEN a.oid IS NOT NULL THEN ", privileged_role!("a.oid"), " END,
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
               $4),
             p.copied, p.steps, p.max_attempts, p.backoff::text, p.defined_by::pg_catalog.oid
        FROM def p LEFT JOIN pg_catalog.pg_roles a ON a.oid = p.run_as::pg_catalog.oid"),
    &[TEXT, INT4, TEXT, TEXT],
);

/// The server's own search_path (postgresql.conf's, or the built-in one): what a role gets that
/// neither it nor the database sets. The worker's own value may come from settings of its
/// user's, hence pg_settings. It reads every setting, so it is read once per worker and after
/// each reload (`server_search_path`).
static SERVER_SEARCH_PATH: Statement = Statement::new(
    c"SELECT CASE WHEN source IN ('default', 'configuration file', 'command line', 'environment variable')
                  THEN reset_val ELSE boot_val END
        FROM pg_catalog.pg_settings WHERE name = 'search_path'",
    &[],
);

thread_local! {
    static SERVER_PATH: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Called after a configuration reload: postgresql.conf's search_path may have changed.
pub fn forget_server_search_path() {
    SERVER_PATH.with(|p| p.borrow_mut().take());
}

fn server_search_path(c: &Conn) -> String {
    if let Some(known) = SERVER_PATH.with(|p| p.borrow().clone()) {
        return known;
    }
    let path = SERVER_SEARCH_PATH.run(c, &[]).text(0, 1).unwrap_or_else(|| "\"$user\", public".into());
    SERVER_PATH.with(|p| *p.borrow_mut() = Some(path.clone()));
    path
}

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
                (extract(epoch FROM LEAST(backoff * pg_catalog.power(2::float8, LEAST(failures - 1, 20)::float8),
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

/// What a worker shows in pg_stat_activity while it runs a step of run `id`. The id comes last,
/// so that `INTERRUPT_TARGETS` can match it whole.
fn activity(id: &str, step: i32, steps: i32) -> String {
    format!("pg_workflow: step {step} of {steps}, workflow {id}")
}

/// The SQL workers of this database running a step of run `$1` (by what they show,
/// `activity`).
static INTERRUPT_TARGETS: Statement = Statement::new(
    c"SELECT pid FROM pg_catalog.pg_stat_activity
       WHERE backend_type = 'pg_workflow sql worker' AND datname = pg_catalog.current_database()
         AND pg_catalog.starts_with(query, 'pg_workflow: step ')
         AND pg_catalog.substr(query, pg_catalog.strpos(query, ', workflow ') + 11) = $1",
    &[TEXT],
);

/// Workers to interrupt when the current transaction commits.
struct Interrupts {
    pids: RefCell<Vec<i32>>,
    callback_registered: Cell<bool>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Interrupts {}

static INTERRUPTS: Interrupts = Interrupts { pids: RefCell::new(Vec::new()), callback_registered: Cell::new(false) };

/// cancel() of run `id`: once the cancel commits, the statement of a step that is running is
/// cancelled, rather than left to run to its end (where RECORD would find the run CANCELLED
/// and roll it back anyway). A cancel that rolls back interrupts nothing.
pub fn interrupt_on_commit(c: &Conn, id: &str) {
    let targets = INTERRUPT_TARGETS.run(c, &[text_datum(id)]);
    if targets.is_empty() {
        return;
    }
    if !INTERRUPTS.callback_registered.replace(true) {
        // SAFETY: registers a guarded callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
    INTERRUPTS.pids.borrow_mut().extend((0..targets.len()).filter_map(|i| targets.int(i, 1)));
}

// SAFETY: Postgres calls it at every transaction event; it only signals our own workers.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let commit = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => true,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => false,
        _ => return,
    };
    for pid in std::mem::take(&mut *INTERRUPTS.pids.borrow_mut()) {
        if commit {
            spawn::interrupt(pid);
        }
    }
}

/// Shows in pg_stat_activity what the worker does.
fn report(activity: &str) {
    let text = std::ffi::CString::new(activity).unwrap_or_default();
    // SAFETY: the text is NUL-ended; pgstat copies it.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, text.as_ptr()) };
}

pub fn idle() {
    // SAFETY: a null text is allowed for the idle state.
    unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
}

/// The next step of run `id`, in the current transaction: check that it is still ours, run the
/// step as its role, record its checkpoint (and, after the last step, the run's end).
pub fn take_step(me: &str, id: &str, step_number: &Cell<i32>) -> Result<Stepped, Failure> {
    let plan = spi::connect(|c| plan_step(c, me, id, step_number))?;
    let Some(plan) = plan else { return Ok(Stepped::Stopped) };
    if plan.step > plan.step_count {
        // Resumed onto a definition with fewer steps than it has already recorded.
        return Ok(finish(me, id, plan.outputs_last));
    }
    report(&activity(id, plan.step, plan.step_count));
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
    stats::count(Counter::StepsRecorded);
    if plan.step == plan.step_count {
        // SAFETY: `output` came out of user_sql::run as an Out, copied out of its connection.
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
                stats::count(Counter::RunsSucceeded);
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

/// What the next step needs. None when the run is no longer this worker's to run.
fn plan_step(c: &Conn, me: &str, id: &str, step_number: &Cell<i32>) -> Result<Option<Plan>, Failure> {
    let run = RUN.run(c, &[text_datum(id), text_datum(me)]);
    if run.bool(0, 1) != Some(true) {
        return Ok(None);
    }
    let name = run.text(0, 2).unwrap_or_default();
    let step = run.int(0, 5).unwrap_or(0) + 1;
    step_number.set(step);
    let server_path = server_search_path(c);
    let plan = PLAN.run(c, &[text_datum(id), step.into_datum(), text_datum(&name), text_datum(&server_path)]);
    if plan.is_empty() {
        return Err(Failure::fatal("42704", format!("SQL workflow \"{name}\" is not defined")));
    }
    let role_name = plan.text(0, 4).unwrap_or_default();
    match (plan.bool(0, 5), plan.bool(0, 6)) {
        (None, _) => return Err(Failure::fatal("42704", format!("role \"{role_name}\" of SQL workflow \"{name}\" does not exist"))),
        (Some(true), _) => {
            let message = format!(
                "SQL workflows never run as a superuser or a role with server file or program access, and \"{role_name}\" is one now"
            );
            return Err(Failure::fatal("42501", message));
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
        // More steps will follow this one: keep the definition it ran.
        let role = plan.int(0, 3).map(|r| Oid::from(r as u32));
        let definer = plan.int(0, 12).map(|r| Oid::from(r as u32));
        let copy = [text_datum(id), plan.varlena(0, 9).map(Out::datum), plan.int(0, 10).into_datum(),
                    plan.text(0, 11).as_deref().and_then(text_datum), role.into_datum(), definer.into_datum()];
        COPY.run(c, &copy);
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
pub fn record_failure(me: &str, id: &str, step: i32, failure: &Failure) {
    spi::connect(|c| {
        let (i, m) = (text_datum(id), text_datum(me));
        user_sql::forget_session_state(); // what the failed step left that its rollback did not undo
        if !failure.fatal {
            COPY_CURRENT.run(c, &[i]); // the retry runs this definition
        }
        let attempt = if failure.fatal { None } else { Some(FAILED_ATTEMPT.run(c, &[i, step.into_datum()])) };
        let attempts = attempt.as_ref().and_then(|a| a.int(0, 1)).unwrap_or(1);
        let error = pgrx::JsonB(failure.to_json(step, attempts)).into_datum();
        let ended = TIMED_OUT.run(c, &[i, error, m]);
        if !ended.is_empty() {
            workflow::announce(id, ended.text(0, 1).as_deref());
            stats::count(Counter::RunsCancelled);
            return;
        }
        if let Some(a) = &attempt {
            if let (Some(failures), Some(max)) = (a.int(0, 1), a.int(0, 2)) {
                if failures < max {
                    let delayed = RETRY_LATER.run(c, &[i, error, a.int8(0, 3).into_datum(), m]);
                    if let Some(queue) = delayed.text(0, 1) {
                        // Dequeuers (the SQL workers too) must learn the new due time.
                        queue_cache::invalidate_on_commit(&queue);
                    }
                    return;
                }
            }
        }
        let ended = GIVE_UP.run(c, &[i, error, m]);
        if !ended.is_empty() {
            workflow::announce(id, ended.text(0, 1).as_deref());
            stats::count(Counter::RunsFailed);
        }
    });
}
