//! Running a user's SQL as a user: the one place where our code leaves the pinned
//! `pg_catalog` search path (`spi.rs`) on purpose.
//!
//! A SQL workflow's step runs as its `run_as` role the way REFRESH MATERIALIZED VIEW runs a
//! view's query as its owner: the current user is switched with SECURITY_LOCAL_USERID_CHANGE,
//! which makes SET ROLE, RESET ROLE and SET SESSION AUTHORIZATION fail, and
//! SECURITY_RESTRICTED_OPERATION, which refuses what would run the role's code later, after the
//! worker's own user is back: deferred triggers and cursors WITH HOLD (both run at COMMIT), and
//! temporary objects. So a step cannot climb back to the worker's superuser. The search_path is
//! the role's own with `pg_temp` last. Every setting the step changes, with SET or SET LOCAL,
//! is rolled back when it ends; its prepared statements, session advisory locks and LISTENs are
//! dropped before each step and after a failed one (`forget_session_state`): nothing a step
//! leaves in the worker's session reaches the next step, which may belong to another role.

use crate::spi::Out;
use pgrx::pg_sys::{self, Datum, Oid};
use std::ffi::{c_int, CStr, CString};

// Postgres' timeout API (utils/timeout.h), which pgrx does not bind.
// SAFETY: the C signatures of PostgreSQL 15's timeout.h; TimeoutId is a C enum (an int).
unsafe extern "C-unwind" {
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
}
// SAFETY: the C signature of PostgreSQL 15's commands/async.h.
unsafe extern "C-unwind" {
    fn Async_UnlistenAll();
}
/// STATEMENT_TIMEOUT in PostgreSQL 15's `TimeoutId`.
const STATEMENT_TIMEOUT: c_int = 3;

/// Turns off the statement timer; the error path calls it too (an abort does not).
pub fn disarm_timeout() {
    // SAFETY: disabling a timeout that is not armed is a no-op.
    unsafe { disable_timeout(STATEMENT_TIMEOUT, false) };
}

/// What runs one step.
pub struct Step<'a> {
    pub sql: &'a str,
    pub role: Oid,
    /// The role's search_path setting, without `pg_temp`.
    pub search_path: &'a str,
    /// $1 and $2, both jsonb.
    pub input: Option<Datum>,
    pub outputs: Option<Datum>,
    /// The statement timer (the run's deadline), if any.
    pub time_left_ms: Option<i64>,
}

/// Runs `step` in the current transaction and returns its output: the first row of its last
/// statement as jsonb (one column: its value; several: an object), or None without a row.
/// An error raises, and the caller's transaction abort undoes the role switch, the settings
/// and the SPI connection, as it does for a failing SECURITY DEFINER function.
pub fn run(step: &Step) -> Option<Out> {
    let sql = CString::new(step.sql).unwrap_or_default();
    let path = CString::new(format!("{}, pg_temp", step.search_path)).unwrap_or_default();
    let (mut user, mut context): (Oid, c_int) = (Oid::INVALID, 0);
    // SAFETY: each call below is paired on the normal path and undone by the transaction abort
    // on the error path (user id, GUC nest level, SPI connection). The argument arrays outlive
    // SPI_execute_with_args, which copies what it keeps.
    unsafe {
        forget_session_state();
        let nest = pg_sys::NewGUCNestLevel();
        set(c"search_path", &path);
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let restricted = (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as c_int;
        pg_sys::SetUserIdAndSecContext(step.role, context | restricted);
        pg_sys::SPI_connect();
        if let Some(ms) = step.time_left_ms {
            enable_timeout_after(STATEMENT_TIMEOUT, ms.clamp(1, i32::MAX as i64) as c_int);
        }
        let mut types = [pg_sys::JSONBOID, pg_sys::JSONBOID];
        let mut values = [step.input.unwrap_or(Datum::from(0)), step.outputs.unwrap_or(Datum::from(0))];
        let nulls = [null_flag(step.input), null_flag(step.outputs)];
        let rc = pg_sys::SPI_execute_with_args(sql.as_ptr(), 2, types.as_mut_ptr(), values.as_mut_ptr(), nulls.as_ptr(), false, 0);
        assert!(rc >= 0, "SPI_execute_with_args failed ({rc})");
        // Still as the role: to_jsonb may call the output function or JSON cast of a user type.
        let output = first_row_as_jsonb();
        disarm_timeout();
        pg_sys::SPI_finish();
        pg_sys::SetUserIdAndSecContext(user, context);
        pg_sys::AtEOXact_GUC(false, nest);
        forget_session_state();
        output
    }
}

fn null_flag(d: Option<Datum>) -> std::ffi::c_char {
    if d.is_some() { b' ' as _ } else { b'n' as _ }
}

/// Sets a setting until the nest level is popped, as a function's SET clause does.
///
/// # Safety
/// Inside a transaction, after `NewGUCNestLevel`.
unsafe fn set(name: &CStr, value: &CStr) {
    // SAFETY: see above; both strings are NUL-ended and copied by the GUC code.
    unsafe {
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// The first row of the last SPI result as jsonb, copied out of the connection.
///
/// # Safety
/// Inside the SPI connection that ran the statement.
unsafe fn first_row_as_jsonb() -> Option<Out> {
    // SAFETY: SPI_tuptable and SPI_processed describe the last result of this connection;
    // its tuples live until SPI_finish, which comes after the copy below.
    unsafe {
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || pg_sys::SPI_processed == 0 {
            return None;
        }
        let tupdesc = (*table).tupdesc;
        let row = *(*table).vals;
        let (value, type_oid) = if (*tupdesc).natts == 1 {
            let mut isnull = false;
            let value = pg_sys::SPI_getbinval(row, tupdesc, 1, &mut isnull);
            if isnull {
                return None;
            }
            (value, pg_sys::SPI_gettypeid(tupdesc, 1))
        } else {
            // Several columns: the row as a record of its column names, hence an object.
            pg_sys::BlessTupleDesc(tupdesc);
            (pg_sys::heap_copy_tuple_as_datum(row, tupdesc), pg_sys::RECORDOID)
        };
        let mut types = [type_oid];
        let mut values = [value];
        let nulls = [b' ' as std::ffi::c_char];
        let rc = pg_sys::SPI_execute_with_args(
            c"SELECT pg_catalog.to_jsonb($1)".as_ptr(),
            1,
            types.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_ptr(),
            false, // read-only execution would need an active snapshot, which a worker lacks
            1,
        );
        assert!(rc >= 0 && pg_sys::SPI_processed == 1, "to_jsonb failed ({rc})");
        let converted = (*pg_sys::SPI_tuptable).vals.read();
        let mut isnull = false;
        let jsonb = pg_sys::SPI_getbinval(converted, (*pg_sys::SPI_tuptable).tupdesc, 1, &mut isnull);
        (!isnull).then(|| Out::transferred(pg_sys::SPI_datumTransfer(jsonb, false, -1)))
    }
}

/// Drops what a step may have left in the session besides settings, which a rollback does not
/// undo: prepared statements, session-level advisory locks, LISTENs (DISCARD ALL's share of it;
/// temporary objects and held cursors cannot be made in a step). Called before each step, after
/// a successful one, and (by the worker) after a failed one.
pub fn forget_session_state() {
    // SAFETY: the calls DEALLOCATE ALL, pg_advisory_unlock_all and UNLISTEN * make; the worker
    // calls this inside a transaction, as its own user.
    unsafe {
        pg_sys::DropAllPreparedStatements();
        pg_sys::LockReleaseSession(pg_sys::USER_LOCKMETHOD as _);
        Async_UnlistenAll();
    }
}
