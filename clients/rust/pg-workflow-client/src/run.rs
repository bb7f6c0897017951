//! Executing a run this executor has claimed: the body on one pooled connection, then
//! `finish` or `fail`; across a lost connection, a reclaim (`start` again) and a replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use crate::app::App;
use crate::ctx::{Ctx, RunState};
use crate::error::{as_ours, BoxError, Error, Result};
use crate::sql;

pub(crate) type BodyFuture = Pin<Box<dyn Future<Output = std::result::Result<Value, BoxError>> + Send>>;
type Body = Box<dyn Fn(Ctx, Option<Value>) -> BodyFuture + Send + Sync>;

pub(crate) struct WorkflowDef {
    pub(crate) name: String,
    pub(crate) body: Body,
}

/// How a run executed here ended. `Detached`: not ours to end (cancelled, taken over, or
/// stopped): a handle asks the database.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Success(Value),
    Failed(Value),
    Detached,
}

/// The outcome of a run executing in this process now, if one is.
pub(crate) fn local(app: &App, workflow_id: &str) -> Option<watch::Receiver<Option<Outcome>>> {
    app.inner.local.lock().unwrap().get(workflow_id).cloned()
}

/// Removes a run's entry from the App's local runs when its execution ends in any way (a
/// panic or a dropped task included), so a later start of it is not refused as running here.
struct LocalEntry<'a> {
    app: &'a App,
    id: &'a str,
}

impl Drop for LocalEntry<'_> {
    fn drop(&mut self) {
        self.app.inner.local.lock().unwrap().remove(self.id);
    }
}

/// Polls a body, catching a panic: Err(message).
struct CatchUnwind(BodyFuture);

impl Future for CatchUnwind {
    type Output = std::result::Result<std::result::Result<Value, BoxError>, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(p) => p.map(Ok),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                std::task::Poll::Ready(Err(message))
            }
        }
    }
}

/// Runs a claimed run in a new task (once per process: a run already executing here is not
/// started twice). Returns where its outcome will appear.
/// `child`: a run started by a body executing here, which waits for it holding its own
/// pooled connection: the child's connection is outside the pool's budget.
pub(crate) fn spawn(app: &App, def: Arc<WorkflowDef>, id: String, input: Option<Value>, last_step: i32, child: bool) -> watch::Receiver<Option<Outcome>> {
    let (tx, rx) = {
        let mut local = app.inner.local.lock().unwrap();
        if let Some(rx) = local.get(&id) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        local.insert(id.clone(), rx.clone());
        (tx, rx)
    };
    let app = app.clone();
    tokio::spawn(async move {
        let entry = LocalEntry { app: &app, id: &id };
        let outcome = execute(&app, &def, &id, input, last_step, child).await;
        drop(entry);
        let _ = tx.send(Some(outcome));
    });
    rx
}

/// Runs a claimed run in this task (a worker's), unless it already executes here.
pub(crate) async fn run_inline(app: &App, def: Arc<WorkflowDef>, id: String, input: Option<Value>, last_step: i32) {
    let tx = {
        let mut local = app.inner.local.lock().unwrap();
        if local.contains_key(&id) {
            return;
        }
        let (tx, rx) = watch::channel(None);
        local.insert(id.clone(), rx);
        tx
    };
    let entry = LocalEntry { app, id: &id };
    let outcome = execute(app, &def, &id, input, last_step, false).await;
    drop(entry);
    let _ = tx.send(Some(outcome));
}

