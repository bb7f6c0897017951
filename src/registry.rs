//! Who runs where: one LWLock-protected table in shared memory that every per-database worker,
//! the launcher and the ProcessUtility hook share.
//!
//! - **Slots** {database, kind, index, pid}. A worker claims its slot right after connecting
//!   and frees it at exit (a `before_shmem_exit` callback). A slot already held by a live
//!   process makes the newcomer exit quietly, so a restarted launcher never runs duplicates. A
//!   pid in a slot always belongs to a live process: a process that dies without running its
//!   exit callbacks makes the postmaster reset shared memory, and this table with it.
//! - **Databases** {oid, state, paused_until}. `Dormant`: the extension is not installed, so
//!   the launcher starts nothing there until CREATE EXTENSION, its own restart, or a new oid.
//!   `Active`: scheduler #1 saw the extension, so the launcher starts the other schedulers too.
//!   `paused_until`: DROP/ALTER DATABASE is waiting for our workers to leave.
//! - **The launcher's latch**, so that anyone can wake it.
//!
//! Without `shared_preload_libraries` there is no table; every call is then a no-op.

use pgrx::pg_sys::{self, Oid};
use std::cell::Cell;

const MAX_SLOTS: usize = 1024;
const MAX_DATABASES: usize = 1024;
const TRANCHE: &std::ffi::CStr = c"pg_workflow registry";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u32)]
pub enum Kind {
    Scheduler = 1,
    Sql = 2,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum State {
    Unknown = 0,
    Active = 1,
    Dormant = 2,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    database: Oid,
    kind: u32, // 0: free
    index: i32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Database {
    oid: Oid, // InvalidOid: free
    state: u32,
    paused_until: pg_sys::TimestampTz,
}

#[repr(C)]
struct Registry {
    lock: *mut pg_sys::LWLock,
    launcher_latch: *mut pg_sys::Latch,
    /// Moves at every committed CREATE EXTENSION: a scheduler marks its database dormant only
    /// if no CREATE EXTENSION committed since it started looking (see `mark_dormant`).
    created_epoch: u64,
    slots: [Slot; MAX_SLOTS],
    databases: [Database; MAX_DATABASES],
}

struct Local {
    registry: Cell<*mut Registry>,
    claimed: Cell<Option<usize>>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Local {}

static LOCAL: Local = Local { registry: Cell::new(std::ptr::null_mut()), claimed: Cell::new(None) };

/// The table's size, for shmem.rs.
pub const SHMEM_SIZE: usize = std::mem::size_of::<Registry>();

/// Asks for the table's LWLock. # Safety: only from the shared-memory request hook (shmem.rs).
pub unsafe fn request_lock() {
    // SAFETY: called from the shared-memory request hook, in the postmaster.
    unsafe { pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), 1) };
}

/// Finds (or creates and zeroes) the table. # Safety: only from the shared-memory startup
/// hook (shmem.rs), under AddinShmemInitLock.
pub unsafe fn attach() {
    // SAFETY: called from the shared-memory startup hook, under AddinShmemInitLock; the named
    // tranche was requested in request_lock.
    unsafe {
        let (registry, created) = crate::shmem::zeroed_struct::<Registry>(c"pg_workflow registry", SHMEM_SIZE);
        if created {
            (*registry).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr())).lock;
        }
        LOCAL.registry.set(registry);
    }
}

/// Runs `f` on the table under its lock (exclusive or shared); None without shared memory.
fn with<R>(exclusive: bool, f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    let r = LOCAL.registry.get();
    if r.is_null() {
        return None;
    }
    let mode = if exclusive { pg_sys::LWLockMode::LW_EXCLUSIVE } else { pg_sys::LWLockMode::LW_SHARED };
    // SAFETY: the table lives as long as the server; the lock guards every field but the
    // lock pointer itself. `f` only reads and writes plain fields (no ereport), and an
    // ERROR would release LWLocks anyway (LWLockReleaseAll in the abort path).
    unsafe {
        pg_sys::LWLockAcquire((*r).lock, mode);
        let result = f(&mut *r);
        pg_sys::LWLockRelease((*r).lock);
        Some(result)
    }
}

pub fn available() -> bool {
    !LOCAL.registry.get().is_null()
}

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

impl Registry {
    fn database(&mut self, oid: Oid) -> Option<&mut Database> {
        self.databases.iter_mut().find(|d| d.oid == oid)
    }

    fn database_or_new(&mut self, oid: Oid) -> Option<&mut Database> {
        let at = self
            .databases
            .iter()
            .position(|d| d.oid == oid)
            .or_else(|| self.databases.iter().position(|d| d.oid == pg_sys::InvalidOid))?;
        let d = &mut self.databases[at];
        if d.oid != oid {
            *d = Database { oid, state: State::Unknown as u32, paused_until: 0 };
        }
        Some(d)
    }

    fn paused(&mut self, oid: Oid, at: pg_sys::TimestampTz) -> bool {
        self.database(oid).is_some_and(|d| d.paused_until > at)
    }
}

/// Claims (database, kind, index) for this process; false when a live process holds it or
/// the database is paused (the caller then exits quietly). The slot is freed at exit.
pub fn claim(database: Oid, kind: Kind, index: i32) -> bool {
    let at = now();
    // SAFETY: reads this backend's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    let claimed = with(true, |r| {
        if r.paused(database, at) {
            return None;
        }
        let same = |s: &Slot| s.kind == kind as u32 && s.database == database && s.index == index;
        if r.slots.iter().any(|s| same(s) && s.pid != 0) {
            return None;
        }
        let free = r.slots.iter().position(|s| s.kind == 0)?;
        r.slots[free] = Slot { database, kind: kind as u32, index, pid };
        Some(free)
    })
    .flatten();
    if let Some(slot) = claimed {
        LOCAL.claimed.set(Some(slot));
        // SAFETY: registers a guarded callback that runs once, at exit.
        unsafe { pg_sys::before_shmem_exit(Some(release_at_exit), pg_sys::Datum::from(slot)) };
    }
    claimed.is_some()
}

