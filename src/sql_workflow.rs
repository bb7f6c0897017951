//! SQL workflows: `define` and `undefine`. A SQL workflow's steps are SQL statements that the
//! server's SQL workers (`sql_worker.rs`) run, each in its own transaction with its checkpoint,
//! as a role that is never a superuser.
//!
//! Its runs are ordinary runs marked `app_version = APP_VERSION`: enqueue marks them (from the
//! definition), recovery, resume and fork keep the mark, and only the SQL workers claim them,
//! while no application executor may register with that version. So runs of both kinds share
//! queues, limits, leases and views, and each kind is claimed only by what can run it.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args};
use crate::spi::{self, Conn, Statement, INT4, INTERVAL, TEXT};
use crate::{sql, sql_function};
use crate::tx_cache::{self, TxCache};
use pgrx::pg_sys::{self, Datum, Oid, OIDOID as OID, REGROLEOID as REGROLE, TEXTARRAYOID as TEXT_ARRAY};
use pgrx::{FromDatum, IntoDatum};

/// The app_version that marks the runs of SQL workflows, for SQL text.
#[macro_export]
macro_rules! sql_app_version {
    () => {
        "pg_workflow:sql"
    };
}

/// The app_version that marks the runs of SQL workflows.
pub const APP_VERSION: &str = sql_app_version!();

/// Whether a role may not be a run_as: a superuser, or a role with the server's files or
/// programs at hand (which a superuser could grant to anyone, and which reach the OS).
#[macro_export]
macro_rules! privileged_role {
    ($oid:literal) => {
        concat!(
            "(rolsuper OR pg_catalog.pg_has_role(", $oid, ", 'pg_execute_server_program', 'USAGE')
              OR pg_catalog.pg_has_role(", $oid, ", 'pg_read_server_files', 'USAGE')
              OR pg_catalog.pg_has_role(", $oid, ", 'pg_write_server_files', 'USAGE'))"
        )
    };
}

static ROLE: Statement = Statement::new(
    sql!("SELECT oid, ", privileged_role!("oid"), " FROM pg_catalog.pg_roles WHERE rolname = $1"),
    &[TEXT],
);

static ROLE_NAME: Statement = Statement::new(
    sql!("SELECT rolname::text, ", privileged_role!("oid"), " FROM pg_catalog.pg_roles WHERE oid = $1"),
    &[OID],
);

/// Who owns the extension: define() writes as that role.
static OWNER: Statement =
    Statement::new(c"SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow'", &[]);

static MEMBER: Statement = Statement::new(c"SELECT pg_catalog.pg_has_role($1, $2, 'MEMBER')", &[OID, OID]);

static UPSERT: Statement = Statement::new(
    c"INSERT INTO workflow.sql_workflow AS w (name, steps, max_attempts, backoff, timeout, run_as, defined_by)
      VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (name) DO UPDATE
         SET steps = EXCLUDED.steps, max_attempts = EXCLUDED.max_attempts, backoff = EXCLUDED.backoff,
             timeout = EXCLUDED.timeout, run_as = EXCLUDED.run_as, defined_by = EXCLUDED.defined_by,
             defined_at = now()",
    &[TEXT, TEXT_ARRAY, INT4, INTERVAL, INTERVAL, REGROLE, REGROLE],
);

static DELETE: Statement =
    Statement::new(c"DELETE FROM workflow.sql_workflow WHERE name = $1 RETURNING name", &[TEXT]);

static HAS_SQL_RUNS: Statement =
    Statement::new(c"SELECT pg_catalog.to_regclass('workflow.sql_run') IS NOT NULL", &[]);

static FORGET_RUNS: Statement =
    Statement::new(c"DELETE FROM workflow.sql_run WHERE workflow_id = ANY ($1)", &[pg_sys::TEXTARRAYOID]);

/// What a backend knows about its database's schema.
struct Schema {
    has_sql_workflows: bool,
}

impl tx_cache::Entry for Schema {
    fn key(&self) -> &str {
        ""
    }
}

static SCHEMA: TxCache<Schema> = TxCache::new(1);

/// Whether this database's schema has SQL workflows yet: the library serves an older schema
/// until ALTER EXTENSION UPDATE. Cached until a relcache invalidation, which the update's new
/// tables send (`tx_cache`).
pub fn schema_has_them(c: &Conn) -> bool {
    if let Some(known) = SCHEMA.with("", |s| s.has_sql_workflows) {
        return known;
    }
    let has_sql_workflows = HAS_SQL_RUNS.run(c, &[]).bool(0, 1) == Some(true);
    SCHEMA.learn(Schema { has_sql_workflows });
    has_sql_workflows
}

/// Drops the definitions that runs `ids` copied: deleted runs leave nothing behind, and a
/// resumed run takes the current definition (and a fresh count of attempts).
pub fn forget_runs(c: &Conn, ids: Option<Datum>) {
    if schema_has_them(c) {
        FORGET_RUNS.run(c, &[ids]);
    }
}

/// A role that may be the run_as of a SQL workflow: it exists and is not a superuser.
fn role_oid(c: &Conn, role: &str) -> Result<Oid> {
    let found = ROLE.run(c, &[text_datum(role)]);
    let Some(oid) = found.int(0, 1) else { return Err(WorkflowError::UnknownRole { role: role.into() }) };
    if found.bool(0, 2) == Some(true) {
        return Err(WorkflowError::SuperuserRunAs { role: role.into() });
    }
    Ok(Oid::from(oid as u32))
}

