//! The launcher: one static background worker, connected to no database (shared catalogs
//! only), that keeps `workflow.scheduler_workers` schedulers running in every database it
//! serves: every database that accepts connections and is not a template, or only the one that
//! `workflow.database` names.
//!
//! It starts scheduler #1 in a database it knows nothing about; #1 marks the database active
//! (then the launcher starts the others) or dormant (the extension is not installed: then the
//! launcher starts nothing there until CREATE EXTENSION, its own restart, or a new oid). It
//! stops the workers of databases it no longer serves and never restarts those of a paused one
//! (DROP/ALTER DATABASE is waiting for them to leave, see utility.rs).
//!
//! It wakes when a worker starts or stops (it is their bgw_notify_pid), when the registry wakes
//! it (CREATE EXTENSION, CREATE DATABASE, the end of a pause), on SIGHUP, and every
//! `POLL` to notice anything else; every nap has a floor (`MIN_NAP`).

use crate::registry::{self, Kind, State};
use crate::spawn::{self, Keeper};
use crate::guc;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_secs(10);
const MIN_NAP: Duration = Duration::from_millis(100);

/// Registers the launcher; call from `_PG_init` while preloading.
pub fn register() {
    BackgroundWorkerBuilder::new("pg_workflow launcher")
        .set_type("pg_workflow launcher")
        .set_library("pg_workflow")
        .set_function("pg_workflow_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_workflow_launcher_main(_arg: pg_sys::Datum) {
    spawn::set_up_signals();
    // SAFETY: called once, in a background worker with a database connection flag; no
    // database means shared catalogs only (pg_database), as the autovacuum launcher does.
    unsafe {
        pg_sys::BackgroundWorkerInitializeConnection(std::ptr::null(), std::ptr::null(), 0);
        pg_sys::pgstat_report_appname(c"pg_workflow launcher".as_ptr());
        registry::set_launcher_latch(&raw mut (*pg_sys::MyProc).procLatch);
    }
    // (b) a restarted launcher looks at every database afresh.
    registry::forget_dormancy(None);
    let mut keeper = Keeper::default();
    let mut seen: HashSet<Oid> = HashSet::new();
    loop {
        let began = Instant::now();
        let _ = spawn::reload_if_asked();
        let databases = served_databases();
        for oid in &databases {
            if seen.insert(*oid) {
                registry::forget_dormancy(Some(*oid)); // (c) a new database (or a reused oid)
            }
        }
        seen.retain(|oid| databases.contains(oid));
        registry::retain_databases(&databases);
        let retry = reconcile(&mut keeper, &databases);
        let nap = retry.unwrap_or(POLL).clamp(MIN_NAP, POLL);
        wait(nap, began);
    }
}

/// Starts what should run, stops what should not. Returns when to look again at the latest.
fn reconcile(keeper: &mut Keeper, databases: &[Oid]) -> Option<Duration> {
    let per_database = guc::SCHEDULER_WORKERS.get();
    let mut wanted = Vec::new();
    for &oid in databases {
        if registry::paused(oid) {
            continue;
        }
        let count = match registry::state(oid) {
            State::Dormant => 0,
            State::Unknown => per_database.min(1),
            State::Active => per_database,
        };
        wanted.extend((1..=count).map(|index| (Kind::Scheduler, oid, index)));
    }
    let live = registry::all_live();
    for &(database, kind, index, pid) in &live {
        let unserved = !databases.contains(&database) || registry::paused(database);
        let surplus = kind == Kind::Scheduler && index > per_database;
        if unserved || surplus {
            spawn::terminate(pid);
        }
    }
    let live: Vec<_> = live.iter().map(|&(database, kind, index, _)| (kind, database, index)).collect();
    keeper.keep(&wanted, &live)
}

/// The databases to serve, by a heap scan of pg_database (the launcher has no database, so
/// no SQL): not templates, accepting connections, not half-dropped (datconnlimit -2).
fn served_databases() -> Vec<Oid> {
    let only = guc::database();
    let mut found = Vec::new();
    // SAFETY: a plain catalog scan in its own transaction, as TimescaleDB's launcher does; the
    // tuples are read before the scan ends and nothing points into them afterwards.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let db = &*pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_database>();
            if db.datistemplate || !db.datallowconn || db.datconnlimit == -2 {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(db.datname.data.as_ptr());
            if only.as_deref().is_none_or(|o| name.to_bytes() == o.as_bytes()) {
                found.push(db.oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    found
}

/// Sleeps `nap` or until the latch is set, but never returns sooner than MIN_NAP after
/// `began`, so a flood of latch sets cannot make the loop spin.
fn wait(nap: Duration, began: Instant) {
    let floor = MIN_NAP.saturating_sub(began.elapsed());
    // SAFETY: our own latch; WL_EXIT_ON_PM_DEATH exits if the postmaster dies, and the
    // interrupt check exits on SIGTERM (non-zero: the postmaster restarts us a second later).
    unsafe {
        if !floor.is_zero() {
            pg_sys::WaitLatch(
                std::ptr::null_mut(),
                (pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                floor.as_millis() as _,
                pg_sys::PG_WAIT_EXTENSION,
            );
        }
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            nap.as_millis() as _,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        pgrx::check_for_interrupts!();
    }
}
