//! The App: options, the connection pool, this process's executor, the registered workflows,
//! and `start`.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio_postgres::Row;

use crate::codec;
use crate::ctx::Ctx;
use crate::db::{Conn, Params, Pool};
use crate::error::{BoxError, Error, Result};
use crate::executor::Heartbeat;
use crate::handle::Handle;
use crate::run::{self, Outcome, WorkflowDef};
use crate::sql;

/// How an App connects and who it is. `Options::default().app_version("v1")`.
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) executor_id: Option<String>,
    pub(crate) app_version: Option<String>,
    pub(crate) pool_size: usize,
    pub(crate) reconnect_timeout: Duration,
    pub(crate) keepalives: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { executor_id: None, app_version: None, pool_size: 64, reconnect_timeout: Duration::from_secs(300), keepalives: true }
    }
}

impl Options {
    /// The version this App's runs record and its workers claim (with runs of no version).
    pub fn app_version(mut self, v: impl Into<String>) -> Self {
        self.app_version = Some(v.into());
        self
    }
    /// A stable id (e.g. the pod's name): a restarted process with the same id takes back its
    /// PENDING runs at once. Default: `<host>-<pid>-<random>`.
    pub fn executor_id(mut self, id: impl Into<String>) -> Self {
        self.executor_id = Some(id.into());
        self
    }
    /// Connections in the pool (64). A run holds one for its whole body.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }
    /// How long a call retries a lost server (300 s).
    pub fn reconnect_timeout(mut self, d: Duration) -> Self {
        self.reconnect_timeout = d;
        self
    }
    /// TCP keepalives (on: 30 s idle, 10 s interval, 3 probes, 60 s user timeout) unless the
    /// DSN sets `keepalives` itself. Unix sockets ignore them.
    pub fn keepalives(mut self, on: bool) -> Self {
        self.keepalives = on;
        self
    }
}

/// Workflows of one application on one database. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Arc<Pool>,
    pub(crate) executor_id: String,
    pub(crate) app_version: Option<String>,
    pub(crate) reconnect_timeout: Duration,
    pub(crate) workflows: RwLock<HashMap<String, Arc<WorkflowDef>>>,
    /// Runs whose body runs in this process now: their outcome, when it comes.
    pub(crate) local: Mutex<HashMap<String, watch::Receiver<Option<Outcome>>>>,
    heartbeat: Mutex<Option<Heartbeat>>,
}

fn default_executor_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..6])
}

