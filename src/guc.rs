//! Settings, set in postgresql.conf (or per role/database where the context allows).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// How long an executor's lease lasts after its last heartbeat.
pub static EXECUTOR_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// The largest input, output, error or message accepted, in bytes.
pub static MAX_PAYLOAD_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// How many times a PENDING run may be recovered before it is dead-lettered.
pub static MAX_RECOVERY_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// The one database the workers serve; empty (the default): every database.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// How often each scheduler loop runs tick() at the least.
pub static TICK_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How many scheduler loops run in each served database.
pub static SCHEDULER_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// How many SQL workers run in each database that has the extension.
pub static SQL_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Defines the settings. The workers' settings mean something only with the launcher, which
/// needs shared_preload_libraries: they are defined only while preloading.
pub fn init(preloading: bool) {
    if preloading {
        define_worker_settings();
    }
    GucRegistry::define_int_guc(
        c"workflow.tick_interval",
        c"The longest a scheduler worker sleeps between two tick() passes.",
        c"Workers also wake exactly when the next schedule is due.",
        &TICK_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"workflow.executor_timeout",
        c"How long an executor's lease lasts after its last heartbeat.",
        c"When it passes, the executor's PENDING runs may be claimed by others and are recovered by workflow.tick().",
        &EXECUTOR_TIMEOUT_MS,
        100,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"workflow.max_payload_size",
        c"The largest jsonb input, output, error or message accepted.",
        c"Larger values are rejected with SQLSTATE 54000.",
        &MAX_PAYLOAD_SIZE,
        1024,
        1024 * 1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"workflow.max_recovery_attempts",
        c"How many times a PENDING run may be recovered before it is dead-lettered.",
        c"A run recovered more often gets status MAX_RECOVERY_ATTEMPTS_EXCEEDED; workflow.resume() re-enqueues it.",
        &MAX_RECOVERY_ATTEMPTS,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

fn define_worker_settings() {
    GucRegistry::define_string_guc(
        c"workflow.database",
        c"The one database whose schedules, recovery and SQL runs the workers serve; empty: every database.",
        c"Empty (the default) serves every database that has the extension.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"workflow.scheduler_workers",
        c"How many scheduler workers run tick() in a loop in each served database (0 to 8).",
        c"",
        &SCHEDULER_WORKERS,
        0,
        8,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"workflow.sql_workers",
        c"How many SQL workers claim SQL workflows' runs in each served database (0 to 8).",
        c"Scheduler worker 1 of each database keeps them running.",
        &SQL_WORKERS,
        0,
        8,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn executor_timeout_ms() -> i64 {
    EXECUTOR_TIMEOUT_MS.get() as i64
}

pub fn max_payload_bytes() -> usize {
    MAX_PAYLOAD_SIZE.get() as usize
}

/// The one database to serve, or None: every database.
pub fn database() -> Option<String> {
    DATABASE.get().and_then(|c| c.into_string().ok()).filter(|name| !name.is_empty())
}
