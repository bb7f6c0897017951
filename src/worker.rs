//! The scheduler workers: `workflow.scheduler_workers` per served database, started by the
//! launcher (launcher.rs) as dynamic background workers. Each is a thin latch loop around the
//! same pass as `workflow.tick()`; scheduler #1 also keeps the database's SQL workers running
//! (sql_pool.rs), and every pass first renews the leases of the live SQL workers, which cannot
//! heartbeat while they spend an hour in one step.
//!
//! Each loop sleeps until the next schedule is due or `workflow.tick_interval` passes, plus a
//! small jitter so several loops do not step in unison (the fire ids, not the jitter, are what
//! keep fires unique). A `schedule()` change wakes it early. An error in one pass is logged and
//! the loop goes on. It does nothing on a hot standby or while the server is read-only
//! (pg_auto_failover holds a promoted primary read-only for a while), reloads settings on
//! SIGHUP, and stops on SIGTERM or postmaster death. When the extension is not (or no longer)
//! installed, it marks its database dormant and exits: the launcher restarts it after CREATE
//! EXTENSION.
//!
//! Every nap has a floor (`MIN_NAP_MS`): "the next thing is due now" never means "spin". All
//! SQL runs through `spi::connect`, so names resolve in `pg_catalog` only.

use crate::registry::{self, Kind};
use crate::spi::{self as our_spi, Statement};
use crate::{guc, spawn, sql_pool, tick, wake, warn};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::hash::{BuildHasher, Hasher};

/// The shortest nap between two passes.
const MIN_NAP_MS: i64 = 5;

/// (the extension is installed, the SQL workers' table exists)
static EXTENSION_INSTALLED: Statement = Statement::new(
    c"SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow')
         AND pg_catalog.to_regclass('workflow.schedule') IS NOT NULL,
         pg_catalog.to_regclass('workflow.sql_workflow') IS NOT NULL",
    &[],
);

/// Renews the leases of this database's live SQL workers (their executor ids).
static RENEW_SQL_LEASES: Statement = Statement::new(
    c"UPDATE workflow.executor SET last_heartbeat = pg_catalog.clock_timestamp()
       WHERE executor_id OPERATOR(pg_catalog.=) ANY ($1)",
    &[pg_sys::TEXTARRAYOID],
);

/// What one pass found.
enum Pass {
    /// Done (or skipped: standby, read-only, error); the next schedule is due then.
    Ran { next_due: Option<i64>, sql_ready: bool },
    /// The extension is not installed in this database.
    NoExtension,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_workflow_scheduler_main(arg: pg_sys::Datum) {
    let (database, index) = spawn::enter(arg, Kind::Scheduler);
    let waiter = wake::Waiter::new(wake::scheduler_slot());
    let mut sql_workers = sql_pool::Pool::default();
    loop {
        let seen = waiter.epoch();
        let _ = spawn::reload_if_asked();
        let epoch = registry::created_epoch();
        match guarded_pass() {
            Pass::NoExtension => {
                if registry::mark_dormant(database, epoch) {
                    // SAFETY: a clean exit between passes; our registry slot is freed at exit.
                    unsafe { pg_sys::proc_exit(0) };
                }
                // A CREATE EXTENSION committed while we looked: look again, after a nap.
                waiter.sleep(seen, 100);
            }
            Pass::Ran { next_due, sql_ready } => {
                if index == 1 {
                    registry::mark_active(database);
                    sql_workers.keep(database, sql_ready);
                }
                waiter.sleep(seen, nap_ms(next_due));
            }
        }
    }
}

/// One pass in its own transaction.
fn guarded_pass() -> Pass {
    // SAFETY: reads shared state of this backend.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Pass::Ran { next_due: None, sql_ready: false }; // a hot standby: the primary's schedulers do the work
    }
    PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            // SAFETY: reads a global of this backend, set at transaction start.
            if unsafe { pg_sys::XactReadOnly } {
                return Pass::Ran { next_due: None, sql_ready: false }; // read-only for now: wait quietly
            }
            let (installed, sql_ready) = extension_installed();
            if !installed {
                return Pass::NoExtension;
            }
            renew_sql_leases();
            let (counts, next_due) = tick::pass();
            if counts.recovered + counts.dead_lettered > 0 {
                log!(
                    "pg_workflow: recovered {} runs of expired executors, dead-lettered {}",
                    counts.recovered,
                    counts.dead_lettered
                );
            }
            Pass::Ran { next_due, sql_ready }
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
        Pass::Ran { next_due: None, sql_ready: false }
    })
    .execute()
}

/// Renews, before recovery looks at leases, the leases of the live SQL workers of this
/// database: they heartbeat only between steps, and a step may take an hour.
fn renew_sql_leases() {
    // SAFETY: reads this backend's database.
    let database = unsafe { pg_sys::MyDatabaseId };
    let ids: Vec<String> = registry::live(database)
        .into_iter()
        .filter(|&(kind, _, _)| kind == Kind::Sql)
        .map(|(_, index, _)| crate::sql_worker::executor_id(index))
        .collect();
    if ids.is_empty() {
        return;
    }
    our_spi::connect(|c| {
        RENEW_SQL_LEASES.run(c, &[ids.into_datum()]);
    });
}

fn extension_installed() -> (bool, bool) {
    our_spi::connect(|c| {
        let rows = EXTENSION_INSTALLED.run(c, &[]);
        (rows.bool(0, 1) == Some(true), rows.bool(0, 2) == Some(true))
    })
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
