//! A thin layer over SPI for statements that run on every call.
//!
//! Each `Statement` is prepared once per backend and kept (`SPI_keepplan`), so the hot path pays
//! neither parse nor plan. Plans are always generic: the plan cache would otherwise re-plan
//! every call of a statement whose generic plan it rates worse than a custom one, and every
//! statement here is written so that its generic plan is the right one. Plans survive
//! DROP/CREATE EXTENSION: the plan cache re-analyses the kept source text when the tables it
//! names change.
//!
//! Two rules are enforced here rather than remembered at every call site:
//! - **Nothing made inside a connection outlives it.** `connect` lends a `&Conn` for a closure
//!   whose result cannot borrow from it; `Rows` and everything read from them borrow the
//!   connection. What must leave is copied out: Rust values (`String`, numbers), or `Out`,
//!   a Datum copied into the caller's memory context with `SPI_datumTransfer`.
//! - **Every statement resolves names in `pg_catalog` only.** While a connection is open, an
//!   override search path of just `pg_catalog` is pushed, so a function or operator planted in
//!   `public` (or anywhere on the caller's search_path) can never win overload resolution, at
//!   prepare time or when the plan cache re-analyses a kept plan. Our own objects are always
//!   schema-qualified (`workflow.`).

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::{FromDatum, PgTryBuilder};
use std::cell::Cell;
use std::ffi::CStr;
use std::marker::PhantomData;

pub use pg_sys::{INT4OID as INT4, INTERVALOID as INTERVAL, JSONBOID as JSONB, TEXTOID as TEXT};

/// A `&'static CStr` made of string literals (and macros that expand to them).
#[macro_export]
macro_rules! sql {
    ($($part:expr),+ $(,)?) => {
        match ::std::ffi::CStr::from_bytes_with_nul(concat!($($part),+, "\0").as_bytes()) {
            Ok(sql) => sql,
            Err(_) => panic!("SQL text must not contain NUL"),
        }
    };
}

/// One SQL statement with fixed parameter types, planned once per backend.
pub struct Statement {
    sql: &'static CStr,
    argtypes: &'static [Oid],
    plan: Cell<pg_sys::SPIPlanPtr>,
}

// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Statement {}

impl Statement {
    pub const fn new(sql: &'static CStr, argtypes: &'static [Oid]) -> Self {
        Statement { sql, argtypes, plan: Cell::new(std::ptr::null_mut()) }
    }

    fn plan(&self) -> pg_sys::SPIPlanPtr {
        if self.plan.get().is_null() {
            // SAFETY: called inside an SPI connection (we hold a `Conn`); the text is NUL-ended
            // and the argument types outlive the call.
            unsafe {
                let plan = pg_sys::SPI_prepare_cursor(
                    self.sql.as_ptr(),
                    self.argtypes.len() as i32,
                    self.argtypes.as_ptr().cast_mut(),
                    pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
                );
                assert!(!plan.is_null(), "SPI_prepare failed for {:?}", self.sql);
                pg_sys::SPI_keepplan(plan);
                self.plan.set(plan);
            }
        }
        self.plan.get()
    }

    /// Runs the statement. `args` are in parameter order, None for NULL.
    pub fn run<'c>(&self, _conn: &'c Conn, args: &[Option<Datum>]) -> Rows<'c> {
        debug_assert_eq!(args.len(), self.argtypes.len());
        let mut values: Vec<Datum> = args.iter().map(|a| a.unwrap_or(Datum::from(0))).collect();
        let nulls: Vec<std::ffi::c_char> =
            args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: `_conn` proves the connection is open; values and nulls match the plan's
        // argument count, and SPI copies what it keeps.
        unsafe {
            let rc = pg_sys::SPI_execute_plan(self.plan(), values.as_mut_ptr(), nulls.as_ptr(), false, 0);
            assert!(rc >= 0, "SPI_execute_plan failed ({rc}) for {:?}", self.sql);
            Rows { count: pg_sys::SPI_processed as usize, table: pg_sys::SPI_tuptable, _conn: PhantomData }
        }
    }
}

