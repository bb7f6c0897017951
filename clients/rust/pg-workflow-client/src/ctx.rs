//! The context a workflow body gets: its steps and durable calls.
//!
//! Step numbers are taken when a call is made (synchronously, before its future is awaited),
//! so futures of one body joined with `join!` get numbers in the order the calls appear, and
//! a replay hands each its own checkpoint. A fresh step is one `step_put`; a step at or below
//! `last_step` is one `step_get` and its closure does not run.

use std::future::Future;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::Row;

use crate::app::{App, StartOptions};
use crate::client::EnqueueOptions;
use crate::codec;
use crate::db::{Params, Pooled};
use crate::error::{as_ours, BoxError, Error, Result};
use crate::handle::Handle;
use crate::run;
use crate::sql;

tokio::task_local! {
    /// The run whose step (or transaction) closure is being polled: durable calls made from
    /// inside it are plain calls or refused, since a replay skips the closure.
    static IN_STEP: usize;
}

/// One execution of a run's body: its id, its connection and its step counter.
pub(crate) struct RunState {
    pub(crate) app: App,
    pub(crate) workflow_id: String,
    pub(crate) last_step: i32,
    step: AtomicI32,
    pub(crate) conn: Arc<Mutex<Pooled>>,
    /// Sticky: the first stop (NotOwner, Cancelled, a broken connection) this execution met.
    /// A body that catches it and carries on runs no more closures and sends nothing more.
    stopped: std::sync::Mutex<Option<Error>>,
}

impl RunState {
    pub(crate) fn new(app: App, workflow_id: String, last_step: i32, conn: Pooled) -> Arc<RunState> {
        Arc::new(RunState {
            app,
            workflow_id,
            last_step,
            step: AtomicI32::new(0),
            conn: Arc::new(Mutex::new(conn)),
            stopped: std::sync::Mutex::new(None),
        })
    }

