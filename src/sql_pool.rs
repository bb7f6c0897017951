//! The SQL workers of one database (`workflow.sql_workers`, per database), kept running by
//! that database's scheduler #1 once the extension and its SQL workflows' table exist. Each is
//! a dynamic background worker that claims its registry slot and calls `sql_worker::serve`.
//! Their leases are renewed by the schedulers (worker.rs), so recovery covers them like any
//! other executor once they are gone.

use crate::registry::{self, Kind};
use crate::spawn::{self, Keeper};
use crate::{guc, sql_worker};
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

/// The SQL workers that scheduler #1 keeps running.
#[derive(Default)]
pub struct Pool {
    keeper: Keeper,
}

impl Pool {
    /// Starts the missing workers when `ready` (extension and table present) and the database
    /// is not paused; stops those beyond `workflow.sql_workers` after the setting shrinks.
    /// Workers of an extension that is gone stop by themselves (`serve` returns).
    pub fn keep(&mut self, database: Oid, ready: bool) {
        let count = guc::SQL_WORKERS.get();
        let live: Vec<_> = registry::live(database)
            .into_iter()
            .filter(|&(kind, _, _)| kind == Kind::Sql)
            .collect();
        for &(_, index, pid) in &live {
            if index > count {
                spawn::terminate(pid);
            }
        }
        let wanted: Vec<_> = if ready && !registry::paused(database) {
            (1..=count).map(|index| (Kind::Sql, database, index)).collect()
        } else {
            Vec::new()
        };
        let live: Vec<_> = live.iter().map(|&(kind, index, _)| (kind, database, index)).collect();
        self.keeper.keep(&wanted, &live);
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_workflow_sql_worker_main(arg: pg_sys::Datum) {
    let (_, index) = spawn::enter(arg, Kind::Sql);
    sql_worker::serve(index);
    // SAFETY: a clean exit: serve returned because the extension is gone.
    unsafe { pg_sys::proc_exit(0) };
}
