//! Counters of committed events, per database, in shared memory (`workflow.stats`).
//!
//! A backend *stages* each event (a step recorded, a run finished, ...) in its own memory, per
//! subtransaction level, at the cost of an addition. At COMMIT it adds what it staged to its
//! database's slot, a row of atomics in shared memory; at ABORT, at PREPARE (a prepared
//! transaction may commit in another backend, later: its events are not counted) and when the
//! subtransaction that staged them rolls back, it drops them. So the counters count committed
//! events only, and the hot path pays no table write and no lock.
//!
//! There is one slot per database, claimed with compare-and-swap at the database's first event
//! (or first read). When every slot is taken, slots of dropped databases are reclaimed; if none
//! is, that database is not counted (its counters read NULL) and a WARNING says so at most once
//! a minute. Shared memory does not survive a restart: the counters start at zero with the
//! server (their `stats_reset` is then the server's start) or at `workflow.stats_reset()`.
//!
//! Without `shared_preload_libraries` there is no shared memory: nothing is staged, and the
//! counters read NULL.

use crate::error::Result;
use crate::fmgr::{Args, Field, SetOf, TimestampTz};
use crate::sql_function;
use pgrx::pg_sys::{self, Oid};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What is counted. The names are the `name` column of `workflow.stats` (README, "Metrics").
#[derive(Clone, Copy)]
pub enum Counter {
    RunsStarted,
    RunsDequeued,
    RunsSucceeded,
    RunsFailed,
    RunsCancelled,
    RunsRecovered,
    RunsDeadLettered,
    StepsRecorded,
    MessagesSent,
    ScheduleFires,
}

const NAMES: [&str; COUNTERS] = [
    "runs_started",
    "runs_dequeued",
    "runs_succeeded",
    "runs_failed",
    "runs_cancelled",
    "runs_recovered",
    "runs_dead_lettered",
    "steps_recorded",
    "messages_sent",
    "schedule_fires",
];
const COUNTERS: usize = 10;
/// Room for counters added later without changing the shared layout's size.
const WIDTH: usize = 16;
const SLOTS: usize = 256;
const RETRY_FULL: Duration = Duration::from_secs(60);

#[repr(C)]
struct Slot {
    database: AtomicU32, // InvalidOid: free
    /// When `stats_reset()` last ran here (µs since 2000); 0: never since the slot was claimed.
    reset_at: AtomicI64,
    counters: [AtomicU64; WIDTH],
}

#[repr(C)]
struct Table {
    slots: [Slot; SLOTS],
}

/// Where this backend counts.
#[derive(Clone, Copy)]
enum Place {
    Unknown,
    Slot(usize),
    /// No free slot; look again after this instant.
    Full(Instant),
}

struct Local {
    table: Cell<*mut Table>,
    place: Cell<Place>,
    /// (subtransaction nesting level, counts staged at that level), innermost last.
    staged: RefCell<Vec<(i32, [u64; COUNTERS])>>,
    callbacks_registered: Cell<bool>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Local {}

static LOCAL: Local = Local {
    table: Cell::new(std::ptr::null_mut()),
    place: Cell::new(Place::Unknown),
    staged: RefCell::new(Vec::new()),
    callbacks_registered: Cell::new(false),
};

/// The table's size, for shmem.rs.
pub const SHMEM_SIZE: usize = std::mem::size_of::<Table>();

/// Finds (or creates and zeroes) the table. # Safety: only from the shared-memory startup
/// hook (shmem.rs), under AddinShmemInitLock.
pub unsafe fn attach() {
    // SAFETY: called from the shared-memory startup hook, under AddinShmemInitLock. All-zero
    // bytes are valid atomics and free slots.
    unsafe {
        let (table, _) = crate::shmem::zeroed_struct::<Table>(c"pg_workflow stats", SHMEM_SIZE);
        LOCAL.table.set(table);
    }
}

fn table() -> Option<&'static Table> {
    // SAFETY: the table lives as long as the server; every field is an atomic.
    unsafe { LOCAL.table.get().as_ref() }
}

fn my_database() -> Oid {
    // SAFETY: reads a global that is set once the backend has connected.
    unsafe { pg_sys::MyDatabaseId }
}

