//! A ProcessUtility hook, in every backend (the library is preloaded), for the statements that
//! need a database without other sessions: DROP DATABASE x, ALTER DATABASE x RENAME, ALTER
//! DATABASE x SET TABLESPACE, CREATE DATABASE y TEMPLATE x. Postgres 15 gives background
//! workers no way to be asked to leave (CountOtherDBBackends waits 5 s, then fails with "being
//! accessed by other users"), so before the statement runs, the hook pauses x (the launcher
//! and scheduler #1 then start nothing there, and a worker that starts anyway does not claim
//! its slot and exits), asks our workers in x to exit and waits, bounded, until they have. The
//! pause ends when the transaction ends, committed or not (a DROP DATABASE must not see our
//! workers come back before its commit), or after PAUSE_MS at the latest.
//!
//! It also tells the launcher about a committed CREATE EXTENSION pg_workflow (the database is
//! no longer dormant) and CREATE DATABASE (a new database to look at).

use crate::registry;
use crate::spawn;
use pgrx::pg_sys::{self, Oid};
use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// The pause's safety net, should the end of the transaction never come (a crash resets it).
const PAUSE_MS: i64 = 60_000;
/// How long to wait for our workers to leave; after that the statement runs anyway.
const WAIT_AT_MOST: Duration = Duration::from_secs(10);

static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

struct Pending {
    paused: RefCell<Vec<Oid>>,
    extension_created: Cell<bool>,
    database_created: Cell<bool>,
    callback_registered: Cell<bool>,
}
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Pending {}

static PENDING: Pending = Pending {
    paused: RefCell::new(Vec::new()),
    extension_created: Cell::new(false),
    database_created: Cell::new(false),
    callback_registered: Cell::new(false),
};

/// Installs the hook; call from `_PG_init` while preloading.
pub fn install() {
    // SAFETY: _PG_init runs before any statement; the previous hook is chained.
    unsafe {
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

// SAFETY: Postgres calls the hook with valid arguments; we pass them on unchanged.
#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: pstmt is a valid PlannedStmt for a utility statement.
    let stmt = unsafe { (*pstmt).utilityStmt };
    if registry::available() {
        // SAFETY: stmt is a valid parse node (or null).
        if let Some((name, in_block_too)) = unsafe { database_needing_no_sessions(stmt) } {
            // SAFETY: name is a NUL-ended string of the parse tree.
            let oid = unsafe { pg_sys::get_database_oid(name.as_ptr(), true) };
            if oid != pg_sys::InvalidOid && may_succeed(oid, in_block_too) {
                empty_database(oid);
            }
        }
    }
    // SAFETY: the same arguments, to the previous hook or the standard implementation.
    unsafe {
        match PREV_UTILITY {
            Some(prev) => prev(pstmt, query, read_only_tree, context, params, query_env, dest, qc),
            None => pg_sys::standard_ProcessUtility(pstmt, query, read_only_tree, context, params, query_env, dest, qc),
        }
    }
    if registry::available() {
        // SAFETY: as above; the statement succeeded.
        match unsafe { created(stmt) } {
            Some(Created::Extension) => remember_for_transaction_end(|p| p.extension_created.set(true)),
            Some(Created::Database) => remember_for_transaction_end(|p| p.database_created.set(true)),
            None => {}
        }
    }
}

/// The database x of the four statements above, and whether the statement may run inside a
/// transaction block (only RENAME may); or None.
unsafe fn database_needing_no_sessions(stmt: *mut pg_sys::Node) -> Option<(&'static CStr, bool)> {
    if stmt.is_null() {
        return None;
    }
    // SAFETY: the node tag says which struct the node is.
    unsafe {
        let name = match (*stmt).type_ {
            pg_sys::NodeTag::T_DropdbStmt => (*stmt.cast::<pg_sys::DropdbStmt>()).dbname,
            pg_sys::NodeTag::T_RenameStmt => {
                let rename = &*stmt.cast::<pg_sys::RenameStmt>();
                if rename.renameType != pg_sys::ObjectType::OBJECT_DATABASE {
                    return None;
                }
                rename.subname
            }
            pg_sys::NodeTag::T_AlterDatabaseStmt => {
                let alter = &*stmt.cast::<pg_sys::AlterDatabaseStmt>();
                option(alter.options, c"tablespace")?;
                alter.dbname
            }
            pg_sys::NodeTag::T_CreatedbStmt => {
                let create = &*stmt.cast::<pg_sys::CreatedbStmt>();
                let template = option(create.options, c"template")?;
                if (*template).arg.is_null() {
                    return None; // TEMPLATE DEFAULT: template1, which we never serve
                }
                pg_sys::defGetString(template)
            }
            _ => return None,
        };
        let in_block_too = (*stmt).type_ == pg_sys::NodeTag::T_RenameStmt;
        (!name.is_null()).then(|| (CStr::from_ptr(name), in_block_too))
    }
}

/// Whether the statement may succeed, so that it may stop our workers: only the database's
/// owner (or a superuser) may drop, rename or move it, or copy it (it is no template: we do
/// not serve templates), and none of those but RENAME runs inside a transaction block. Anyone
/// else's attempt fails in standard_ProcessUtility without touching the workers.
fn may_succeed(oid: Oid, in_block_too: bool) -> bool {
    // SAFETY: catalog lookups and a state check of this backend, inside the statement's
    // transaction.
    unsafe { pg_sys::pg_database_ownercheck(oid, pg_sys::GetUserId()) && (in_block_too || !pg_sys::IsTransactionBlock()) }
}

/// The DefElem named `name` in a list of options.
unsafe fn option(options: *mut pg_sys::List, name: &CStr) -> Option<*mut pg_sys::DefElem> {
    if options.is_null() {
        return None;
    }
    // SAFETY: a List of DefElem nodes, as the grammar builds it.
    unsafe {
        (0..(*options).length as usize)
            .map(|i| (*(*options).elements.add(i)).ptr_value.cast::<pg_sys::DefElem>())
            .find(|&d| !(*d).defname.is_null() && CStr::from_ptr((*d).defname) == name)
    }
}

enum Created {
    Extension,
    Database,
}

unsafe fn created(stmt: *mut pg_sys::Node) -> Option<Created> {
    if stmt.is_null() {
        return None;
    }
    // SAFETY: the node tag says which struct the node is.
    unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_CreateExtensionStmt => {
                let name = (*stmt.cast::<pg_sys::CreateExtensionStmt>()).extname;
                (!name.is_null() && CStr::from_ptr(name) == c"pg_workflow").then_some(Created::Extension)
            }
            pg_sys::NodeTag::T_CreatedbStmt => Some(Created::Database),
            _ => None,
        }
    }
}

