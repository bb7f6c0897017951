//! Wake-ups without polling: a board of condition variables in shared memory.
//!
//! A waiter hashes what it waits for (a workflow id, later a queue or a topic) to one of
//! `SLOTS` condition variables and sleeps on it. A writer marks the same slot during its
//! transaction; the slots are broadcast right after COMMIT, once the change is visible, and
//! forgotten on ABORT. Two keys that share a slot only cause a spurious re-check.
//!
//! Each slot also has an epoch, bumped at the same moment as the broadcast. A backend may
//! cache "run X was PENDING at epoch E" and trust it while the epoch of X's slot is still E
//! (see `run_cache.rs`).
//!
//! The board needs `shared_preload_libraries`. Without it, `sleep` falls back to a short
//! bounded sleep on the process latch, so callers re-check a few times a second.

use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::hash::{Hash, Hasher};

const SLOTS: usize = 1024;
/// How long an unpreloaded waiter sleeps between checks.
const FALLBACK_MS: i64 = 50;

#[repr(C)]
struct Board {
    slots: [pg_sys::ConditionVariable; SLOTS],
    epochs: [AtomicU64; SLOTS],
}

struct Shared {
    board: Cell<*mut Board>,
    callback_registered: Cell<bool>,
    pending: RefCell<Vec<usize>>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Shared {}

static SHARED: Shared = Shared {
    board: Cell::new(std::ptr::null_mut()),
    callback_registered: Cell::new(false),
    pending: RefCell::new(Vec::new()),
};

/// The board's size, for shmem.rs.
pub const SHMEM_SIZE: usize = std::mem::size_of::<Board>();

/// Finds (or creates and initialises) the board. # Safety: only from the shared-memory
/// startup hook (shmem.rs), under AddinShmemInitLock.
pub unsafe fn attach() {
    // SAFETY: called from the shared-memory startup hook, under AddinShmemInitLock.
    unsafe {
        // Zero bytes are the epochs' start; the condition variables need their own init.
        let (board, created) = crate::shmem::zeroed_struct::<Board>(c"pg_workflow wake board", SHMEM_SIZE);
        if created {
            for slot in (*board).slots.iter_mut() {
                pg_sys::ConditionVariableInit(slot);
            }
        }
        SHARED.board.set(board);
    }
}

/// The slot that a schedule change notifies, so that sleeping schedulers recompute their next
/// wake-up. It lives here, with the board, so that cron (schedule.rs) needs no worker.
pub fn scheduler_slot() -> usize {
    slot_of("scheduler", "")
}

/// The slot that an enqueue of a SQL workflow's run notifies: the SQL workers of every
/// database sleep on it (a wake-up meant for another database costs them one query).
pub fn sql_slot() -> usize {
    slot_of("sql runs", "")
}

/// Which slot a key sleeps on. Stable across processes: the hasher has fixed keys.
pub fn slot_of(kind: &str, key: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut h);
    key.hash(&mut h);
    (h.finish() as usize) % SLOTS
}

fn board() -> Option<*mut Board> {
    let b = SHARED.board.get();
    (!b.is_null()).then_some(b)
}

fn condition_variable(slot: usize) -> Option<*mut pg_sys::ConditionVariable> {
    // SAFETY: the board lives for the life of the server; slot < SLOTS by construction.
    board().map(|b| unsafe { &raw mut (*b).slots[slot] })
}

/// The slot's epoch, or None without shared memory. Read it *before* taking the snapshot
/// that the cached fact comes from, so a change that commits in between is not missed.
pub fn epoch(slot: usize) -> Option<u64> {
    // SAFETY: as in condition_variable; the epochs are atomics.
    board().map(|b| unsafe { (*b).epochs[slot].load(Ordering::Acquire) })
}

