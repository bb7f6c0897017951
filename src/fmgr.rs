//! The SQL-facing layer: raw version-1 C functions declared in `sql/api.sql`.
//!
//! We bypass `#[pg_extern]` on purpose. Arguments arrive as raw Datums, so a jsonb payload goes
//! straight from the client into SPI without a serde round trip, and an error leaves through
//! `error::raise` with our own SQLSTATE class. pgrx still guards every call: a Rust panic or a
//! Postgres error inside becomes a normal ERROR.

use crate::error::{Result, WorkflowError};
use crate::guc;
use crate::spi::Out;
use crate::validate::MAX_ID_BYTES;
use pgrx::pg_sys::{self, Datum};
use pgrx::{FromDatum, IntoDatum};

/// Declares `extern "C"` entry point `$symbol` (with its `pg_finfo_` record) that calls
/// `$body(&Args) -> Result<Ret>` under pgrx's guard and raises the error, if any, afterwards.
#[macro_export]
macro_rules! sql_function {
    ($symbol:ident, $finfo:ident, $body:path) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static ::pgrx::pg_sys::Pg_finfo_record {
            const V1: ::pgrx::pg_sys::Pg_finfo_record =
                ::pgrx::pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[unsafe(no_mangle)]
        #[doc(hidden)]
        // SAFETY: Postgres calls it with a valid fcinfo, as for any version-1 C function.
        pub unsafe extern "C-unwind" fn $symbol(
            fcinfo: ::pgrx::pg_sys::FunctionCallInfo,
        ) -> ::pgrx::pg_sys::Datum {
            // SAFETY: pgrx's guard turns a Postgres error or a Rust panic into a Rust value.
            let outcome = unsafe {
                ::pgrx::pg_sys::panic::pgrx_extern_c_guard(|| {
                    let args = $crate::fmgr::Args::new(fcinfo);
                    $body(&args).map(|ret| $crate::fmgr::IntoReturn::into_return(ret, &args))
                })
            };
            match outcome {
                Ok(datum) => datum,
                // SAFETY: this is the outermost frame and `outcome` holds nothing else.
                Err(err) => unsafe {
                    let function = concat!(stringify!($symbol), "\0").as_bytes();
                    $crate::error::raise(err, ::std::ffi::CStr::from_bytes_with_nul_unchecked(function))
                },
            }
        }
    };
}

/// The arguments of one call.
pub struct Args {
    fcinfo: pg_sys::FunctionCallInfo,
}

impl Args {
    pub fn new(fcinfo: pg_sys::FunctionCallInfo) -> Self {
        Args { fcinfo }
    }

    /// How many arguments the SQL declaration passes: an older declaration passes fewer.
    pub fn count(&self) -> usize {
        // SAFETY: fcinfo is the current call's.
        unsafe { (*self.fcinfo).nargs as usize }
    }

    pub fn fcinfo(&self) -> pg_sys::FunctionCallInfo {
        self.fcinfo
    }

    /// The raw Datum of argument `i`, or None for SQL NULL.
    pub fn datum(&self, i: usize) -> Option<Datum> {
        // SAFETY: fcinfo is the current call's, and `get` bounds i by nargs.
        unsafe {
            let fc = &*self.fcinfo;
            let arg = *fc.args.as_slice(fc.nargs as usize).get(i)?;
            (!arg.isnull).then_some(arg.value)
        }
    }

    pub fn text(&self, i: usize) -> Option<String> {
        // SAFETY: the caller asks for a text argument; from_datum copies it.
        self.datum(i).and_then(|d| unsafe { String::from_datum(d, false) })
    }

    /// A text argument that must be present, non-empty and at most MAX_ID_BYTES long.
    pub fn name(&self, i: usize, arg: &'static str) -> Result<String> {
        self.name_within(i, arg, MAX_ID_BYTES)
    }

    /// `name` with another length limit.
    pub fn name_within(&self, i: usize, arg: &'static str, limit: usize) -> Result<String> {
        let value = self.text(i).ok_or(WorkflowError::NullArgument { arg })?;
        crate::validate::identifier(&value, arg, limit)?;
        Ok(value)
    }

