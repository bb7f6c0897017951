//! Per-database workers as dynamic background workers: how they are started, kept running and
//! entered. The launcher keeps the schedulers of every database running; scheduler #1 of a
//! database keeps its SQL workers running. Both use a `Keeper`.
//!
//! The workers never restart by themselves (BGW_NEVER_RESTART): their keeper restarts them, at
//! most once a second per slot, and only while it still wants them. `bgw_notify_pid` is the
//! keeper, so the postmaster sets its latch when one starts or stops.

use crate::registry::{self, Kind};
use crate::warn;
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys::{self, Oid};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The shortest time between two starts of one slot.
const RESTART_FLOOR: Duration = Duration::from_secs(1);

// Postgres' own signal handlers, by their C symbols (pgrx's pg_sys wraps them as Rust fns).
// SAFETY: the C signatures of Postgres' signal handlers (void handler(int)).
unsafe extern "C-unwind" {
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
    #[link_name = "SignalHandlerForConfigReload"]
    fn postgres_reload(signal: std::ffi::c_int);
}

// SAFETY: kill(2), as libc declares it; every Postgres process runs as the same OS user.
unsafe extern "C" {
    fn kill(pid: i32, signal: std::ffi::c_int) -> std::ffi::c_int;
}

/// SIGTERM = die (a prompt exit at the next interrupt check), SIGHUP = reload at the next pass.
pub fn set_up_signals() {
    // SAFETY: a background worker installs its handlers before it unblocks signals.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(postgres_reload));
        pg_sys::BackgroundWorkerUnblockSignals();
    }
}

/// Reloads postgresql.conf when a SIGHUP came since the last call; says whether it did.
pub fn reload_if_asked() -> bool {
    // SAFETY: the flag is set by our SIGHUP handler; reloading between passes is safe.
    unsafe {
        if pg_sys::ConfigReloadPending == 0 {
            return false;
        }
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
        true
    }
}

/// Asks a worker to exit.
pub fn terminate(pid: i32) {
    // SAFETY: a plain signal to a process of this server (pids come from the registry).
    unsafe { kill(pid, pg_sys::SIGTERM as i32) };
}

/// Cancels a worker's current statement, as pg_cancel_backend does.
pub fn interrupt(pid: i32) {
    // SAFETY: a plain signal to a process of this server (its pid from pg_stat_activity).
    unsafe { kill(pid, pg_sys::SIGINT as i32) };
}

/// The worker's argument: its database in the low 32 bits, its index above.
fn argument(database: Oid, index: i32) -> pg_sys::Datum {
    pg_sys::Datum::from((u32::from(database) as u64) | ((index as u64) << 32))
}

fn decode(arg: pg_sys::Datum) -> (Oid, i32) {
    let v = arg.value() as u64;
    (Oid::from(v as u32), (v >> 32) as i32)
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Scheduler => "pg_workflow scheduler",
        Kind::Sql => "pg_workflow sql worker",
    }
}

/// The common start of a per-database worker: signals, a connection to its database by oid,
/// its registry slot. Returns (database, index); exits quietly (code 0) when another live
/// process holds the slot or the database is paused.
pub fn enter(arg: pg_sys::Datum, kind: Kind) -> (Oid, i32) {
    set_up_signals();
    let (database, index) = decode(arg);
    // A database dropped meanwhile is FATAL here; nobody restarts us, and the launcher
    // forgets the database at its next look.
    // SAFETY: called once, in a background worker with BGWORKER_BACKEND_DATABASE_CONNECTION.
    unsafe { pg_sys::BackgroundWorkerInitializeConnectionByOid(database, pg_sys::InvalidOid, 0) };
    if !registry::claim(database, kind, index) {
        // SAFETY: a clean exit; nothing of ours is in progress.
        unsafe { pg_sys::proc_exit(0) };
    }
    let name = format!("{} {index}\0", type_name(kind));
    // SAFETY: `name` ends in NUL and outlives the call, which copies it.
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr().cast()) };
    (database, index)
}

/// Starts one worker; None when Postgres has no free worker slot (max_worker_processes).
fn start(kind: Kind, database: Oid, index: i32) -> Option<*mut pg_sys::BackgroundWorkerHandle> {
    let function = match kind {
        Kind::Scheduler => "pg_workflow_scheduler_main",
        Kind::Sql => "pg_workflow_sql_worker_main",
    };
    let builder = BackgroundWorkerBuilder::new(&format!("{} {index} (database {})", type_name(kind), database))
        .set_type(type_name(kind))
        .set_library("pg_workflow")
        .set_function(function)
        .set_argument(Some(argument(database, index)))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        // SAFETY: reads this backend's pid.
        .set_notify_pid(unsafe { pg_sys::MyProcPid });
    let mut worker = pg_sys::BackgroundWorker::from(&builder);
    let mut handle = std::ptr::null_mut();
    // SAFETY: the handle is palloc'd in TopMemoryContext, so it lives until we pfree it.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let ok = pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        ok.then_some(handle)
    }
}

struct Started {
    handle: Option<*mut pg_sys::BackgroundWorkerHandle>,
    at: Instant,
}

/// Keeps a set of (kind, database, index) slots running.
#[derive(Default)]
pub struct Keeper {
    started: HashMap<(Kind, Oid, i32), Started>,
}

impl Keeper {
    /// Starts `wanted` slots that no live process holds and that are not starting already,
    /// each at most once a second. `live` are the registry's (kind, database, index) of live
    /// workers. Returns how long until a slot waiting for its floor may start (None: none).
    pub fn keep(&mut self, wanted: &[(Kind, Oid, i32)], live: &[(Kind, Oid, i32)]) -> Option<Duration> {
        let mut next = None::<Duration>;
        for &key in wanted {
            if live.contains(&key) || self.starting(key) {
                continue;
            }
            if let Some(s) = self.started.get(&key) {
                let since = s.at.elapsed();
                if since < RESTART_FLOOR {
                    let wait = RESTART_FLOOR - since;
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                    continue;
                }
            }
            let handle = start(key.0, key.1, key.2);
            if handle.is_none() {
                warn::at_most_once_a_minute(
                    "no worker slot",
                    "pg_workflow: could not start a background worker: raise max_worker_processes \
                     (1 launcher + per database scheduler_workers + sql_workers, plus parallel query)",
                );
            }
            self.forget(key);
            self.started.insert(key, Started { handle, at: Instant::now() });
            next = Some(next.map_or(RESTART_FLOOR, |n| n.min(RESTART_FLOOR)));
        }
        // Slots no longer wanted: forget their handles once they have stopped.
        let stale: Vec<_> = self.started.keys().filter(|k| !wanted.contains(k) && !self.starting(**k)).copied().collect();
        for key in stale {
            self.forget(key);
        }
        next
    }

    /// True while the worker we registered has not stopped yet (it may not have claimed its
    /// registry slot yet).
    fn starting(&self, key: (Kind, Oid, i32)) -> bool {
        let Some(Started { handle: Some(handle), .. }) = self.started.get(&key) else { return false };
        let mut pid = 0;
        // SAFETY: the handle came from RegisterDynamicBackgroundWorker and is not freed yet.
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(*handle, &mut pid) };
        matches!(status, pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED | pg_sys::BgwHandleStatus::BGWH_STARTED)
    }

    fn forget(&mut self, key: (Kind, Oid, i32)) {
        if let Some(Started { handle: Some(handle), .. }) = self.started.remove(&key) {
            // SAFETY: allocated by RegisterDynamicBackgroundWorker, freed once.
            unsafe { pg_sys::pfree(handle.cast()) };
        }
    }
}