/// Marks `slot` to be woken when the current transaction commits.
pub fn notify_on_commit(slot: usize) {
    if board().is_none() {
        return; // nobody sleeps on a board that does not exist
    }
    if !SHARED.callback_registered.replace(true) {
        // SAFETY: registers a guarded callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
    let mut pending = SHARED.pending.borrow_mut();
    if !pending.contains(&slot) {
        pending.push(slot);
    }
}

// SAFETY: Postgres calls it at every transaction event; it touches only our own state and the board.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    let commit = match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => true,
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => false,
        // A prepared transaction commits later, in COMMIT PREPARED, which runs no callback of
        // ours: its wake-ups and epoch moves would be lost, and caches would trust stale runs.
        pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE if !SHARED.pending.borrow().is_empty() => {
            SHARED.pending.borrow_mut().clear();
            let e = crate::error::WorkflowError::PreparedTransaction;
            pgrx::ereport!(
                pgrx::PgLogLevel::ERROR,
                pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                e.to_string(),
                "Run workflow calls that wake others (finish, cancel, enqueue, send, ...) outside a prepared transaction."
            );
            return;
        }
        _ => return,
    };
    let slots = std::mem::take(&mut *SHARED.pending.borrow_mut());
    if let (true, Some(b)) = (commit, board()) {
        for slot in slots {
            // SAFETY: slots come from slot_of, so they are < SLOTS; the board outlives us.
            unsafe {
                (*b).epochs[slot].fetch_add(1, Ordering::AcqRel);
                pg_sys::ConditionVariableBroadcast(&raw mut (*b).slots[slot]);
            }
        }
    }
}

/// How often a waiter re-checks even without a wake-up: the safety net for changes that no
/// commit announced (a status changed with plain UPDATE).
const RECHECK_MS: i64 = 1000;

/// How long a waiter whose wait ends at `deadline` (None: never) may sleep now: at most
/// RECHECK_MS, at least 1 ms; None once the deadline has passed.
pub fn nap_ms(deadline: Option<std::time::Instant>) -> Option<i64> {
    match deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())) {
        Some(left) if left.is_zero() => None,
        Some(left) => Some((left.as_millis() as i64).clamp(1, RECHECK_MS)),
        None => Some(RECHECK_MS),
    }
}

/// One waiter on a slot. The protocol, which loses no wake-up:
/// 1. `let seen = waiter.epoch();` before the statement that checks the condition;
/// 2. check; if it does not hold,
/// 3. `waiter.sleep(seen, ms)`: it registers on the condition variable, then returns at once if
///    the slot's epoch moved since `seen` (a commit came after the check's snapshot), and
///    otherwise sleeps until a broadcast, the timeout, or an interrupt.
///
/// Registering anew on every sleep matters: a subtransaction abort cancels a registration.
pub struct Waiter {
    slot: usize,
    cv: Option<*mut pg_sys::ConditionVariable>,
}

impl Waiter {
    pub fn new(slot: usize) -> Self {
        Waiter { slot, cv: condition_variable(slot) }
    }

    pub fn epoch(&self) -> Option<u64> {
        epoch(self.slot)
    }

    /// Sleeps as described above. A query cancel or statement_timeout raises here, as
    /// Postgres' CHECK_FOR_INTERRUPTS does.
    pub fn sleep(&self, seen: Option<u64>, timeout_ms: i64) {
        let timeout_ms = timeout_ms.clamp(0, i32::MAX as i64);
        // SAFETY: cv points into the board; MyLatch is this backend's latch.
        unsafe {
            match self.cv {
                Some(cv) => {
                    pg_sys::ConditionVariablePrepareToSleep(cv);
                    if epoch(self.slot) != seen {
                        return;
                    }
                    pg_sys::ConditionVariableTimedSleep(cv, timeout_ms as _, pg_sys::PG_WAIT_EXTENSION);
                }
                None => {
                    let events = pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH;
                    pg_sys::WaitLatch(
                        pg_sys::MyLatch,
                        events as i32,
                        timeout_ms.min(FALLBACK_MS) as _,
                        pg_sys::PG_WAIT_EXTENSION,
                    );
                    pg_sys::ResetLatch(pg_sys::MyLatch);
                    pgrx::check_for_interrupts!();
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.cv.is_some() {
            // SAFETY: cancelling is a no-op when this backend is not prepared to sleep.
            unsafe { pg_sys::ConditionVariableCancelSleep() };
        }
    }
}
