//! tick(): one idempotent housekeeping pass, safe to run from any number of sessions at once.
//! The in-server worker calls it in a loop; without the worker, clients call it themselves.

use crate::error::Result;
use crate::fmgr::{Args, Json};
use crate::recovery::{self, Counts};
use crate::{schedule, spi, sql_function};

/// One pass; also returns when the next schedule is due (µs since 2000), for the worker.
pub fn pass() -> (Counts, Option<i64>) {
    spi::connect(|c| {
        let mut counts = Counts::default();
        let (fired, next_due) = schedule::fire_due(c);
        counts.fired = fired;
        recovery::housekeep(c, &mut counts);
        (counts, next_due)
    })
}

fn tick(_: &Args) -> Result<Json> {
    let (counts, _) = pass();
    Ok(Json(serde_json::to_value(counts).unwrap_or_default()))
}

sql_function!(wf_tick, pg_finfo_wf_tick, tick);
