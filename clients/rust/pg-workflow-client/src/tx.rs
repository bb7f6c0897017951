//! Transactions: a step whose SQL and checkpoint commit together, so it happens exactly once.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::codec;
use crate::ctx::{into_error, is_unique_violation, Ctx, RunState};
use crate::db::Pooled;
use crate::error::{BoxError, Error, Result};
use crate::sql;

/// How many times a transaction that hit a serialization failure or deadlock runs.
const ATTEMPTS: usize = 5;

/// The open transaction a `ctx.transaction` closure gets, on the run's connection. It ends
/// when the closure returns: calls on a kept copy then fail with [`Error::Usage`].
#[derive(Clone)]
pub struct Tx {
    slot: Arc<Mutex<Option<TxConn>>>,
}

enum TxConn {
    Run(OwnedMutexGuard<Pooled>),
    Own(Pooled),
}

impl TxConn {
    fn client(&self) -> &tokio_postgres::Client {
        match self {
            TxConn::Run(g) => &g.client,
            TxConn::Own(p) => &p.client,
        }
    }
    fn conn(&mut self) -> &mut crate::db::Conn {
        match self {
            TxConn::Run(g) => g,
            TxConn::Own(p) => p,
        }
    }
}

macro_rules! on_tx {
    ($self:ident, $c:ident => $call:expr) => {{
        let slot = $self.slot.lock().await;
        let Some(conn) = slot.as_ref() else {
            return Err(Error::Usage("this transaction has ended: use the Tx only inside its closure".into()));
        };
        let $c = conn.client();
        $call.await.map_err(|e| Error::from_pg(e, ""))
    }};
}

impl Tx {
    pub async fn execute(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        on_tx!(self, c => c.execute(statement, params))
    }
    pub async fn query(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        on_tx!(self, c => c.query(statement, params))
    }
    pub async fn query_one(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        on_tx!(self, c => c.query_one(statement, params))
    }
    pub async fn query_opt(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        on_tx!(self, c => c.query_opt(statement, params))
    }
    pub async fn batch_execute(&self, statements: &str) -> Result<()> {
        on_tx!(self, c => c.batch_execute(statements))
    }
}

fn retryable(e: &Error) -> bool {
    matches!(e, Error::Sql { sqlstate, .. } if sqlstate == "40001" || sqlstate == "40P01")
}

/// BEGIN, COMMIT or ROLLBACK, keeping the connection's in-transaction mark: set before BEGIN
/// is sent, cleared once the server has ended the transaction (COMMIT or ROLLBACK answered,
/// successfully or with a server error). A future dropped in between leaves it set.
async fn simple(conn: &mut TxConn, statement: &str) -> Result<()> {
    if statement == "BEGIN" {
        conn.conn().in_tx = true;
    }
    let r = conn.client().batch_execute(statement).await;
    if statement != "BEGIN" && r.as_ref().err().map_or(true, |e| e.as_db_error().is_some()) {
        conn.conn().in_tx = false;
    }
    r.map_err(|e| Error::from_pg(e, statement))
}

/// One attempt: BEGIN, the closure, step_put, COMMIT. Ok(Ok(v)): committed with value v;
/// Ok(Err(e)): rolled back with the closure's (or the checkpoint's) error e; Err: a stop.
enum Attempt {
    Committed(Value),
    Taken,
    Failed(Error),
    Retry(Error),
}

async fn attempt<T, F, Fut>(run: &Arc<RunState>, n: Option<i32>, name: &str, f: &mut F) -> Result<Attempt>
where
    T: Serialize,
    F: FnMut(Tx) -> Fut,
    Fut: Future<Output = std::result::Result<T, BoxError>>,
{
    let mut conn = match n {
        Some(_) => TxConn::Run(run.lock_owned().await?),
        None => TxConn::Own(run.app.inner.pool.get().await?),
    };
    simple(&mut conn, "BEGIN").await?;
    let slot = Arc::new(Mutex::new(Some(conn)));
    let result = crate::ctx::in_step(run, f(Tx { slot: slot.clone() })).await;
    let mut conn = slot.lock().await.take().expect("the transaction's connection");
    let outcome = match result.map_err(into_error).and_then(|v| codec::encode(&v, &format!("the return value of transaction {name}"))) {
        Err(e) => Err(e),
        Ok(value) => match n {
            None => Ok(value),
            Some(n) => {
                let put = conn
                    .client()
                    .query_one(sql::STEP_PUT, &[&run.workflow_id, &n, &name, &value, &None::<Value>, &run.executor_id()])
                    .await;
                match put {
                    Ok(_) => Ok(value),
                    Err(e) if is_unique_violation(&e) => {
                        simple(&mut conn, "ROLLBACK").await?;
                        return Ok(Attempt::Taken);
                    }
                    Err(e) => Err(Error::from_pg(e, "")),
                }
            }
        },
    };
    match outcome {
        Ok(value) => match simple(&mut conn, "COMMIT").await {
            Ok(()) => Ok(Attempt::Committed(value)),
            Err(e) if retryable(&e) => Ok(Attempt::Retry(e)),
            Err(e) if e.stops_body() => Err(e),
            // A COMMIT refused for good (a deferred constraint): the server rolled back the
            // transaction, its checkpoint included; the error is the step's, as any other.
            Err(e) => Ok(Attempt::Failed(e)),
        },
        Err(e) => {
            simple(&mut conn, "ROLLBACK").await?;
            if e.stops_body() {
                return Err(e);
            }
            Ok(if retryable(&e) { Attempt::Retry(e) } else { Attempt::Failed(e) })
        }
    }
}

impl Ctx {
    /// A transaction step: `f(tx)` and the step's checkpoint commit in one transaction on the
    /// run's connection, so the step happens exactly once. Serialization failures and
    /// deadlocks run it again (5 attempts). A failure rolls back and is recorded as the step's
    /// error ([`Error::StepFailed`]). Inside a step: its own transaction, no checkpoint.
    pub fn transaction<T, F, Fut>(&self, name: &str, mut f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut(Tx) -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, BoxError>> + Send,
    {
        let n = self.take_step();
        let run = self.run.clone();
        let name = name.to_string();
        async move {
            let what = format!("the checkpoint of transaction {name}");
            if let Some(n) = n.filter(|n| *n <= run.last_step) {
                if let Some(v) = run.replay(n, &name).await? {
                    return codec::decode(v, &what);
                }
            }
            let mut failure = None;
            for _ in 0..ATTEMPTS {
                run.check_stopped()?;
                match attempt(&run, n, &name, &mut f).await.map_err(|e| run.note(e))? {
                    Attempt::Committed(v) => return codec::decode(v, &what),
                    Attempt::Taken => return codec::decode(run.recorded(n.unwrap(), &name).await?, &what),
                    Attempt::Retry(e) => failure = Some(e),
                    Attempt::Failed(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let e = failure.expect("a failed attempt");
            let Some(n) = n else { return Err(e) };
            let error = match &e {
                Error::StepFailed { type_, message, traceback } => Error::wire(type_, message, traceback.as_deref()),
                other => Error::wire(other.type_name(), &other.to_string(), None),
            };
            if let Some(v) = run.put(n, &name, None, Some(&error)).await? {
                return codec::decode(v, &what);
            }
            Err(Error::from_wire_step(&error))
        }
    }
}
