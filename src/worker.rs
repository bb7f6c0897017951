//! The in-server scheduler: `workflow.scheduler_workers` background workers, each a thin latch
//! loop around the same pass as `workflow.tick()`.
//!
//! Each loop sleeps until the next schedule is due or `workflow.tick_interval` passes, plus a
//! small jitter so several loops do not step in unison (the fire ids, not the jitter, are what
//! keep fires unique). A `schedule()` change wakes it early. An error in one pass is logged and
//! the loop goes on. It waits while the database or the extension is missing, does nothing on
//! a hot standby, reloads settings on SIGHUP, and stops on SIGTERM or postmaster death.

use crate::{guc, tick, wake};
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

/// The slot a schedule change notifies, so sleeping schedulers recompute their next wake-up.
pub fn slot() -> usize {
    wake::slot_of("scheduler", "")
}

// Postgres' own signal handlers, by their C symbols (pgrx's pg_sys wraps them as Rust fns).
unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_reload(signal: std::ffi::c_int);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_workflow_scheduler_main(arg: pg_sys::Datum) {
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
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr().cast()) };
    let waiter = wake::Waiter::new(slot());
    loop {
        let seen = waiter.epoch();
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
    if unsafe { pg_sys::RecoveryInProgress() } {
        return None; // a hot standby: the primary's schedulers do the work
    }
    PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
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
        if let pg_sys::panic::CaughtError::PostgresError(e) | pg_sys::panic::CaughtError::ErrorReport(e) = &error {
            warning!("pg_workflow scheduler: pass failed: {}", e.message());
        } else {
            warning!("pg_workflow scheduler: pass failed");
        }
        unsafe { pg_sys::AbortCurrentTransaction() };
        None
    })
    .execute()
}

fn extension_installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_workflow')
            AND to_regclass('workflow.schedule') IS NOT NULL",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Exactly until the next schedule is due when that comes first; otherwise tick_interval plus
/// a jitter of up to 10 % of it, capped at 50 ms. (Jitter on a due time would only make the
/// fire late: the loops that wake together for it share the work through SKIP LOCKED.)
fn nap_ms(next_due: Option<i64>) -> i64 {
    let interval = guc::TICK_INTERVAL_MS.get() as i64;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    match next_due.map(|due| (due - now + 999) / 1000) {
        Some(until_due) if until_due < interval => until_due.max(0),
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