/// An open SPI connection, only ever lent out by `connect`.
pub struct Conn {
    _not_send: PhantomData<*mut ()>,
}

/// The override search path: `pg_catalog` and nothing else (no temp schema either).
fn catalog_only() -> pg_sys::OverrideSearchPath {
    pg_sys::OverrideSearchPath {
        schemas: std::ptr::null_mut(),
        addCatalog: true,
        addTemp: false,
        generation: 0,
    }
}

/// Runs `f` inside an SPI connection with names pinned to `pg_catalog`. `f`'s result cannot
/// borrow the connection: copy out what must outlive it (see the module comment).
pub fn connect<R>(f: impl for<'c> FnOnce(&'c Conn) -> R) -> R {
    connect_with(0, |c| f(c))
}

/// `connect` for a procedure that commits between batches (`SPI_OPT_NONATOMIC`).
pub fn connect_nonatomic<R>(f: impl for<'c> FnOnce(&'c mut Conn) -> R) -> R {
    connect_with(pg_sys::SPI_OPT_NONATOMIC as i32, f)
}

fn connect_with<R>(options: i32, f: impl for<'c> FnOnce(&'c mut Conn) -> R) -> R {
    // SAFETY: plain calls into SPI and the namespace code. PushOverrideSearchPath copies the
    // path. If `f` raises, the (sub)transaction abort that follows pops the override and
    // closes the connection, as it does for PL/pgSQL.
    unsafe {
        pg_sys::SPI_connect_ext(options);
        let mut path = catalog_only();
        pg_sys::PushOverrideSearchPath(&mut path);
    }
    let result = f(&mut Conn { _not_send: PhantomData });
    // SAFETY: the override pushed above is the top one: every push here is paired.
    unsafe {
        pg_sys::PopOverrideSearchPath();
        pg_sys::SPI_finish();
    }
    result
}

/// Commits inside a `connect_nonatomic` connection and starts a new transaction; the pinned
/// search path is popped around it (a commit must not leak an override). It takes the
/// connection mutably, so no `Rows` can live across the commit.
pub fn commit(_conn: &mut Conn) {
    // SAFETY: the connection is non-atomic (only `connect_nonatomic` lends one to callers of
    // this function), and our override is the top one.
    unsafe {
        pg_sys::PopOverrideSearchPath();
        pg_sys::SPI_commit();
        let mut path = catalog_only();
        pg_sys::PushOverrideSearchPath(&mut path);
    }
}

/// A Datum copied out of the SPI connection into the memory context of the function's
/// caller, or a pass-by-value Datum: safe to return after `SPI_finish`. Only `Rows::varlena`
/// and `by_value` make one.
#[derive(Clone, Copy)]
pub struct Out(Datum);

impl Out {
    pub fn datum(self) -> Datum {
        self.0
    }

    /// A Datum that `SPI_datumTransfer` has already copied out of its connection.
    ///
    /// # Safety
    /// `d` must come from `SPI_datumTransfer` (or be pass-by-value).
    pub unsafe fn transferred(d: Datum) -> Out {
        Out(d)
    }

    /// An argument of the current call: it lives in its caller's memory for the whole call,
    /// so it may be returned as it is.
    pub fn argument(d: Datum) -> Out {
        Out(d)
    }

    /// A pass-by-value Datum (int8, timestamptz, ...): it points to no memory.
    pub fn by_value(value: i64) -> Out {
        Out(Datum::from(value))
    }
}