/// Stages `n` events of `counter` for this database: they count if the current transaction
/// commits. The hot path: after the first call, a few loads and an addition.
pub fn add(counter: Counter, n: u64) {
    if n == 0 || table().is_none() || ensure_place().is_none() {
        return;
    }
    if !LOCAL.callbacks_registered.replace(true) {
        // SAFETY: registers guarded callbacks once per backend.
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_xact_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subxact_end), std::ptr::null_mut());
        }
    }
    // SAFETY: reads the current transaction's nesting level.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    let mut staged = LOCAL.staged.borrow_mut();
    match staged.last_mut() {
        Some((at, counts)) if *at == level => counts[counter as usize] += n,
        _ => {
            let mut counts = [0; COUNTERS];
            counts[counter as usize] = n;
            staged.push((level, counts));
        }
    }
}

/// Stages one event of `counter`.
pub fn count(counter: Counter) {
    add(counter, 1);
}

// SAFETY: Postgres calls it at every transaction event; it touches only our own state and the
// table's atomics, and raises nothing (COMMIT is past the point of no return).
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {}
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            LOCAL.staged.borrow_mut().clear();
            return;
        }
        _ => return,
    }
    // Cleared in place: the vector keeps its capacity, so a busy backend allocates nothing.
    let mut staged = LOCAL.staged.borrow_mut();
    if staged.is_empty() {
        return;
    }
    let mut total = [0u64; COUNTERS];
    for (_, counts) in staged.iter() {
        for (sum, n) in total.iter_mut().zip(counts) {
            *sum += n;
        }
    }
    staged.clear();
    let (Some(t), Place::Slot(i)) = (table(), LOCAL.place.get()) else { return };
    for (counter, n) in t.slots[i].counters.iter().zip(total) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

// SAFETY: see at_xact_end. At both events the ending subtransaction is still the current one.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_subxact_end(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    // SAFETY: reads the current transaction's nesting level.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    let mut staged = LOCAL.staged.borrow_mut();
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => staged.retain(|(at, _)| *at < level),
        // A released subtransaction's events now belong to its parent, so that a later
        // sibling that rolls back does not take them along.
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            let merged = merge_into_parent(std::mem::take(&mut *staged), level);
            *staged = merged;
        }
        _ => {}
    }
}

/// The staged counts after the subtransaction at `level` commits: its own (and any deeper
/// level's) move to `level - 1`, merged with the parent's entry.
fn merge_into_parent(staged: Vec<(i32, [u64; COUNTERS])>, level: i32) -> Vec<(i32, [u64; COUNTERS])> {
    let mut out: Vec<(i32, [u64; COUNTERS])> = Vec::with_capacity(staged.len());
    for (at, counts) in staged {
        let at = at.min(level - 1);
        match out.last_mut() {
            Some((last, sum)) if *last == at => sum.iter_mut().zip(counts).for_each(|(s, n)| *s += n),
            _ => out.push((at, counts)),
        }
    }
    out
}

/// This backend's slot, claimed at its first event (in a transaction: reclaiming looks at the
/// catalog), so that the commit callback only adds.
fn ensure_place() -> Option<usize> {
    let t = table()?;
    match LOCAL.place.get() {
        Place::Slot(i) => return Some(i),
        Place::Full(until) if Instant::now() < until => return None,
        _ => {}
    }
    let db = my_database();
    let found = find(t, db).or_else(|| claim(t, db)).or_else(|| {
        reclaim_dropped(t);
        claim(t, db)
    });
    match found {
        Some(i) => LOCAL.place.set(Place::Slot(i)),
        None => {
            LOCAL.place.set(Place::Full(Instant::now() + RETRY_FULL));
            crate::warn::at_most_once_a_minute(
                "stats full",
                &format!("pg_workflow: no free statistics slot for this database (all {SLOTS} are taken): its workflow.stats counters are not counted"),
            );
        }
    }
    found
}

fn find(t: &Table, db: Oid) -> Option<usize> {
    t.slots.iter().position(|s| s.database.load(Ordering::Acquire) == db.to_u32())
}

