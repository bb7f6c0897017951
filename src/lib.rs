//! pg_workflow: durable workflows, queues and cron inside PostgreSQL.
//!
//! This file is the table of contents. The SQL surface is declared in `sql/api.sql`; each
//! function there is a thin C entry point in one of the modules below.

use pgrx::prelude::*;

mod cron;
mod dequeue;
mod error;
mod executor;
mod fmgr;
mod guc;
mod launcher;
mod messaging;
mod operations;
mod queue;
mod queue_cache;
mod recovery;
mod registry;
mod run_cache;
mod schedule;
mod shmem;
mod spawn;
mod spi;
mod sql_pool;
mod sql_step;
mod sql_worker;
mod sql_workflow;
mod stats;
mod step;
mod tick;
mod tx_cache;
mod user_sql;
mod utility;
mod validate;
mod wake;
mod warn;
mod worker;
mod workflow;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/api.sql", name = "api", requires = ["schema"]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["schema", "api"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a global that the postmaster sets while it loads preloaded libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    guc::init(preloading);
    if preloading {
        shmem::init();
        utility::install();
        launcher::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Settings for the server that `cargo pgrx test` starts: the project's one settings file.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        include_str!("../pg_test_config/postgresql.conf")
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .collect()
    }
}