/// The result of one statement, valid while its connection is open. Accessors take a 0-based
/// row and a 1-based column.
pub struct Rows<'c> {
    count: usize,
    table: *mut pg_sys::SPITupleTable,
    _conn: PhantomData<&'c Conn>,
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn datum(&self, row: usize, col: i32) -> Option<Datum> {
        if row >= self.count || self.table.is_null() {
            return None;
        }
        // SAFETY: row < count, so the tuple exists; the table lives while the connection does.
        unsafe {
            let table = &*self.table;
            let tuple = *table.vals.add(row);
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tuple, table.tupdesc, col, &mut isnull);
            (!isnull).then_some(d)
        }
    }

    pub fn text(&self, row: usize, col: i32) -> Option<String> {
        // SAFETY: the column is text; String::from_datum copies it.
        self.datum(row, col).and_then(|d| unsafe { String::from_datum(d, false) })
    }

    pub fn int(&self, row: usize, col: i32) -> Option<i32> {
        self.datum(row, col).map(|d| d.value() as i32)
    }

    pub fn int8(&self, row: usize, col: i32) -> Option<i64> {
        self.datum(row, col).map(|d| d.value() as i64)
    }

    pub fn bool(&self, row: usize, col: i32) -> Option<bool> {
        self.datum(row, col).map(|d| d.value() != 0)
    }

    /// A varlena value (jsonb, text, an array, ...) copied out of the connection.
    pub fn varlena(&self, row: usize, col: i32) -> Option<Out> {
        // SAFETY: the column is a varlena type (typByVal false, typLen -1).
        self.datum(row, col).map(|d| Out(unsafe { pg_sys::SPI_datumTransfer(d, false, -1) }))
    }
}

/// Runs `f` in a subtransaction. `f` returns its result and whether to keep its work: kept,
/// the subtransaction is released into the caller's; not kept, it is rolled back, and so are
/// its locks. If `f` raises, the subtransaction is rolled back before the error travels on, so
/// that a caller's own subtransaction (a PL/pgSQL EXCEPTION block) is the current one again.
pub fn in_subtransaction<R: 'static>(f: impl FnOnce() -> (R, bool)) -> R {
    match subtransaction(f, false) {
        Ok(result) => result,
        Err(_) => unreachable!("errors are rethrown"),
    }
}

/// An error that `catching` caught: its SQLSTATE and message.
pub struct Caught {
    pub sqlstate: pgrx::PgSqlErrorCode,
    pub message: String,
}

impl Caught {
    /// Worth retrying as it is: a deadlock, a serialization failure, a lock timeout.
    pub fn is_transient(&self) -> bool {
        use pgrx::PgSqlErrorCode::*;
        matches!(self.sqlstate, ERRCODE_T_R_DEADLOCK_DETECTED | ERRCODE_T_R_SERIALIZATION_FAILURE | ERRCODE_LOCK_NOT_AVAILABLE)
    }
}

/// Like `in_subtransaction`, but an error raised by `f` is caught: its subtransaction is
/// rolled back and the error returned, and the caller's transaction goes on. For loops in
/// which one failing item must not stop the others. A query cancel (pg_cancel_backend,
/// statement_timeout) is not caught: it stops the loop, as it stops PL/pgSQL's OTHERS.
/// `R: 'static`: nothing made inside the subtransaction (whose SPI results its rollback
/// frees) can leave it.
pub fn catching<R: 'static>(f: impl FnOnce() -> (R, bool)) -> std::result::Result<R, Caught> {
    subtransaction(f, true)
}

/// Memory context and resource owner are restored on every path, as PL/pgSQL does.
fn subtransaction<R>(f: impl FnOnce() -> (R, bool), catch: bool) -> std::result::Result<R, Caught> {
    // SAFETY: reads two globals of this backend.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = || unsafe {
        // SAFETY: both were current when we started, and outlive the subtransaction.
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    // SAFETY: begins a subtransaction of the current one; paired below on every path.
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let f = std::panic::AssertUnwindSafe(std::cell::Cell::new(Some(f)));
    PgTryBuilder::new(|| {
        let (result, keep) = (f.take().expect("runs once"))();
        // SAFETY: the subtransaction begun above is the current one.
        unsafe {
            if keep {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        restore();
        Ok(result)
    })
    .catch_others(|error| {
        restore();
        // SAFETY: the error left our subtransaction current; roll it back first.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        let caught = match &error {
            pg_sys::panic::CaughtError::PostgresError(e)
            | pg_sys::panic::CaughtError::ErrorReport(e)
            | pg_sys::panic::CaughtError::RustPanic { ereport: e, .. } => {
                Caught { sqlstate: e.sql_error_code(), message: e.message().to_string() }
            }
        };
        if !catch || caught.sqlstate == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
            error.rethrow()
        }
        Err(caught)
    })
    .execute()
}