// SAFETY: Postgres calls it once, at exit, with the slot number we gave it.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn release_at_exit(_code: std::ffi::c_int, slot: pg_sys::Datum) {
    // SAFETY: reads this backend's pid.
    let pid = unsafe { pg_sys::MyProcPid };
    with(true, |r| {
        let s = &mut r.slots[slot.value()];
        if s.pid == pid {
            *s = Slot { database: pg_sys::InvalidOid, kind: 0, index: 0, pid: 0 };
        }
    });
    wake_launcher();
}

/// The live workers of a database: (kind, index, pid).
pub fn live(database: Oid) -> Vec<(Kind, i32, i32)> {
    with(false, |r| {
        r.slots
            .iter()
            .filter(|s| s.kind != 0 && s.database == database)
            .map(|s| (if s.kind == Kind::Sql as u32 { Kind::Sql } else { Kind::Scheduler }, s.index, s.pid))
            .collect()
    })
    .unwrap_or_default()
}

/// Every live worker: (database, kind, index, pid).
pub fn all_live() -> Vec<(Oid, Kind, i32, i32)> {
    with(false, |r| {
        r.slots
            .iter()
            .filter(|s| s.kind != 0)
            .map(|s| (s.database, if s.kind == Kind::Sql as u32 { Kind::Sql } else { Kind::Scheduler }, s.index, s.pid))
            .collect()
    })
    .unwrap_or_default()
}

pub fn state(database: Oid) -> State {
    with(true, |r| match r.database(database).map(|d| d.state) {
        Some(1) => State::Active,
        Some(2) => State::Dormant,
        _ => State::Unknown,
    })
    .unwrap_or(State::Unknown)
}

/// Scheduler #1 found the extension. The first time, the launcher is woken to start the
/// other schedulers at once.
pub fn mark_active(database: Oid) {
    let changed = with(true, |r| match r.database_or_new(database) {
        Some(d) if d.state != State::Active as u32 => {
            d.state = State::Active as u32;
            true
        }
        _ => false,
    });
    if changed == Some(true) {
        wake_launcher();
    }
}

/// The CREATE EXTENSION epoch; read it before the transaction that looks for the extension.
pub fn created_epoch() -> u64 {
    with(false, |r| r.created_epoch).unwrap_or(0)
}

/// Marks the database dormant, unless a CREATE EXTENSION committed since `seen_epoch` (then
/// the caller's look is stale: it looks again). True when marked.
pub fn mark_dormant(database: Oid, seen_epoch: u64) -> bool {
    with(true, |r| {
        if r.created_epoch != seen_epoch {
            return false;
        }
        match r.database_or_new(database) {
            Some(d) => {
                d.state = State::Dormant as u32;
                true
            }
            None => false,
        }
    })
    .unwrap_or(false)
}

/// A CREATE EXTENSION committed in `database`: it is no longer dormant.
pub fn extension_created(database: Oid) {
    with(true, |r| {
        r.created_epoch += 1;
        if let Some(d) = r.database(database) {
            d.state = State::Unknown as u32;
        }
    });
    wake_launcher();
}

/// Forgets the dormancy of one database (`Some`) or of all (`None`).
pub fn forget_dormancy(database: Option<Oid>) {
    with(true, |r| {
        for d in r.databases.iter_mut().filter(|d| database.is_none_or(|oid| d.oid == oid)) {
            if d.state == State::Dormant as u32 {
                d.state = State::Unknown as u32;
            }
        }
    });
}

/// Drops the entries of databases that no longer exist (and are not paused).
pub fn retain_databases(existing: &[Oid]) {
    let at = now();
    with(true, |r| {
        for d in r.databases.iter_mut() {
            if d.oid != pg_sys::InvalidOid && !existing.contains(&d.oid) && d.paused_until <= at {
                d.oid = pg_sys::InvalidOid;
            }
        }
    });
}

/// Pauses a database until `for_ms` from now; false when the table is full.
pub fn pause(database: Oid, for_ms: i64) -> bool {
    let until = now() + for_ms * 1000;
    with(true, |r| match r.database_or_new(database) {
        Some(d) => {
            d.paused_until = until;
            true
        }
        None => false,
    })
    .unwrap_or(false)
}

pub fn unpause(database: Oid) {
    with(true, |r| {
        if let Some(d) = r.database(database) {
            d.paused_until = 0;
        }
    });
    wake_launcher();
}

pub fn paused(database: Oid) -> bool {
    let at = now();
    with(true, |r| r.paused(database, at)).unwrap_or(false)
}

/// Called by the launcher at start: it is the one to wake from now on.
pub fn set_launcher_latch(latch: *mut pg_sys::Latch) {
    with(true, |r| r.launcher_latch = latch);
}

/// Sets the launcher's latch (a no-op while no launcher runs).
pub fn wake_launcher() {
    with(false, |r| {
        if !r.launcher_latch.is_null() {
            // SAFETY: the latch is a PGPROC's, in shared memory for the life of the server;
            // setting the latch of a process that has exited is a harmless spurious wake-up.
            unsafe { pg_sys::SetLatch(r.launcher_latch) };
        }
    });
}
