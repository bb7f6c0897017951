//! A per-backend cache that learns only from committed state.
//!
//! What a transaction reads may never commit (it rolls back, or a subtransaction around the
//! read does), so an entry learned inside a transaction is *staged*: it is visible to later
//! lookups of the same transaction, becomes a cached fact at COMMIT, and is dropped at ABORT,
//! at PREPARE, and when the subtransaction that learned it rolls back. Any relcache
//! invalidation (DROP/CREATE EXTENSION, TRUNCATE, ...) clears everything, committed or not.
//!
//! Entries are still checked by their users against the wake board's epochs: this module
//! decides only *whether* a fact may be kept, not how long it stays true.

use pgrx::pg_sys;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;

/// What a cache holds: one entry per key.
pub trait Entry: 'static {
    fn key(&self) -> &str;
}

pub struct TxCache<E: Entry> {
    committed: RefCell<Vec<E>>,
    /// (subtransaction nesting level that learned it, entry)
    staged: RefCell<Vec<(i32, E)>>,
    capacity: usize,
    callbacks_registered: Cell<bool>,
}

// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl<E: Entry> Sync for TxCache<E> {}

impl<E: Entry> TxCache<E> {
    pub const fn new(capacity: usize) -> Self {
        TxCache {
            committed: RefCell::new(Vec::new()),
            staged: RefCell::new(Vec::new()),
            capacity,
            callbacks_registered: Cell::new(false),
        }
    }

    /// `look` applied to the latest entry for `key` (this transaction's own first, then the
    /// committed one), without copying it: a step checks its run here on every call.
    pub fn with<R>(&self, key: &str, look: impl FnOnce(&E) -> R) -> Option<R> {
        let staged = self.staged.borrow();
        if let Some((_, e)) = staged.iter().rev().find(|(_, e)| e.key() == key) {
            return Some(look(e));
        }
        self.committed.borrow().iter().find(|e| e.key() == key).map(look)
    }

    /// Stages `entry`: it becomes a cached fact only if the current transaction commits.
    pub fn learn(&'static self, entry: E) {
        self.register_callbacks();
        // SAFETY: reads the current transaction's nesting level.
        let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
        let mut staged = self.staged.borrow_mut();
        staged.retain(|(_, e)| e.key() != entry.key());
        staged.push((level, entry));
    }

    /// Drops `key` at once, committed or staged.
    pub fn forget(&self, key: &str) {
        self.committed.borrow_mut().retain(|e| e.key() != key);
        self.staged.borrow_mut().retain(|(_, e)| e.key() != key);
    }

    fn clear(&self) {
        self.committed.borrow_mut().clear();
        self.staged.borrow_mut().clear();
    }

    fn commit(&self) {
        let staged = std::mem::take(&mut *self.staged.borrow_mut());
        let mut committed = self.committed.borrow_mut();
        for (_, entry) in staged {
            committed.retain(|e| e.key() != entry.key());
            if committed.len() >= self.capacity {
                committed.remove(0);
            }
            committed.push(entry);
        }
    }

    fn register_callbacks(&'static self) {
        if self.callbacks_registered.replace(true) {
            return;
        }
        let arg = (self as *const Self).cast_mut().cast::<c_void>();
        // SAFETY: `self` is 'static, so the pointer handed to Postgres stays valid for the
        // life of the backend; each callback casts it back to the same type.
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_xact_end::<E>), arg);
            pg_sys::RegisterSubXactCallback(Some(at_subxact_end::<E>), arg);
            pg_sys::CacheRegisterRelcacheCallback(Some(at_relcache_invalidation::<E>), pg_sys::Datum::from(arg));
        }
    }
}

/// # Safety
/// `arg` must be the `&'static TxCache<E>` that `register_callbacks` registered.
unsafe fn cache<'a, E: Entry>(arg: *mut c_void) -> &'a TxCache<E> {
    // SAFETY: guaranteed by the caller.
    unsafe { &*arg.cast::<TxCache<E>>() }
}

// SAFETY (all three callbacks): Postgres calls them with the argument they were registered with.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_xact_end<E: Entry>(event: pg_sys::XactEvent::Type, arg: *mut c_void) {
    // SAFETY: registered with this cache as its argument.
    let cache = unsafe { cache::<E>(arg) };
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => cache.commit(),
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => cache.staged.borrow_mut().clear(),
        _ => {}
    }
}

// SAFETY: see at_xact_end.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_subxact_end<E: Entry>(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    arg: *mut c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        // SAFETY: registered with this cache as its argument; the aborting subtransaction is
        // still the current one, so its level and deeper ones are what it learned.
        let (cache, level) = unsafe { (cache::<E>(arg), pg_sys::GetCurrentTransactionNestLevel()) };
        cache.staged.borrow_mut().retain(|(learned_at, _)| *learned_at < level);
    }
}

// SAFETY: see at_xact_end.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_relcache_invalidation<E: Entry>(arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    // SAFETY: registered with this cache as its argument.
    unsafe { cache::<E>(arg.cast_mut_ptr()) }.clear();
}
