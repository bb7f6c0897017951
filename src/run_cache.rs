//! A backend-local memory of runs known to be PENDING, and who owns them, so `step_put` can
//! skip reading the run row on every step.
//!
//! An entry is learned only from committed state (`tx_cache`), and trusted only while the
//! epoch of the run's wake slot is unchanged: every change that ends or takes over a run
//! (finish, fail, cancel, a claim by start, recovery) marks that slot, and the epoch moves
//! right after the change commits. Without shared memory there are no epochs, and nothing is
//! cached. Outside READ COMMITTED nothing is learned or trusted: a REPEATABLE READ snapshot
//! can be older than the epoch read beside it.
//!
//! A status changed by hand with UPDATE bypasses the epochs; use workflow.cancel().

use crate::tx_cache::{self, TxCache};
use crate::wake;
use pgrx::pg_sys;

struct Entry {
    workflow_id: String,
    slot: usize,
    epoch: u64,
    deadline: Option<pg_sys::TimestampTz>,
    owner: Option<String>,
}

impl tx_cache::Entry for Entry {
    fn key(&self) -> &str {
        &self.workflow_id
    }
}

static CACHE: TxCache<Entry> = TxCache::new(32);

/// The run's wake slot.
pub fn slot(workflow_id: &str) -> usize {
    wake::slot_of("run", workflow_id)
}

/// True when this transaction sees the latest committed state (READ COMMITTED).
pub fn read_committed() -> bool {
    // SAFETY: reads a global of this backend.
    unsafe { pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// Read before the statement whose result you will `remember`.
pub fn epoch_now(workflow_id: &str) -> Option<u64> {
    wake::epoch(slot(workflow_id))
}

/// Records that the run was PENDING, owned by `owner`, with this deadline, as of `epoch`,
/// once the current transaction commits.
pub fn remember(workflow_id: &str, epoch: Option<u64>, deadline: Option<pg_sys::TimestampTz>, owner: Option<&str>) {
    let Some(epoch) = epoch else { return };
    if !read_committed() {
        return;
    }
    CACHE.learn(Entry {
        workflow_id: workflow_id.to_string(),
        slot: slot(workflow_id),
        epoch,
        deadline,
        owner: owner.map(str::to_string),
    });
}

/// Drops the run at once in this backend (other backends follow when the epoch moves).
pub fn forget(workflow_id: &str) {
    CACHE.forget(workflow_id);
}

/// True when the run is known to be PENDING and within its deadline right now, and, when
/// `executor` is given, owned by it.
pub fn is_known_live(workflow_id: &str, executor: Option<&str>) -> bool {
    if !read_committed() {
        return false;
    }
    CACHE
        .with(workflow_id, |e| {
            wake::epoch(e.slot) == Some(e.epoch)
                && (executor.is_none() || e.owner.as_deref() == executor)
                // SAFETY: reads the clock.
                && e.deadline.is_none_or(|deadline| unsafe { pg_sys::GetCurrentTimestamp() } < deadline)
        })
        .unwrap_or(false)
}