    fn key(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    fn in_step(self: &Arc<Self>) -> bool {
        IN_STEP.try_with(|k| *k == self.key()).unwrap_or(false)
    }

    pub(crate) fn executor_id(&self) -> &str {
        &self.app.inner.executor_id
    }

    /// Err when this execution has met a stop: nothing more runs or is sent.
    pub(crate) fn check_stopped(&self) -> Result<()> {
        match &*self.stopped.lock().unwrap() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Remembers a stop (the first one wins) and returns the error.
    pub(crate) fn note(&self, e: Error) -> Error {
        if e.stops_body() {
            let mut stopped = self.stopped.lock().unwrap();
            if stopped.is_none() {
                *stopped = Some(e.clone());
            }
        }
        e
    }

    /// The run's connection, unless this execution has stopped or the connection was left
    /// inside a transaction (a transaction's future dropped or panicked midway): then its
    /// writes must never commit, the connection is broken for this execution
    /// (`Error::Connection`), and the runner replays the run on another.
    pub(crate) async fn lock(&self) -> Result<tokio::sync::MutexGuard<'_, Pooled>> {
        self.check_stopped()?;
        let conn = self.conn.lock().await;
        self.usable(&conn)?;
        Ok(conn)
    }

    pub(crate) async fn lock_owned(&self) -> Result<tokio::sync::OwnedMutexGuard<Pooled>> {
        self.check_stopped()?;
        let conn = self.conn.clone().lock_owned().await;
        self.usable(&conn)?;
        Ok(conn)
    }

    fn usable(&self, conn: &Pooled) -> Result<()> {
        if conn.in_tx {
            return Err(self.note(Error::Connection(format!(
                "workflow {}: its connection was left inside a transaction (the transaction's future was dropped or \
                 panicked before it ended); the run replays",
                self.workflow_id
            ))));
        }
        Ok(())
    }

    pub(crate) async fn call(&self, stmt: &'static str, params: Params<'_>) -> Result<Row> {
        let mut conn = self.lock().await?;
        conn.one(stmt, params).await.map_err(|e| self.note(self.context(e)))
    }

    fn context(&self, e: Error) -> Error {
        match e {
            Error::Sql { sqlstate, message } => Error::Sql { sqlstate, message: format!("workflow {}: {message}", self.workflow_id) },
            other => other,
        }
    }

    /// The checkpoint of step n, if recorded; a recorded error comes back as StepFailed.
    pub(crate) async fn replay(&self, n: i32, name: &str) -> Result<Option<Value>> {
        let row = self.call(sql::STEP_GET, &[&self.workflow_id, &n, &name]).await?;
        if !row.get::<_, bool>(0) {
            return Ok(None);
        }
        if let Some(error) = row.get::<_, Option<Value>>(2) {
            return Err(Error::from_wire_step(&error));
        }
        Ok(Some(row.get::<_, Option<Value>>(1).unwrap_or(Value::Null)))
    }

    /// After 23505 on step_put: another writer recorded the step first (a step of the former
    /// owner that raced this executor's takeover). Its checkpoint wins.
    pub(crate) async fn recorded(&self, n: i32, name: &str) -> Result<Value> {
        self.replay(n, name)
            .await?
            .ok_or_else(|| Error::NotOwner(format!("workflow {}: step {n} is taken but not readable", self.workflow_id)))
    }

    /// step_put. Ok(None): written; Ok(Some(v)): recorded by another writer first.
    pub(crate) async fn put(&self, n: i32, name: &str, output: Option<&Value>, error: Option<&Value>) -> Result<Option<Value>> {
        let result = {
            let mut conn = self.lock().await?;
            conn.one_raw(sql::STEP_PUT, &[&self.workflow_id, &n, &name, &output, &error, &self.executor_id()]).await
        };
        match result {
            Ok(_) => Ok(None),
            Err(e) if is_unique_violation(&e) => Ok(Some(self.recorded(n, name).await?)),
            Err(e) => Err(self.note(self.context(Error::from_pg(e, "")))),
        }
    }
}

/// Polls `fut` as the closure of a step of `run`.
pub(crate) fn in_step<F: Future>(run: &Arc<RunState>, fut: F) -> impl Future<Output = F::Output> {
    IN_STEP.scope(run.key(), fut)
}

pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "23505")
}

/// Retries of a step: `StepOptions::retries(4).backoff(Duration::from_millis(500))`.
#[derive(Clone, Debug)]
pub struct StepOptions {
    pub(crate) retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) backoff_rate: f64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions { retries: 0, backoff: Duration::from_secs(1), backoff_rate: 2.0 }
    }
}

impl StepOptions {
    /// Up to `n` more attempts after the first fails.
    pub fn retries(n: u32) -> Self {
        StepOptions { retries: n, ..Default::default() }
    }
    /// The wait before the first retry (1 s); then times `backoff_rate` (2.0), with ±10% jitter.
    pub fn backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }
    pub fn backoff_rate(mut self, r: f64) -> Self {
        self.backoff_rate = r;
        self
    }
}

fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    d.mul_f64(0.9 + 0.2 * r)
}

/// A body's own error as ours: a step error that is not an SDK error becomes StepFailed.
pub(crate) fn into_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(ours) => *ours,
        Err(other) => Error::from_wire_step(&Error::to_wire(&*other)),
    }
}

/// The workflow body's handle on its run. Cheap to clone; clones share the step counter.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) run: Arc<RunState>,
}

impl Ctx {
    pub fn workflow_id(&self) -> &str {
        &self.run.workflow_id
    }

    pub fn app(&self) -> &App {
        &self.run.app
    }

    /// The number of the step (or durable call) taken last.
    pub fn step_id(&self) -> i32 {
        self.run.step.load(Ordering::SeqCst)
    }

