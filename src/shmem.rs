//! Shared memory: one pair of hooks that sizes and attaches every shared structure of ours (the
//! wake-up board of wake.rs, the worker registry of registry.rs, the counters of stats.rs). Needs shared_preload_libraries.

use crate::{registry, stats, wake};
use pgrx::pg_sys;

static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Installs the shared-memory hooks. Call from `_PG_init` while preloading.
pub fn init() {
    // SAFETY: _PG_init runs in the postmaster before any backend exists; hooks are chained.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_shmem);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_shmem);
    }
}

/// Finds the shared structure `name` of `size` bytes, or creates it all zero bytes; returns it
/// and whether this call created it (the caller then initialises what zero bytes do not).
///
/// # Safety
/// Only from `attach` functions called by the startup hook below, under AddinShmemInitLock.
pub unsafe fn zeroed_struct<T>(name: &std::ffi::CStr, size: usize) -> (*mut T, bool) {
    // SAFETY: see above; the memory is `size` bytes, written before anyone reads it.
    unsafe {
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(name.as_ptr(), size, &mut found);
        if !found {
            std::ptr::write_bytes(ptr.cast::<u8>(), 0, size);
        }
        (ptr.cast::<T>(), !found)
    }
}

// SAFETY: Postgres calls the hook once, in the postmaster, while shared memory is sized.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request_shmem() {
    // SAFETY: see above.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(wake::SHMEM_SIZE + registry::SHMEM_SIZE + stats::SHMEM_SIZE);
        registry::request_lock();
    }
}

// SAFETY: Postgres calls the hook in each process that attaches shared memory.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn startup_shmem() {
    // SAFETY: ShmemInitStruct under AddinShmemInitLock, as the docs prescribe: each structure
    // is initialised once, by whoever creates it.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        // AddinShmemInitLock is a macro in C: slot 21 of the main LWLock array.
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        wake::attach();
        registry::attach();
        stats::attach();
        pg_sys::LWLockRelease(init_lock);
    }
}