/// Takes the first free slot. Two backends of one database that race both land on the same
/// slot: the loser of the compare-and-swap looks again and finds the winner's.
fn claim(t: &Table, db: Oid) -> Option<usize> {
    loop {
        let free = t.slots.iter().position(|s| s.database.load(Ordering::Acquire) == 0)?;
        let slot = &t.slots[free];
        match slot.database.compare_exchange(0, db.to_u32(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(free),
            Err(other) if other == db.to_u32() => return Some(free),
            Err(_) => {
                if let Some(i) = find(t, db) {
                    return Some(i);
                }
            }
        }
    }
}

/// Frees the slots of databases that no longer exist (nobody can be connected to them, so
/// nobody adds there). Zeroed first, then freed.
fn reclaim_dropped(t: &Table) {
    for slot in &t.slots {
        let db = slot.database.load(Ordering::Acquire);
        // SAFETY: a syscache probe, inside a transaction (we are in a function call).
        let exists = db == 0 || unsafe {
            pg_sys::SearchSysCacheExists(pg_sys::SysCacheIdentifier::DATABASEOID as i32, pg_sys::Datum::from(db), 0.into(), 0.into(), 0.into())
        };
        if !exists {
            zero(slot);
            let _ = slot.database.compare_exchange(db, 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

fn zero(slot: &Slot) {
    for c in &slot.counters {
        c.store(0, Ordering::Relaxed);
    }
    slot.reset_at.store(0, Ordering::Release);
}

fn postmaster_start() -> i64 {
    // SAFETY: reads a global set at server start.
    unsafe { pg_sys::PgStartTime }
}

/// `workflow.stats_counters()`: (name, value, stats_reset) per counter of this database;
/// value and stats_reset are NULL when nothing is counted (no preload, or no free slot).
fn counters(_: &Args) -> Result<SetOf> {
    let place = table().and_then(|_| ensure_place());
    let rows = NAMES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (value, since) = match (table(), place) {
                (Some(t), Some(i)) => {
                    let slot = &t.slots[i];
                    let reset = slot.reset_at.load(Ordering::Acquire);
                    let since = if reset == 0 { postmaster_start() } else { reset };
                    (Field::Int8(slot.counters[k].load(Ordering::Relaxed) as i64), Field::TimestampTz(since))
                }
                _ => (Field::Null, Field::Null),
            };
            vec![Field::text(name), value, since]
        })
        .collect();
    Ok(SetOf(rows))
}

/// `workflow.stats_reset()`: zeroes this database's counters; returns the reset time, NULL
/// when nothing is counted.
fn reset(_: &Args) -> Result<TimestampTz> {
    let Some(i) = ensure_place() else { return Ok(TimestampTz(None)) };
    let t = table().expect("a place implies the table");
    // SAFETY: reads the clock.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let slot = &t.slots[i];
    for c in &slot.counters {
        c.store(0, Ordering::Relaxed);
    }
    slot.reset_at.store(now, Ordering::Release);
    Ok(TimestampTz(Some(now)))
}

sql_function!(wf_stats_counters, pg_finfo_wf_stats_counters, counters);
sql_function!(wf_stats_reset, pg_finfo_wf_stats_reset, reset);

#[cfg(test)]
mod tests {
    use super::{merge_into_parent, COUNTERS};

    fn counts(n: u64) -> [u64; COUNTERS] {
        let mut c = [0; COUNTERS];
        c[0] = n;
        c
    }

    #[test]
    fn a_released_subtransaction_hands_its_counts_to_its_parent() {
        // level 1: 1 event; level 2: 2; level 3: 4. Level 3 commits, then level 2 does.
        let staged = vec![(1, counts(1)), (2, counts(2)), (3, counts(4))];
        let after3 = merge_into_parent(staged, 3);
        assert_eq!(after3, vec![(1, counts(1)), (2, counts(6))]);
        let after2 = merge_into_parent(after3, 2);
        assert_eq!(after2, vec![(1, counts(7))]);
    }

    #[test]
    fn a_parent_without_its_own_counts_gets_an_entry() {
        let staged = vec![(1, counts(1)), (3, counts(4))];
        assert_eq!(merge_into_parent(staged, 3), vec![(1, counts(1)), (2, counts(4))]);
    }
}
