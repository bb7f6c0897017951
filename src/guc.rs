//! Settings, set in postgresql.conf (or per role/database where the context allows).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// How long an executor's lease lasts after its last heartbeat.
pub static EXECUTOR_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// The largest input, output, error or message accepted, in bytes.
pub static MAX_PAYLOAD_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// How many times a PENDING run may be recovered before it is dead-lettered.
pub static MAX_RECOVERY_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(100);

pub fn init() {
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

pub fn executor_timeout_ms() -> i64 {
    EXECUTOR_TIMEOUT_MS.get() as i64
}

pub fn max_payload_bytes() -> usize {
    MAX_PAYLOAD_SIZE.get() as usize
}