/// Executes a claimed run until it ends here or stops. A lost connection (or no free pooled
/// connection) is an outage: the runner reconnects, claims the run again (`start`) and replays
/// it, for up to `reconnect_timeout` counted from when that outage began (each outage gets
/// its own). Past it, the run fails (as in the Python SDK) rather than staying PENDING under
/// this executor's live lease.
async fn execute(app: &App, def: &WorkflowDef, id: &str, input: Option<Value>, mut last_step: i32, child: bool) -> Outcome {
    let mut outage: Option<Instant> = None;
    let mut delay = Duration::from_millis(200);
    loop {
        let conn = if child { app.inner.pool.get_outside_budget().await } else { app.inner.pool.get().await };
        let lost = match conn {
            Ok(conn) => {
                let state = RunState::new(app.clone(), id.to_string(), last_step, conn);
                match run_body(def, state, input.clone()).await {
                    Ok(outcome) => return outcome,
                    Err(e @ Error::Connection(_)) => e,
                    Err(e) => {
                        log::info!("workflow {id} stops: {e}");
                        return Outcome::Detached;
                    }
                }
            }
            Err(e @ (Error::Connection(_) | Error::Timeout(_))) => e,
            Err(e) => return give_up(app, id, e).await,
        };
        let began = *outage.get_or_insert_with(Instant::now);
        if began.elapsed() >= app.inner.reconnect_timeout {
            return give_up(app, id, lost).await;
        }
        log::warn!("workflow {id}: {lost}; reconnecting in {delay:?} to replay it");
        app.inner.pool.clear();
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
        // start() again (idempotent): a replay when this executor still owns the run.
        let row = match app
            .call(sql::START, &[&def.name, &input, &id, &app.inner.executor_id, &None::<f64>, &None::<String>])
            .await
        {
            Ok(row) => row,
            Err(e @ (Error::Connection(_) | Error::Timeout(_))) => {
                log::warn!("workflow {id} could not be reclaimed yet: {e}");
                continue;
            }
            Err(e) => {
                log::error!("workflow {id} could not be reclaimed: {e}");
                return Outcome::Detached;
            }
        };
        let status: String = row.get(0);
        if sql::is_terminal(&status) || !row.get::<_, bool>(4) {
            return Outcome::Detached;
        }
        last_step = row.get(3);
        // The server answers again: the outage is over; the next one gets its own deadline.
        outage = None;
        delay = Duration::from_millis(200);
    }
}

/// After the last retry of an outage: fail the run (best effort; `app.call` retries a lost
/// server once more up to reconnect_timeout) instead of leaving it PENDING under our lease.
async fn give_up(app: &App, id: &str, e: Error) -> Outcome {
    log::error!("workflow {id} gives up after {:?} without the database ({e}); failing it", app.inner.reconnect_timeout);
    let error = Error::wire(e.type_name(), &e.to_string(), None);
    match app.call(sql::FAIL, &[&id, &error, &app.inner.executor_id]).await {
        Ok(_) => Outcome::Failed(error),
        Err(e) => {
            log::error!("workflow {id} could not be failed ({e}); it stays PENDING until its lease expires");
            Outcome::Detached
        }
    }
}

/// One execution of the body. Ok: the run ended here (finished or failed). Err: a stop
/// (cancelled, fenced, or the connection broke).
async fn run_body(def: &WorkflowDef, state: Arc<RunState>, input: Option<Value>) -> Result<Outcome> {
    let ctx = Ctx { run: state.clone() };
    let caught = CatchUnwind((def.body)(ctx, input)).await; // the body's futures are dropped
    let result = match caught {
        Ok(result) => result,
        Err(message) => {
            // The body panicked: the run fails. A transaction it was in left the run's
            // connection inside BEGIN: roll it back first (if that fails, the connection stays
            // marked, the FAIL below gets Error::Connection, and the run replays).
            log::error!("workflow {} panicked: {message}", state.workflow_id);
            {
                let mut conn = state.conn.lock().await;
                if conn.in_tx && conn.client.batch_execute("ROLLBACK").await.is_ok() {
                    conn.in_tx = false;
                }
            }
            return fail_run(&state, Error::wire("Panic", &message, None)).await.map(Outcome::Failed);
        }
    };
    let error = match result {
        Ok(output) => match state.call(sql::FINISH, &[&state.workflow_id, &output, &state.app.inner.executor_id]).await {
            Ok(_) => return Ok(Outcome::Success(output)),
            Err(e) if e.stops_body() => return Err(e),
            Err(e) => Error::wire(e.type_name(), &e.to_string(), None), // e.g. 54000: output too large
        },
        Err(e) => {
            if let Some(ours) = as_ours(&e) {
                if ours.stops_body() {
                    return Err(ours.clone());
                }
            }
            Error::to_wire(&*e)
        }
    };
    fail_run(&state, error).await.map(Outcome::Failed)
}

/// Records the run's error, shortened when the full one is refused (over max_payload_size).
async fn fail_run(state: &RunState, error: Value) -> Result<Value> {
    let exec = &state.app.inner.executor_id;
    match state.call(sql::FAIL, &[&state.workflow_id, &error, exec]).await {
        Ok(_) => Ok(error),
        Err(e) if e.stops_body() => Err(e),
        Err(_) => {
            let short = compact(&error);
            state.call(sql::FAIL, &[&state.workflow_id, &short, exec]).await?;
            Ok(short)
        }
    }
}

fn compact(error: &Value) -> Value {
    let cut = |s: &str| if s.len() <= 4000 { s.to_string() } else { format!("{}... (truncated)", &s[..s.floor_char_boundary(4000)]) };
    let field = |k: &str| error.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    Error::wire(&field("type"), &cut(&field("message")), Some(&cut(&field("traceback"))))
}