    /// A text argument that may be NULL but, when given, is checked as by `name`.
    pub fn optional_name(&self, i: usize, arg: &'static str) -> Result<Option<String>> {
        match self.text(i) {
            None => Ok(None),
            Some(v) => crate::validate::identifier(&v, arg, MAX_ID_BYTES).map(|_| Some(v)),
        }
    }

    /// A text argument where NULL and '' both mean "none" (a message topic), length-checked.
    pub fn topic(&self, i: usize, arg: &'static str) -> Result<String> {
        let value = self.text(i).unwrap_or_default();
        crate::validate::length(&value, arg, MAX_ID_BYTES)?;
        Ok(value)
    }

    pub fn int(&self, i: usize) -> Option<i32> {
        self.datum(i).map(|d| d.value() as i32)
    }

    pub fn step(&self, i: usize) -> Result<i32> {
        let step = self.int(i).ok_or(WorkflowError::NullArgument { arg: "step" })?;
        crate::validate::step(step)?;
        Ok(step)
    }

    /// A jsonb argument, passed through untouched, after the size check.
    pub fn jsonb(&self, i: usize, arg: &'static str) -> Result<Option<Datum>> {
        let Some(d) = self.datum(i) else { return Ok(None) };
        // SAFETY: d is a varlena (jsonb) argument.
        let bytes = unsafe { pg_sys::toast_raw_datum_size(d) };
        crate::validate::payload_size(arg, bytes, guc::max_payload_bytes())?;
        Ok(Some(d))
    }

    /// An interval argument that must not be negative. Returns the Datum and its length in
    /// microseconds (months count as 30 days, as Postgres compares intervals).
    pub fn interval(&self, i: usize, arg: &'static str) -> Result<Option<(Datum, i64)>> {
        let Some(d) = self.datum(i) else { return Ok(None) };
        // SAFETY: d is an interval argument, a pointer to a pg_sys::Interval.
        let iv = unsafe { &*(d.cast_mut_ptr::<pg_sys::Interval>()) };
        let micros = crate::validate::interval_micros(iv.month, iv.day, iv.time);
        if micros < 0 {
            return Err(WorkflowError::NegativeInterval { arg });
        }
        Ok(Some((d, micros)))
    }
}

/// What an entry point may return.
pub trait IntoReturn {
    fn into_return(self, args: &Args) -> Datum;
}

fn return_null(args: &Args) -> Datum {
    // SAFETY: fcinfo is the current call's.
    unsafe { (*args.fcinfo()).isnull = true };
    Datum::from(0)
}

impl IntoReturn for () {
    fn into_return(self, args: &Args) -> Datum {
        return_null(args)
    }
}

impl IntoReturn for bool {
    fn into_return(self, _: &Args) -> Datum {
        Datum::from(self)
    }
}

impl IntoReturn for i64 {
    fn into_return(self, _: &Args) -> Datum {
        Datum::from(self)
    }
}

impl IntoReturn for String {
    fn into_return(self, args: &Args) -> Datum {
        self.into_datum().unwrap_or_else(|| return_null(args))
    }
}

impl IntoReturn for &'static str {
    fn into_return(self, args: &Args) -> Datum {
        self.into_datum().unwrap_or_else(|| return_null(args))
    }
}

/// A timestamptz result (µs since 2000-01-01 UTC), or NULL.
pub struct TimestampTz(pub Option<i64>);

impl IntoReturn for TimestampTz {
    fn into_return(self, args: &Args) -> Datum {
        self.0.map(Datum::from).unwrap_or_else(|| return_null(args))
    }
}

/// A Datum already out of the SPI connection (see `spi::Out`), or NULL.
pub struct Raw(pub Option<Out>);

impl IntoReturn for Raw {
    fn into_return(self, args: &Args) -> Datum {
        self.0.map(Out::datum).unwrap_or_else(|| return_null(args))
    }
}