impl App {
    /// Connects (libpq URL or key=value DSN), checks the extension, registers this executor
    /// with its app_version and starts its heartbeat (three beats per lease).
    pub async fn connect(dsn: &str, options: Options) -> Result<App> {
        let mut cfg = tokio_postgres::Config::from_str(dsn)
            .map_err(|e| Error::Usage(format!("invalid connection string: {e}")))?;
        if options.keepalives && !dsn.contains("keepalives") {
            cfg.keepalives(true)
                .keepalives_idle(Duration::from_secs(30))
                .keepalives_interval(Duration::from_secs(10))
                .keepalives_retries(3)
                .tcp_user_timeout(Duration::from_secs(60));
        }
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(crate::db::DEFAULT_CONNECT_TIMEOUT);
        }
        let pool = Pool::new(cfg, options.pool_size);
        let app = App {
            inner: Arc::new(Inner {
                pool,
                executor_id: options.executor_id.unwrap_or_else(default_executor_id),
                app_version: options.app_version,
                reconnect_timeout: options.reconnect_timeout,
                workflows: RwLock::new(HashMap::new()),
                local: Mutex::new(HashMap::new()),
                heartbeat: Mutex::new(None),
            }),
        };
        if app.call_opt(sql::EXTENSION, &[]).await?.is_none() {
            return Err(Error::ExtensionMissing(
                "the database has no pg_workflow extension (CREATE EXTENSION pg_workflow)".into()));
        }
        let lease: f64 = app.call(sql::REGISTER, &[&app.inner.executor_id, &app.inner.app_version]).await?.get(0);
        let hb = Heartbeat::start(Arc::downgrade(&app.inner), lease);
        *app.inner.heartbeat.lock().unwrap() = Some(hb);
        Ok(app)
    }

    pub fn executor_id(&self) -> &str {
        &self.inner.executor_id
    }

    pub fn app_version(&self) -> Option<&str> {
        self.inner.app_version.as_deref()
    }

    /// Registers a workflow: `f(ctx, input)` with a typed input and output (serde). Replaces
    /// one registered under the same name.
    pub fn workflow<I, O, F, Fut>(&self, name: &str, f: F) -> &Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, BoxError>> + Send + 'static,
    {
        let body = move |ctx: Ctx, input: Option<Value>| -> run::BodyFuture {
            let started = codec::decode_input::<I>(input).map(|i| f(ctx, i));
            Box::pin(async move {
                let output = started?.await?;
                Ok(codec::encode(&output, "the workflow's output")?)
            })
        };
        let def = Arc::new(WorkflowDef { name: name.to_string(), body: Box::new(body) });
        self.inner.workflows.write().unwrap().insert(name.to_string(), def);
        self
    }

    pub(crate) fn workflow_def(&self, name: &str) -> Result<Arc<WorkflowDef>> {
        self.inner.workflows.read().unwrap().get(name).cloned().ok_or_else(|| {
            Error::NotRegistered(format!("{name:?} is not a workflow of this App: register it with app.workflow({name:?}, ...)"))
        })
    }

    /// Starts a run of a registered workflow with one typed input (idempotent on the id: the
    /// first input wins). When this executor claims it, its body runs in a task of this process.
    pub async fn start<I: Serialize + ?Sized>(&self, name: &str, input: &I, options: StartOptions) -> Result<Handle> {
        self.start_encoded(name, codec::encode_input(input)?, options).await
    }

    /// `start` with several positional arguments (a tuple or Vec: the input array itself).
    pub async fn start_args<A: Serialize + ?Sized>(&self, name: &str, args: &A, options: StartOptions) -> Result<Handle> {
        self.start_encoded(name, codec::encode_args(args)?, options).await
    }

    async fn start_encoded(&self, name: &str, input: Value, options: StartOptions) -> Result<Handle> {
        let def = self.workflow_def(name)?;
        let id = options.workflow_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(rx) = run::local(self, &id) {
            return Ok(Handle::new(self.clone(), id, Some(rx)));
        }
        let timeout = options.timeout.map(|d| d.as_secs_f64());
        let row = self
            .call(sql::START, &[&name, &input, &id, &self.inner.executor_id, &timeout, &None::<String>])
            .await?;
        let last_step: i32 = row.get(3);
        let claimed: bool = row.get(4);
        let rx = if claimed {
            let input: Option<Value> = row.get(5);
            Some(run::spawn(self, def, id.clone(), input, last_step, false))
        } else {
            None
        };
        Ok(Handle::new(self.clone(), id, rx))
    }

    // -- database calls -------------------------------------------------------------------

    /// One statement on a pooled connection, retrying a lost server (up to reconnect_timeout):
    /// every statement sent this way is safe to repeat.
    pub(crate) async fn call_rows(&self, stmt: &'static str, params: Params<'_>) -> Result<Vec<Row>> {
        let deadline = Instant::now() + self.inner.reconnect_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            let mut conn = self.inner.pool.get_retrying(deadline).await?;
            match conn.all(stmt, params).await {
                Err(Error::Connection(m)) if Instant::now() < deadline => {
                    log::warn!("database unavailable ({m}); retrying in {delay:?}");
                    self.inner.pool.clear();
                }
                other => return other,
            }
            drop(conn);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    pub(crate) async fn call_opt(&self, stmt: &'static str, params: Params<'_>) -> Result<Option<Row>> {
        Ok(self.call_rows(stmt, params).await?.into_iter().next())
    }

    pub(crate) async fn call(&self, stmt: &'static str, params: Params<'_>) -> Result<Row> {
        self.call_opt(stmt, params)
            .await?
            .ok_or_else(|| Error::Sql { sqlstate: "02000".into(), message: format!("no row from {stmt}") })
    }

    /// A fresh connection of this App's database, outside the pool (a worker's dequeue, the
    /// heartbeat).
    pub(crate) async fn connect_one(&self) -> Result<Conn> {
        Conn::connect(self.inner.pool.config()).await
    }

    /// Stops the heartbeat. Runs still executing in this process go on until they end or the
    /// process exits (then they resume elsewhere after the lease expires).
    pub async fn close(&self) {
        let hb = self.inner.heartbeat.lock().unwrap().take();
        if let Some(hb) = hb {
            hb.stop();
        }
    }
}

/// Options of `start`: `StartOptions::id("order-42").timeout(Duration::from_secs(600))`.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    pub(crate) workflow_id: Option<String>,
    pub(crate) timeout: Option<Duration>,
}

impl StartOptions {
    /// A run with this id (idempotent: starting it again returns the same run).
    pub fn id(id: impl Into<String>) -> Self {
        StartOptions { workflow_id: Some(id.into()), ..Default::default() }
    }
    /// Cancelled (WF003) once it has run this long.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }
}
