//! Every way a call can be rejected, each with a documented SQLSTATE.
//!
//! pgrx can only raise the standard SQLSTATEs it knows as `PgSqlErrorCode`; our own class `WF`
//! would come out as XX000. So `raise` calls Postgres' `ereport` machinery itself, the same way
//! pgrx's `do_ereport` does, and it is only ever called from the outermost frame of a SQL entry
//! point (see `fmgr.rs`), after all Rust values have been dropped.

use std::ffi::{c_char, c_int, CString};
use std::fmt;

/// A rejected call. The README's error table lists the same codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowError {
    NullArgument { arg: &'static str },
    EmptyArgument { arg: &'static str },
    TooLong { arg: &'static str, bytes: usize, limit: usize },
    InvalidStep { step: i32 },
    NegativeInterval { arg: &'static str },
    ZeroInterval { arg: &'static str },
    PayloadTooLarge { arg: &'static str, bytes: usize, limit: usize },
    UnknownWorkflow { workflow_id: String },
    UnknownExecutor { executor_id: String },
    NameMismatch { workflow_id: String, existing: String, requested: String },
    Nondeterministic { workflow_id: String, step: i32, recorded: String, requested: String },
    Cancelled { workflow_id: String },
    DeadlineExceeded { workflow_id: String },
    NotRunning { workflow_id: String, status: String },
    NeedsReadCommitted { function: &'static str },
    InvalidLimit { arg: &'static str, value: i64 },
    OutOfRange { arg: &'static str, value: i64, min: i64, max: i64 },
    InvalidOption { arg: &'static str, value: String, allowed: &'static str },
    RateNeedsBoth,
    UnknownQueue { queue: String },
    QueueExists { queue: String },
    QueueInUse { queue: String, active: i64 },
    DefaultQueue,
    Duplicate { queue: String, deduplication_id: String, workflow_id: String },
    InvalidCron { cron: String, reason: String },
    UnknownTimezone { timezone: String },
    UnknownSchedule { schedule: String },
    NotResumable { workflow_id: String, status: String },
    ForkBeyondLastStep { workflow_id: String, from_step: i32, last_step: i32 },
    RunInUse { workflow_id: String, status: String },
    NotOwner { workflow_id: String, owner: Option<String>, executor_id: String },
    CronNeverFires { cron: String },
    QueueScheduled { queue: String, schedule: String },
    PreparedTransaction,
    NoSteps,
    EmptyStep { step: usize },
    StepSyntax { step: usize, message: String },
    StepControlsTransaction { step: usize },
    UnknownRole { role: String },
    SuperuserRunAs { role: String },
    CannotSetRole { caller: String, role: String },
    ReservedAppVersion,
    RestrictedDefine,
}

pub type Result<T> = std::result::Result<T, WorkflowError>;

impl WorkflowError {
    /// The five-character SQLSTATE a client sees.
    pub fn sqlstate(&self) -> &'static str {
        use WorkflowError::*;
        match self {
            NullArgument { .. } => "22004",
            EmptyArgument { .. } | TooLong { .. } | InvalidStep { .. } | NegativeInterval { .. } | ZeroInterval { .. } => "22023",
            InvalidLimit { .. } | RateNeedsBoth => "22023",
            OutOfRange { .. } | InvalidOption { .. } => "22023",
            UnknownQueue { .. } => "WF005",
            QueueExists { .. } => "42710",
            QueueInUse { .. } => "55006",
            DefaultQueue => "55000",
            Duplicate { .. } => "23505",
            InvalidCron { .. } | UnknownTimezone { .. } => "22023",
            UnknownSchedule { .. } => "WF006",
            NotResumable { .. } => "55000",
            ForkBeyondLastStep { .. } => "22023",
            RunInUse { .. } => "55006",
            PayloadTooLarge { .. } => "54000",
            UnknownWorkflow { .. } => "WF001",
            Nondeterministic { .. } => "WF002",
            Cancelled { .. } | DeadlineExceeded { .. } => "WF003",
            UnknownExecutor { .. } => "WF004",
            NameMismatch { .. } => "23505",
            NotRunning { .. } => "55000",
            NeedsReadCommitted { .. } => "0A000",
            NotOwner { .. } => "WF007",
            CronNeverFires { .. } => "22023",
            QueueScheduled { .. } => "55006",
            PreparedTransaction => "0A000",
            NoSteps | EmptyStep { .. } | ReservedAppVersion => "22023",
            StepSyntax { .. } => "42601",
            StepControlsTransaction { .. } => "0A000",
            UnknownRole { .. } => "42704",
            SuperuserRunAs { .. } | CannotSetRole { .. } | RestrictedDefine => "42501",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        use WorkflowError::*;
        match self {
            UnknownExecutor { .. } => Some("Call workflow.register_executor() first."),
            UnknownQueue { .. } => Some("Create it with workflow.create_queue(); see workflow.queues."),
            QueueInUse { .. } => Some("Wait for its runs to end, or cancel them, then drop it."),
            Duplicate { .. } => Some("The run with this deduplication_id is still active; its id is in the message."),
            Nondeterministic { .. } => {
                Some("The workflow body must call the same steps in the same order on replay.")
            }
            Cancelled { .. } | DeadlineExceeded { .. } => Some("Stop executing this workflow."),
            NotOwner { .. } => Some("Another executor has claimed this run since this executor's lease expired: stop executing it."),
            QueueScheduled { .. } => Some("Unschedule the schedules that fire into this queue, or move them to another queue, first."),
            SuperuserRunAs { .. } => Some("Give run_as a role that holds exactly the privileges the steps need."),
            CannotSetRole { .. } => Some("GRANT the run_as role to the role that defines the workflow."),
            StepControlsTransaction { .. } => Some("Each step already runs in its own transaction, committed with its checkpoint."),
            PayloadTooLarge { .. } => Some("Raise workflow.max_payload_size, or store the data elsewhere and pass a reference."),
            _ => None,
        }
    }
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use WorkflowError::*;
        match self {
            NullArgument { arg } => write!(f, "{arg} must not be NULL"),
            EmptyArgument { arg } => write!(f, "{arg} must not be empty"),
            TooLong { arg, bytes, limit } => write!(f, "{arg} is {bytes} bytes long; the limit is {limit} bytes"),
            InvalidStep { step } => write!(f, "step must be 1 or more, got {step}"),
            NegativeInterval { arg } => write!(f, "{arg} must not be negative"),
            ZeroInterval { arg } => write!(f, "{arg} must be longer than zero"),
            PayloadTooLarge { arg, bytes, limit } => {
                write!(f, "{arg} is {bytes} bytes, over workflow.max_payload_size ({limit} bytes)")
            }
            UnknownWorkflow { workflow_id } => write!(f, "workflow \"{workflow_id}\" does not exist"),
            UnknownExecutor { executor_id } => write!(f, "executor \"{executor_id}\" is not registered"),
            NameMismatch { workflow_id, existing, requested } => write!(
                f,
                "workflow_id \"{workflow_id}\" is already used by a run of \"{existing}\", not \"{requested}\""
            ),
            Nondeterministic { workflow_id, step, recorded, requested } => write!(
                f,
                "nondeterministic workflow \"{workflow_id}\": step {step} was recorded as \"{recorded}\", now called \"{requested}\""
            ),
            Cancelled { workflow_id } => write!(f, "workflow \"{workflow_id}\" is cancelled"),
            DeadlineExceeded { workflow_id } => {
                write!(f, "workflow \"{workflow_id}\" has passed its timeout deadline")
            }
            NotRunning { workflow_id, status } => {
                write!(f, "workflow \"{workflow_id}\" is {status}, not PENDING")
            }
            InvalidLimit { arg, value } => write!(f, "{arg} must be 1 or more, got {value}"),
            OutOfRange { arg, value, min, max } => write!(f, "{arg} must be between {min} and {max}, got {value}"),
            InvalidOption { arg, value, allowed } => write!(f, "{arg} must be one of {allowed}, got \"{value}\""),
            RateNeedsBoth => write!(f, "rate_limit and rate_period must be given together"),
            UnknownQueue { queue } => write!(f, "queue \"{queue}\" does not exist"),
            QueueExists { queue } => write!(f, "queue \"{queue}\" already exists"),
            QueueInUse { queue, active } => {
                write!(f, "queue \"{queue}\" still holds {active} active runs")
            }
            DefaultQueue => write!(f, "the queue \"default\" cannot be dropped"),
            Duplicate { queue, deduplication_id, workflow_id } => write!(
                f,
                "deduplication_id \"{deduplication_id}\" is taken in queue \"{queue}\" by active workflow \"{workflow_id}\""
            ),
            InvalidCron { cron, reason } => write!(f, "invalid cron expression \"{cron}\": {reason}"),
            UnknownTimezone { timezone } => write!(f, "unknown time zone \"{timezone}\" (use an IANA name)"),
            UnknownSchedule { schedule } => write!(f, "schedule \"{schedule}\" does not exist"),
            NotResumable { workflow_id, status } => write!(
                f,
                "workflow \"{workflow_id}\" is {status}; only CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED runs resume"
            ),
            ForkBeyondLastStep { workflow_id, from_step, last_step } => write!(
                f,
                "cannot fork workflow \"{workflow_id}\" from step {from_step}: its last recorded step is {last_step}"
            ),
            RunInUse { workflow_id, status } => {
                write!(f, "workflow \"{workflow_id}\" is {status}; cancel it before deleting it")
            }
            NotOwner { workflow_id, owner: Some(owner), executor_id } => write!(
                f,
                "workflow \"{workflow_id}\" is owned by executor \"{owner}\", not \"{executor_id}\""
            ),
            NotOwner { workflow_id, owner: None, executor_id } => write!(
                f,
                "workflow \"{workflow_id}\" was taken over by an anonymous start: \"{executor_id}\" no longer owns it"
            ),
            CronNeverFires { cron } => write!(f, "cron expression \"{cron}\" never fires"),
            QueueScheduled { queue, schedule } => {
                write!(f, "queue \"{queue}\" is used by schedule \"{schedule}\"")
            }
            PreparedTransaction => write!(
                f,
                "cannot PREPARE a transaction that changed pg_workflow state: its wake-ups and cache updates happen at COMMIT"
            ),
            NoSteps => write!(f, "steps must hold at least one SQL statement"),
            EmptyStep { step } => write!(f, "step {step} holds no SQL statement"),
            StepSyntax { step, message } => write!(f, "step {step} does not parse: {message}"),
            StepControlsTransaction { step } => {
                write!(f, "step {step} controls the transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...)")
            }
            UnknownRole { role } => write!(f, "role \"{role}\" does not exist"),
            SuperuserRunAs { role } => write!(
                f,
                "SQL workflows never run as a superuser or a role with pg_execute_server_program, pg_read_server_files or pg_write_server_files, and \"{role}\" is one: pass run_as"
            ),
            RestrictedDefine => write!(f, "define() cannot run within a security-restricted operation"),
            CannotSetRole { caller, role } => write!(f, "role \"{caller}\" cannot SET ROLE to \"{role}\""),
            ReservedAppVersion => write!(
                f,
                "app_version \"{}\" is reserved for the SQL workers",
                crate::sql_workflow::APP_VERSION
            ),
            NeedsReadCommitted { function } => {
                write!(f, "{function}() needs READ COMMITTED isolation to see other sessions' commits")
            }
        }
    }
}

/// Encodes a five-character SQLSTATE the way Postgres' MAKE_SQLSTATE macro does.
pub fn make_sqlstate(code: &str) -> c_int {
    code.bytes()
        .enumerate()
        .map(|(i, ch)| (((ch as c_int) - ('0' as c_int)) & 0x3F) << (6 * i))
        .sum()
}

// Postgres' error API; pgrx keeps its own declarations private.
// SAFETY: these are the C signatures of elog.h in PostgreSQL 15.
unsafe extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}

/// Raises `err` as an ERROR. Never returns: Postgres longjmps to the caller's error handler.
///
/// # Safety
/// Call only from the outermost Rust frame of a function Postgres called, with nothing left
/// whose destructor matters: the longjmp skips every Rust frame above the handler.
pub unsafe fn raise(err: WorkflowError, function: &std::ffi::CStr) -> ! {
    let code = make_sqlstate(err.sqlstate());
    let message = CString::new(err.to_string().replace('\0', "")).unwrap_or_default();
    let hint = err.hint().map(|h| CString::new(h).unwrap_or_default());
    drop(err);
    // SAFETY: the ereport sequence of elog.h; the format is "%s" with one C string argument.
    unsafe {
        if errstart(pgrx::pg_sys::elog::PgLogLevel::ERROR as c_int, std::ptr::null()) {
            errcode(code);
            // errmsg/errhint copy their text into the error context, so ours can go now.
            errmsg(c"%s".as_ptr(), message.as_ptr());
            if let Some(h) = &hint {
                errhint(c"%s".as_ptr(), h.as_ptr());
            }
            drop(message);
            drop(hint);
            errfinish(c"pg_workflow".as_ptr(), 0, function.as_ptr());
        }
        unreachable!("errfinish returned from an ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_encoding_matches_postgres() {
        use pgrx::pg_sys::errcodes::PgSqlErrorCode::*;
        assert_eq!(make_sqlstate("23505"), ERRCODE_UNIQUE_VIOLATION as c_int);
        assert_eq!(make_sqlstate("22023"), ERRCODE_INVALID_PARAMETER_VALUE as c_int);
        assert_eq!(make_sqlstate("00000"), 0);
    }

    #[test]
    fn messages_name_the_bad_value() {
        let e = WorkflowError::UnknownWorkflow { workflow_id: "abc".into() };
        assert_eq!(e.to_string(), "workflow \"abc\" does not exist");
        assert_eq!(e.sqlstate(), "WF001");
        let e = WorkflowError::InvalidStep { step: 0 };
        assert!(e.to_string().contains("got 0"));
    }
}
