//! A backend-local memory of runs known to be PENDING, so `step_put` can skip reading the
//! run row on every step.
//!
//! An entry is trusted only while the epoch of the run's wake slot is unchanged: every change
//! that ends or takes over a run (finish, fail, cancel, claim, recovery) marks that slot, and
//! the epoch moves right after the change commits. Relcache invalidations (DROP EXTENSION,
//! TRUNCATE, ...) clear the whole cache. Without shared memory there are no epochs, and
//! nothing is cached.
//!
//! A status changed by hand with UPDATE bypasses the epochs; use workflow.cancel().

use crate::wake;
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};

const CAPACITY: usize = 32;

struct Entry {
    workflow_id: String,
    slot: usize,
    epoch: u64,
    deadline: Option<pg_sys::TimestampTz>,
}

struct Cache {
    entries: RefCell<Vec<Entry>>,
    callback_registered: Cell<bool>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Cache {}

static CACHE: Cache = Cache { entries: RefCell::new(Vec::new()), callback_registered: Cell::new(false) };

/// The run's wake slot.
pub fn slot(workflow_id: &str) -> usize {
    wake::slot_of("run", workflow_id)
}

/// Read before the statement whose result you will `remember`.
pub fn epoch_now(workflow_id: &str) -> Option<u64> {
    wake::epoch(slot(workflow_id))
}

/// Records that the run was PENDING with this deadline as of `epoch`.
pub fn remember(workflow_id: &str, epoch: Option<u64>, deadline: Option<pg_sys::TimestampTz>) {
    let Some(epoch) = epoch else { return };
    if !CACHE.callback_registered.replace(true) {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_all), pg_sys::Datum::from(0)) };
    }
    let mut entries = CACHE.entries.borrow_mut();
    entries.retain(|e| e.workflow_id != workflow_id);
    if entries.len() >= CAPACITY {
        entries.remove(0);
    }
    entries.push(Entry { workflow_id: workflow_id.to_string(), slot: slot(workflow_id), epoch, deadline });
}

/// Drops the run at once in this backend (other backends follow when the epoch moves).
pub fn forget(workflow_id: &str) {
    CACHE.entries.borrow_mut().retain(|e| e.workflow_id != workflow_id);
}

/// True when the run is known to be PENDING and within its deadline right now.
pub fn is_known_live(workflow_id: &str) -> bool {
    let entries = CACHE.entries.borrow();
    let Some(e) = entries.iter().find(|e| e.workflow_id == workflow_id) else { return false };
    if wake::epoch(e.slot) != Some(e.epoch) {
        return false;
    }
    match e.deadline {
        None => true,
        Some(deadline) => (unsafe { pg_sys::GetCurrentTimestamp() }) < deadline,
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_all(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    CACHE.entries.borrow_mut().clear();
}
