//! The SQL workers: background workers that claim the runs of SQL workflows (sql_workflow.rs)
//! from every queue of their database and execute their steps.
//!
//! SCAFFOLD: `serve` is being written; the launcher starts workers that call it.

/// The executor id of SQL worker `index` (1-based) of this database. Fixed per slot, so that a
/// restarted worker takes back the runs its previous incarnation left PENDING at once.
pub fn executor_id(index: i32) -> String {
    format!("pg_workflow:sql:{index}")
}

/// The worker's loop, entered connected to its database, with signals set up. Returns when the
/// worker should exit (the extension is gone).
pub fn serve(index: i32) {
    let _ = index;
    let waiter = crate::wake::Waiter::new(crate::wake::sql_slot());
    loop {
        let seen = waiter.epoch();
        waiter.sleep(seen, 1000);
    }
}
