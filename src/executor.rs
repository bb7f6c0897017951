//! Executors and their leases. A lease is renewed by `heartbeat`, never by step calls, so
//! lease upkeep stays off the per-step hot path.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Raw};
use crate::spi::{self, Out, Statement, TEXT};
use crate::{guc, sql_function};
use pgrx::pg_sys::INT8OID as INT8;
use pgrx::IntoDatum;

static REGISTER: Statement = Statement::new(
    c"INSERT INTO workflow.executor AS e (executor_id, app_version) VALUES ($1, $2)
      ON CONFLICT (executor_id) DO UPDATE
         SET app_version = EXCLUDED.app_version, last_heartbeat = now()
      RETURNING e.last_heartbeat + $3 * interval '1 millisecond'",
    &[TEXT, TEXT, INT8],
);

static HEARTBEAT: Statement = Statement::new(
    c"UPDATE workflow.executor SET last_heartbeat = now() WHERE executor_id = $1
      RETURNING last_heartbeat + $2 * interval '1 millisecond'",
    &[TEXT, INT8],
);

/// Registers (or re-registers) an executor; returns when its lease expires.
fn register(args: &Args) -> Result<Raw> {
    let executor_id = args.name(0, "executor_id")?;
    let app_version = args.text(1);
    if app_version.as_deref() == Some(crate::sql_workflow::APP_VERSION) {
        return Err(WorkflowError::ReservedAppVersion);
    }
    let timeout = guc::executor_timeout_ms().into_datum();
    spi::connect(|c| {
        let rows = REGISTER.run(c, &[text_datum(&executor_id), app_version.as_deref().and_then(text_datum), timeout]);
        Ok(Raw(rows.int8(0, 1).map(Out::by_value)))
    })
}

/// Renews the lease; returns when it now expires.
fn heartbeat(args: &Args) -> Result<Raw> {
    let executor_id = args.name(0, "executor_id")?;
    let timeout = guc::executor_timeout_ms().into_datum();
    spi::connect(|c| {
        let rows = HEARTBEAT.run(c, &[text_datum(&executor_id), timeout]);
        match rows.int8(0, 1) {
            Some(expires) => Ok(Raw(Some(Out::by_value(expires)))),
            None => Err(WorkflowError::UnknownExecutor { executor_id }),
        }
    })
}

sql_function!(wf_register_executor, pg_finfo_wf_register_executor, register);
sql_function!(wf_heartbeat, pg_finfo_wf_heartbeat, heartbeat);
