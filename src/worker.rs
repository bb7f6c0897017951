//! The in-server scheduler: `workflow.scheduler_workers` background workers, each a thin latch
//! loop around the same pass as `workflow.tick()`.
//!
//! Each loop sleeps until the next schedule is due or `workflow.tick_interval` passes, plus a
//! small jitter so several loops do not step in unison (the fire ids, not the jitter, are what
//! keep fires unique). A `schedule()` change wakes it early. An error in one pass is logged and
//! the loop goes on. It waits while the database or the extension is missing, does nothing on
//! a hot standby or while the server is read-only (pg_auto_failover holds a promoted primary
//! read-only for a while), reloads settings on SIGHUP, and stops on SIGTERM or postmaster death.
//!
//! Every nap has a floor (`MIN_NAP_MS`): "the next thing is due now" never means "spin". All
//! SQL runs through `spi::connect`, so names resolve in `pg_catalog` only.

use crate::spi::{self as our_spi, Statement};
use crate::{guc, tick, wake, warn};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Registers the workers; call from `_PG_init` while preloading.
pub fn register() {
    for n in 1..=guc::SCHEDULER_WORKERS.get() {
        BackgroundWorkerBuilder::new(&format!("pg_workflow scheduler {n}"))
            .set_type("pg_workflow scheduler")
            .set_library("pg_workflow")
            .set_function("pg_workflow_scheduler_main")
            .set_argument(Some(pg_sys::Datum::from(n)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(Duration::from_secs(1)))
            .load();
    }
}

/// The shortest nap between two passes.
const MIN_NAP_MS: i64 = 5;

static EXTENSION_INSTALLED: Statement = Statement::new(
    c"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow')
         AND pg_catalog.to_regclass('workflow.schedule') IS NOT NULL",
    &[],
);

// Postgres' own signal handlers, by their C symbols (pgrx's pg_sys wraps them as Rust fns).
// SAFETY: the C signatures of Postgres' signal handlers (void handler(int)).
unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_reload(signal: std::ffi::c_int);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_workflow_scheduler_main(arg: pg_sys::Datum) {
    // SAFETY: a background worker installs its handlers before it unblocks signals.
    unsafe {
        // SIGTERM sets ProcDiePending, which the sleep below checks: the worker exits at once,
        // non-zero, so the postmaster restarts it after pg_terminate_backend (not at shutdown).
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(postgres_reload));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let database = guc::database();
    // A missing database is FATAL here; the postmaster retries a second later.
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    let name = format!("pg_workflow scheduler {}\0", arg.value());
    // SAFETY: `name` ends in NUL and outlives the call, which copies it.
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr().cast()) };
    let waiter = wake::Waiter::new(wake::scheduler_slot());
    loop {
        let seen = waiter.epoch();
        // SAFETY: the flag is set by our SIGHUP handler; reloading between passes is safe.
        unsafe {
            if pg_sys::ConfigReloadPending != 0 {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
        }
        let next_due = guarded_pass();
        waiter.sleep(seen, nap_ms(next_due));
    }
}

/// One pass in its own transaction. Returns when the next schedule is due (µs since 2000).
fn guarded_pass() -> Option<i64> {
    // SAFETY: reads shared state of this backend.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return None; // a hot standby: the primary's schedulers do the work
    }
    PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            // SAFETY: reads a global of this backend, set at transaction start.
            if unsafe { pg_sys::XactReadOnly } {
                return None; // read-only for now (default_transaction_read_only): wait quietly
            }
            if !extension_installed() {
                return None;
            }
            let (counts, next_due) = tick::pass();
            if counts.recovered + counts.dead_lettered > 0 {
                log!(
                    "pg_workflow: recovered {} runs of expired executors, dead-lettered {}",
                    counts.recovered,
                    counts.dead_lettered
                );
            }
            next_due
        })
    })
    .catch_others(|error| {
        let message = match &error {
            pg_sys::panic::CaughtError::PostgresError(e)
            | pg_sys::panic::CaughtError::ErrorReport(e)
            | pg_sys::panic::CaughtError::RustPanic { ereport: e, .. } => e.message().to_string(),
        };
        warn::at_most_once_a_minute("scheduler pass", &format!("pg_workflow scheduler: pass failed: {message}"));
        // SAFETY: the pass's transaction is the current one; abort it before the next pass.
        unsafe { pg_sys::AbortCurrentTransaction() };
        None
    })
    .execute()
}

fn extension_installed() -> bool {
    our_spi::connect(|c| EXTENSION_INSTALLED.run(c, &[]).bool(0, 1) == Some(true))
}

/// Exactly until the next schedule is due when that comes first; otherwise tick_interval plus
/// a jitter of up to 10 % of it, capped at 50 ms. (Jitter on a due time would only make the
/// fire late: the loops that wake together for it share the work through SKIP LOCKED.)
fn nap_ms(next_due: Option<i64>) -> i64 {
    let interval = guc::TICK_INTERVAL_MS.get() as i64;
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    match next_due.map(|due| (due - now + 999) / 1000) {
        Some(until_due) if until_due < interval => until_due.max(MIN_NAP_MS),
        _ => interval + jitter_ms(interval),
    }
}

fn jitter_ms(interval: i64) -> i64 {
    let cap = (interval / 10).min(50);
    if cap <= 0 {
        return 0;
    }
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    (random % (cap as u64 + 1)) as i64
}