/// Pauses the database until the end of this transaction, asks our workers there to exit, and
/// waits until they have (at most WAIT_AT_MOST; a query cancel ends the wait too).
fn empty_database(oid: Oid) {
    if !registry::pause(oid, PAUSE_MS) {
        return; // the registry is full: CountOtherDBBackends will say who is in the way
    }
    remember_for_transaction_end(|p| p.paused.borrow_mut().push(oid));
    let deadline = Instant::now() + WAIT_AT_MOST;
    let mut asked = Vec::new();
    loop {
        let live = registry::live(oid);
        if live.is_empty() || Instant::now() >= deadline {
            break;
        }
        for &(_, _, pid) in &live {
            if !asked.contains(&pid) {
                spawn::terminate(pid);
                asked.push(pid);
            }
        }
        // SAFETY: a bounded sleep on our own latch; an interrupt (cancel) raises here.
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                10,
                pg_sys::PG_WAIT_EXTENSION,
            );
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        pgrx::check_for_interrupts!();
    }
}

/// Records something for the end of the transaction, registering the callback once.
fn remember_for_transaction_end(record: impl FnOnce(&Pending)) {
    if !PENDING.callback_registered.replace(true) {
        // SAFETY: registers a guarded callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
    record(&PENDING);
}

// SAFETY: Postgres calls it at every transaction event; it touches only our own state and the
// registry.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let committed = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => true,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => false,
        _ => return,
    };
    let extension = PENDING.extension_created.replace(false);
    let database = PENDING.database_created.replace(false);
    if committed && extension {
        // SAFETY: reads this backend's database.
        registry::extension_created(unsafe { pg_sys::MyDatabaseId });
    }
    if committed && database {
        registry::wake_launcher();
    }
    for oid in std::mem::take(&mut *PENDING.paused.borrow_mut()) {
        registry::unpause(oid);
    }
}