    /// Takes the next step number, or None inside a step's closure (where calls are plain).
    pub(crate) fn take_step(&self) -> Option<i32> {
        (!self.run.in_step()).then(|| self.run.step.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn durable(&self, what: &str) -> Result<i32> {
        self.take_step().ok_or_else(|| {
            Error::Usage(format!(
                "ctx.{what}() inside a step or transaction: call it from the workflow body (a replay skips a step's \
                 closure, so durable calls in it would shift the numbering); inside a step use the App's calls"))
        })
    }

    /// A step: `f` runs (at least once), and its value is checkpointed; a replay returns the
    /// checkpoint without running `f`. Inside another step it is a plain call.
    pub fn step<T, F, Fut>(&self, name: &str, f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, BoxError>> + Send,
    {
        self.step_with(name, StepOptions::default(), f)
    }

    /// `step` with retries: after the last one, the error is recorded as the step's and
    /// returned as [`Error::StepFailed`] (a replay returns the same).
    pub fn step_with<T, F, Fut>(&self, name: &str, options: StepOptions, mut f: F) -> impl Future<Output = Result<T>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = std::result::Result<T, BoxError>> + Send,
    {
        let n = self.take_step();
        let run = self.run.clone();
        let name = name.to_string();
        async move {
            let Some(n) = n else {
                return f().await.map_err(into_error);
            };
            if n <= run.last_step {
                if let Some(v) = run.replay(n, &name).await? {
                    return codec::decode(v, &format!("the checkpoint of step {name}"));
                }
            }
            let mut delay = options.backoff;
            let mut attempt = 0;
            let value = loop {
                run.check_stopped()?;
                let fut = IN_STEP.sync_scope(run.key(), &mut f);
                match IN_STEP.scope(run.key(), fut).await {
                    Ok(v) => break v,
                    Err(e) => {
                        if let Some(ours) = as_ours(&e) {
                            if ours.stops_body() {
                                return Err(run.note(ours.clone()));
                            }
                        }
                        if attempt >= options.retries {
                            let error = Error::to_wire(&*e);
                            if let Some(v) = run.put(n, &name, None, Some(&error)).await? {
                                return codec::decode(v, &format!("the checkpoint of step {name}"));
                            }
                            return Err(Error::from_wire_step(&error));
                        }
                    }
                }
                attempt += 1;
                tokio::time::sleep(jitter(delay)).await;
                delay = delay.mul_f64(options.backoff_rate);
            };
            let encoded = codec::encode(&value, &format!("the return value of step {name}"))?;
            let stored = run.put(n, &name, Some(&encoded), None).await?.unwrap_or(encoded);
            // What a replay will return: the checkpoint, decoded.
            codec::decode(stored, &format!("the checkpoint of step {name}"))
        }
    }

    /// A durable sleep: the wake-up time is recorded once, so a resumed run sleeps only what
    /// is left. Inside a step, a plain sleep.
    pub fn sleep(&self, duration: Duration) -> impl Future<Output = Result<()>> + Send {
        let n = self.take_step();
        let run = self.run.clone();
        async move {
            let Some(n) = n else {
                tokio::time::sleep(duration).await;
                return Ok(());
            };
            let secs = duration.as_secs_f64();
            let row = run.call(sql::SLEEP, &[&run.workflow_id, &n, &secs, &run.executor_id()]).await?;
            tokio::time::sleep(Duration::from_secs_f64(row.get::<_, f64>(0))).await;
            Ok(())
        }
    }

    /// Waits for and consumes one message sent to this run (`None` after the timeout; a
    /// replay returns what the first run got). Holds the run's connection while it waits.
    pub fn recv<T: DeserializeOwned>(&self, topic: Option<&str>, timeout: Duration) -> impl Future<Output = Result<Option<T>>> + Send {
        let n = self.durable("recv");
        let run = self.run.clone();
        let topic = topic.map(str::to_string);
        async move {
            let n = n?;
            let secs = timeout.as_secs_f64();
            let row = run.call(sql::RECV, &[&run.workflow_id, &n, &topic, &secs, &run.executor_id()]).await?;
            row.get::<_, Option<Value>>(0).map(|v| codec::decode(v, "the message")).transpose()
        }
    }

    /// Publishes the latest value of `key` for `get_event` readers (a checkpointed step).
    pub fn set_event<V: Serialize + ?Sized>(&self, key: &str, value: &V) -> impl Future<Output = Result<()>> + Send {
        let n = self.durable("set_event");
        let encoded = codec::encode(value, &format!("the value of event {key}"));
        let run = self.run.clone();
        let key = key.to_string();
        async move {
            let (n, encoded) = (n?, encoded?);
            run.call(sql::SET_EVENT, &[&run.workflow_id, &n, &key, &encoded, &run.executor_id()]).await?;
            Ok(())
        }
    }

    /// Sends a message; delivered once, even on replay (idempotency key `<workflow_id>:<step>`).
    pub fn send<M: Serialize + ?Sized>(&self, destination_id: &str, message: &M, topic: Option<&str>) -> impl Future<Output = Result<()>> + Send {
        let n = self.durable("send");
        let encoded = codec::encode(message, "the message");
        let run = self.run.clone();
        let (dest, topic) = (destination_id.to_string(), topic.map(str::to_string));
        async move {
            let (n, encoded) = (n?, encoded?);
            let key = format!("{}:{n}", run.workflow_id);
            run.call(sql::SEND, &[&dest, &encoded, &topic, &key]).await?;
            Ok(())
        }
    }

    /// Starts a child run (id `<parent>-<step>` unless given, parent_id set), once even on
    /// replay. When this executor claims it, it runs in its own task and connection.
    pub fn start<I: Serialize + ?Sized>(&self, name: &str, input: &I, options: StartOptions) -> impl Future<Output = Result<Handle>> + Send {
        let n = self.durable("start");
        let encoded = codec::encode_input(input);
        let def = self.run.app.workflow_def(name);
        let run = self.run.clone();
        let name = name.to_string();
        async move {
            let (n, input, def) = (n?, encoded?, def?);
            let id = options.workflow_id.unwrap_or_else(|| format!("{}-{n}", run.workflow_id));
            let app = &run.app;
            if let Some(rx) = run::local(app, &id) {
                return Ok(Handle::new(app.clone(), id, Some(rx)));
            }
            let timeout = options.timeout.map(|d| d.as_secs_f64());
            let row = run
                .call(sql::START, &[&name, &input, &id, &run.executor_id(), &timeout, &run.workflow_id])
                .await?;
            let rx = if row.get::<_, bool>(4) {
                let last_step: i32 = row.get(3);
                let input: Option<Value> = row.get(5); // the stored input: the first start's wins
                Some(run::spawn(app, def, id.clone(), input, last_step, true))
            } else {
                None
            };
            Ok(Handle::new(app.clone(), id, rx))
        }
    }

    /// Enqueues a child run (id `<parent>-<step>` unless given, parent_id set), once even on
    /// replay. The workflow need not be registered here (a worker of any SDK may run it).
    pub fn enqueue<I: Serialize + ?Sized>(&self, queue: &str, name: &str, input: &I, options: EnqueueOptions) -> impl Future<Output = Result<Handle>> + Send {
        let n = self.durable("enqueue");
        let encoded = codec::encode_input(input);
        let run = self.run.clone();
        let (queue, name) = (queue.to_string(), name.to_string());
        async move {
            let (n, input) = (n?, encoded?);
            let id = options.workflow_id.clone().unwrap_or_else(|| format!("{}-{n}", run.workflow_id));
            let app = run.app.clone();
            let params = options.params(&queue, &name, &input, &id, app.app_version(), Some(&run.workflow_id));
            let mut conn = run.lock().await?;
            conn.one(sql::ENQUEUE, &params.refs()).await.map_err(|e| run.note(run.context(e)))?;
            Ok(Handle::new(app, id, None))
        }
    }
}