/// Checks every step: each must parse and hold at least one statement, none of which may
/// control the transaction. Only the syntax is checked: a step may use a table that an
/// earlier step creates.
pub fn check_steps(steps: &[Option<String>]) -> Result<()> {
    if steps.is_empty() {
        return Err(WorkflowError::NoSteps);
    }
    for (i, step) in steps.iter().enumerate() {
        let number = i + 1;
        let Some(sql) = step else { return Err(WorkflowError::EmptyStep { step: number }) };
        let sql = std::ffi::CString::new(sql.as_str()).map_err(|_| WorkflowError::StepSyntax {
            step: number,
            message: "it contains a NUL byte".into(),
        })?;
        let parsed = spi::catching(|| (parse(&sql), false));
        match parsed {
            Err(caught) => return Err(WorkflowError::StepSyntax { step: number, message: caught.message }),
            Ok(Parsed::Empty) => return Err(WorkflowError::EmptyStep { step: number }),
            Ok(Parsed::ControlsTransaction) => return Err(WorkflowError::StepControlsTransaction { step: number }),
            Ok(Parsed::Fine) => {}
        }
    }
    Ok(())
}

enum Parsed {
    Fine,
    Empty,
    ControlsTransaction,
}

fn parse(sql: &std::ffi::CStr) -> Parsed {
    // SAFETY: raw_parser reads the NUL-ended text and returns a List of RawStmt (NIL, a null
    // pointer, for no statement), allocated in the current memory context, which the caller's
    // subtransaction frees. A syntax error raises, and the caller catches it.
    unsafe {
        let list = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if list.is_null() || (*list).length == 0 {
            return Parsed::Empty;
        }
        for i in 0..(*list).length as usize {
            let raw = (*(*list).elements.add(i)).ptr_value.cast::<pg_sys::RawStmt>();
            if (*(*raw).stmt).type_ == pg_sys::NodeTag::T_TransactionStmt {
                return Parsed::ControlsTransaction;
            }
        }
        Parsed::Fine
    }
}

/// `define(name, steps, max_attempts, backoff, timeout, run_as)`: creates or replaces a SQL
/// workflow. Runs that have started keep the steps they started with.
///
/// It is SECURITY INVOKER, unlike the other functions: who may run steps as whom is decided by
/// the current user, the one that the SQL calling it runs as (a SECURITY DEFINER function's
/// owner, say), never by the session's role. It refuses to run inside a security-restricted
/// operation (an index expression, a materialized view), where the current user is not the one
/// who asked. Only the write itself runs as the extension's owner.
fn define(args: &Args) -> Result<()> {
    let name = args.name(0, "name")?;
    let steps = args.datum(1).ok_or(WorkflowError::NullArgument { arg: "steps" })?;
    // SAFETY: argument 1 is a text[]; from_datum copies its elements.
    let steps = unsafe { Vec::<Option<String>>::from_datum(steps, false) }.unwrap_or_default();
    let max_attempts = args.int(2).ok_or(WorkflowError::NullArgument { arg: "max_attempts" })?;
    if max_attempts < 1 {
        return Err(WorkflowError::InvalidLimit { arg: "max_attempts", value: max_attempts as i64 });
    }
    let (backoff, _) = args.interval(3, "backoff")?.ok_or(WorkflowError::NullArgument { arg: "backoff" })?;
    let timeout = match args.interval(4, "timeout")? {
        Some((_, 0)) => return Err(WorkflowError::ZeroInterval { arg: "timeout" }),
        t => t.map(|(d, _)| d),
    };
    let run_as = args.optional_name(5, "run_as")?;
    check_steps(&steps)?;
    // SAFETY: reads two globals of this backend.
    let (caller, restricted) = unsafe { (pg_sys::GetUserId(), pg_sys::InSecurityRestrictedOperation()) };
    if restricted {
        return Err(WorkflowError::RestrictedDefine);
    }
    spi::connect(|c| {
        let me = ROLE_NAME.run(c, &[caller.into_datum()]);
        let caller_name = me.text(0, 1).unwrap_or_default();
        let role = match &run_as {
            Some(role) => role_oid(c, role)?,
            None if me.bool(0, 2) == Some(true) => return Err(WorkflowError::SuperuserRunAs { role: caller_name }),
            None => caller,
        };
        let role_name = run_as.clone().unwrap_or_else(|| caller_name.clone());
        if MEMBER.run(c, &[caller.into_datum(), role.into_datum()]).bool(0, 1) != Some(true) {
            return Err(WorkflowError::CannotSetRole { caller: caller_name, role: role_name });
        }
        let owner = Oid::from(OWNER.run(c, &[]).int(0, 1).unwrap_or(0) as u32);
        let steps: Vec<Option<String>> = steps.clone();
        let (mut user, mut context) = (Oid::INVALID, 0);
        // SAFETY: switches to the extension's owner for the one write below, as a SECURITY
        // DEFINER function would, and back; an error in between is undone by the
        // (sub)transaction abort, which restores the user.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
            pg_sys::SetUserIdAndSecContext(owner, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
        }
        UPSERT.run(c, &[
            text_datum(&name),
            steps.into_datum(),
            max_attempts.into_datum(),
            Some(backoff),
            timeout,
            role.into_datum(),
            caller.into_datum(),
        ]);
        // SAFETY: restores what was saved above.
        unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
        Ok(())
    })
}

/// `undefine(name)`: removes a SQL workflow; false if there was none. Its runs that started
/// finish with the steps they copied; those still waiting for their first claim end ERROR.
fn undefine(args: &Args) -> Result<bool> {
    let name = args.name(0, "name")?;
    spi::connect(|c| Ok(DELETE.run(c, &[text_datum(&name)]).len() == 1))
}

sql_function!(wf_define, pg_finfo_wf_define, define);
sql_function!(wf_undefine, pg_finfo_wf_undefine, undefine);
