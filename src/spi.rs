//! A thin layer over SPI for statements that run on every call.
//!
//! Each `Statement` is prepared once per backend and kept (`SPI_keepplan`), so the hot path pays
//! neither parse nor plan. Plans are always generic: the plan cache would otherwise re-plan
//! every call of a statement whose generic plan it rates worse than a custom one, and every
//! statement here is written so that its generic plan is the right one. Plans survive DROP/CREATE EXTENSION: the plan cache re-analyses the
//! kept source text when the tables it names change.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::{FromDatum, PgTryBuilder};
use std::cell::Cell;
use std::ffi::CStr;

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

    /// Runs the statement; call inside `connect`. `args` are in parameter order, None for NULL.
    pub fn run(&self, args: &[Option<Datum>]) -> Rows {
        debug_assert_eq!(args.len(), self.argtypes.len());
        let mut values: Vec<Datum> = args.iter().map(|a| a.unwrap_or(Datum::from(0))).collect();
        let nulls: Vec<std::ffi::c_char> =
            args.iter().map(|a| if a.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        unsafe {
            let rc = pg_sys::SPI_execute_plan(self.plan(), values.as_mut_ptr(), nulls.as_ptr(), false, 0);
            assert!(rc >= 0, "SPI_execute_plan failed ({rc}) for {:?}", self.sql);
            Rows { count: pg_sys::SPI_processed as usize, table: pg_sys::SPI_tuptable }
        }
    }
}

/// Runs `f` inside an SPI connection. Values that must outlive it are copied out by `Rows`.
pub fn connect<R>(f: impl FnOnce() -> R) -> R {
    unsafe {
        pg_sys::SPI_connect();
    }
    let result = f();
    unsafe {
        pg_sys::SPI_finish();
    }
    result
}

/// The result of one statement. Accessors take a 0-based row and a 1-based column.
pub struct Rows {
    count: usize,
    table: *mut pg_sys::SPITupleTable,
}

impl Rows {
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
        unsafe {
            let table = &*self.table;
            let tuple = *table.vals.add(row);
            let mut isnull = false;
            let d = pg_sys::SPI_getbinval(tuple, table.tupdesc, col, &mut isnull);
            (!isnull).then_some(d)
        }
    }

    pub fn text(&self, row: usize, col: i32) -> Option<String> {
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

    /// A varlena value (jsonb, text, ...) copied into the memory context of the function's
    /// caller, so it stays valid after `SPI_finish`.
    pub fn varlena(&self, row: usize, col: i32) -> Option<Datum> {
        self.datum(row, col).map(|d| unsafe { pg_sys::SPI_datumTransfer(d, false, -1) })
    }
}

/// Runs `f` in a subtransaction. `f` returns its result and whether to keep its work: kept,
/// the subtransaction is released into the caller's; not kept, it is rolled back, and so are
/// its locks. If `f` raises, the subtransaction is rolled back before the error travels on, so
/// that a caller's own subtransaction (a PL/pgSQL EXCEPTION block) is the current one again.
/// Memory context and resource owner are restored, as PL/pgSQL does.
pub fn in_subtransaction<R>(f: impl FnOnce() -> (R, bool)) -> R {
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let f = std::panic::AssertUnwindSafe(std::cell::Cell::new(Some(f)));
    PgTryBuilder::new(|| {
        let (result, keep) = (f.take().expect("runs once"))();
        unsafe {
            if keep {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        restore();
        result
    })
    .catch_others(|error| {
        restore();
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        error.rethrow()
    })
    .execute()
}