/// One value of a result row. Rust values become Datums only in `into_return`, after the SPI
/// connection has closed, in the memory context of the function's caller; a Datum read from
/// SPI must arrive as `Out`, already copied out. So no result can point into freed memory.
pub enum Field {
    Null,
    Text(String),
    Int(i32),
    Int8(i64),
    Bool(bool),
    /// µs since 2000-01-01 UTC, Postgres' epoch.
    TimestampTz(i64),
    Datum(Out),
}

impl Field {
    pub fn text(s: &str) -> Field {
        Field::Text(s.to_string())
    }

    fn into_datum(self) -> Option<Datum> {
        match self {
            Field::Null => None,
            Field::Text(s) => s.into_datum(),
            Field::Int(i) => i.into_datum(),
            Field::Int8(i) => i.into_datum(),
            Field::Bool(b) => b.into_datum(),
            Field::TimestampTz(t) => Some(Datum::from(t)),
            Field::Datum(d) => Some(d.datum()),
        }
    }
}

impl From<Option<Out>> for Field {
    fn from(value: Option<Out>) -> Field {
        value.map_or(Field::Null, Field::Datum)
    }
}

impl From<Option<i32>> for Field {
    fn from(value: Option<i32>) -> Field {
        value.map_or(Field::Null, Field::Int)
    }
}

/// A row's values and null flags, exactly `natts` of them: the declared row may have more
/// columns than this library fills (a newer install script, run by a server that has not
/// been restarted onto the newer library: those read NULL) or fewer (an older declaration
/// of the function: the extra values are dropped). Never read past the end.
fn datums(row: Vec<Field>, natts: usize) -> (Vec<Datum>, Vec<bool>) {
    let mut row: Vec<Option<Datum>> = row.into_iter().map(Field::into_datum).collect();
    row.resize(natts, None);
    (row.iter().map(|v| v.unwrap_or(Datum::from(0))).collect(), row.iter().map(Option::is_none).collect())
}

/// One row for a function declared with OUT parameters.
pub struct Record(pub Vec<Field>);

impl IntoReturn for Record {
    fn into_return(self, args: &Args) -> Datum {
        // SAFETY: fcinfo is the current call's; the tuple descriptor comes from its declared
        // result type, and values/nulls have one entry per OUT column (`datums`).
        unsafe {
            let mut tupdesc: pg_sys::TupleDesc = std::ptr::null_mut();
            let kind =
                pg_sys::get_call_result_type(args.fcinfo(), std::ptr::null_mut(), &mut tupdesc);
            assert_eq!(kind, pg_sys::TypeFuncClass::TYPEFUNC_COMPOSITE, "function must return a record");
            let tupdesc = pg_sys::BlessTupleDesc(tupdesc);
            let (mut values, mut nulls) = datums(self.0, (*tupdesc).natts as usize);
            let tuple = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::HeapTupleHeaderGetDatum((*tuple).t_data)
        }
    }
}

/// A jsonb result built in Rust (cold paths only: it goes through text).
pub struct Json(pub serde_json::Value);

impl IntoReturn for Json {
    fn into_return(self, args: &Args) -> Datum {
        pgrx::JsonB(self.0).into_datum().unwrap_or_else(|| return_null(args))
    }
}

/// Rows for a set-returning function (RETURNS TABLE), handed over as a tuplestore.
pub struct SetOf(pub Vec<Vec<Field>>);

impl IntoReturn for SetOf {
    fn into_return(self, args: &Args) -> Datum {
        // SAFETY: fcinfo is the current call's, made by a set-returning function call; each
        // row has one value per declared column (`datums`).
        unsafe {
            pg_sys::InitMaterializedSRF(args.fcinfo(), 0);
            let rsinfo = (*args.fcinfo()).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            let natts = (*(*rsinfo).setDesc).natts as usize;
            for row in self.0 {
                let (mut values, mut nulls) = datums(row, natts);
                pg_sys::tuplestore_putvalues((*rsinfo).setResult, (*rsinfo).setDesc, values.as_mut_ptr(), nulls.as_mut_ptr());
            }
        }
        Datum::from(0)
    }
}

/// A text argument for `Statement::run` (it lives as long as the call's memory context).
pub fn text_datum(s: &str) -> Option<Datum> {
    s.into_datum()
}
