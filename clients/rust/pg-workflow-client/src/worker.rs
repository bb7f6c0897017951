//! A worker: dequeues its queues' runs and executes them, `concurrency` at a time.
//!
//! One dispatcher task per queue holds its own connection for `dequeue` (which waits on the
//! server up to `poll`); each claimed run executes in its own task on a pooled connection. At
//! start, the worker takes back the runs this executor owned when its process died (same
//! executor_id): they resume from their last checkpoint.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::app::App;
use crate::db::Conn;
use crate::error::{Error, Result};
use crate::run;
use crate::sql;

/// Pooled connections a worker leaves for what its runs do besides their own connection:
/// result() waits, child starts, client calls from bodies and steps.
const POOL_MARGIN: usize = 4;

pub struct Worker {
    app: App,
    queues: Vec<String>,
    concurrency: usize,
    poll: Duration,
    drain_timeout: Option<Duration>,
    stop: watch::Sender<bool>,
    handle_signals: bool,
}

/// Stops a worker from elsewhere (a test, another task): like SIGTERM, it drains.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Worker {
    pub(crate) fn new(app: App, queues: Vec<String>, concurrency: usize) -> Worker {
        Worker { app, queues, concurrency, poll: Duration::from_secs(1), drain_timeout: None, stop: watch::channel(false).0, handle_signals: true }
    }

    /// How long one dequeue waits on the server for work (1 s): also how soon a stop is seen.
    pub fn poll(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// At most this long to drain runs in flight after a stop (default: no limit). Runs still
    /// in flight then stay PENDING: a worker with the same executor_id takes them back at
    /// start, any other after this executor's lease expires.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.drain_timeout = Some(d);
        self
    }

    /// Whether `run` stops on SIGTERM and ctrl-c (true).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// Runs until SIGTERM, ctrl-c or `Stopper::stop`, then stops dequeuing, drains and
    /// returns. A second signal during the drain returns at once. A fatal dequeue error (an
    /// unknown queue) stops it and is returned.
    pub async fn run(self) -> Result<()> {
        if self.concurrency < 1 {
            return Err(Error::Usage(format!("worker concurrency must be at least 1, not {}", self.concurrency)));
        }
        let pool = self.app.inner.pool.size;
        if self.concurrency + POOL_MARGIN > pool {
            return Err(Error::Usage(format!(
                "worker concurrency {} needs a larger pool: Options::pool_size >= {} (it is {pool}; {POOL_MARGIN} \
                 connections are kept for waits and child starts)",
                self.concurrency,
                self.concurrency + POOL_MARGIN
            )));
        }
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let fatal: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
        // The signal handlers first: taking back our own runs may wait for free slots, and a
        // SIGTERM meanwhile must drain, not kill the process.
        let mut signals = Signals::new(self.handle_signals);
        let mut stop_rx = self.stop.subscribe();
        let stopped = tokio::select! {
            r = self.recover_own_runs(&slots) => {
                r?;
                false
            }
            _ = stop_rx.wait_for(|s| *s) => true,
            _ = signals.next() => true,
        };
        let mut dispatchers = Vec::new();
        if !stopped {
            for queue in &self.queues {
                let d = Dispatcher {
                    app: self.app.clone(),
                    queue: queue.clone(),
                    slots: slots.clone(),
                    concurrency: self.concurrency,
                    poll: self.poll,
                    stop: self.stop.clone(),
                    fatal: fatal.clone(),
                };
                dispatchers.push(tokio::spawn(d.run()));
            }
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s) => {}
                _ = signals.next() => {}
            }
        }
        self.stop.send_replace(true);
        log::info!("worker {} draining", self.app.executor_id());
        for d in dispatchers {
            let _ = d.await;
        }
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let drained = async {
            let _ = slots.acquire_many(all).await;
        };
        let limit = async {
            match self.drain_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = drained => {}
            _ = limit => log::warn!("worker {} stops with runs in flight: they stay PENDING", self.app.executor_id()),
            _ = signals.next() => log::warn!("worker {}: second signal, returning without waiting for its runs", self.app.executor_id()),
        }
        let error = fatal.lock().unwrap().take();
        error.map_or(Ok(()), Err)
    }

    async fn recover_own_runs(&self, slots: &Arc<Semaphore>) -> Result<()> {
        let rows = self.app.call_rows(sql::OWN_PENDING, &[&self.app.executor_id()]).await?;
        for row in rows {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            submit(&self.app, permit, row.get(0), row.get(1), row.get(2), None);
        }
        Ok(())
    }
}

/// Executes a claimed run in its own task, holding one of the worker's slots.
fn submit(app: &App, permit: OwnedSemaphorePermit, id: String, name: String, input: Option<Value>, last_step: Option<i32>) {
    let app = app.clone();
    tokio::spawn(async move {
        let _permit = permit;
        if let Err(e) = execute_claimed(&app, id.clone(), name, input, last_step).await {
            log::error!("run {id} could not be executed: {e}");
        }
    });
}

async fn execute_claimed(app: &App, id: String, name: String, input: Option<Value>, last_step: Option<i32>) -> Result<()> {
    let def = match app.workflow_def(&name) {
        Ok(def) => def,
        Err(e) => {
            // Not a hang: the run fails with a clear error that result() returns.
            log::error!("{e} (run {id})");
            let error = Error::wire(e.type_name(), &e.to_string(), None);
            app.call(sql::FAIL, &[&id, &error, &app.executor_id()]).await?;
            return Ok(());
        }
    };
    let last_step = match last_step {
        Some(n) => n,
        None => {
            // A run of ours from before a crash: claim it again.
            let row = app.call(sql::START, &[&name, &input, &id, &app.executor_id(), &None::<f64>, &None::<String>]).await?;
            if !row.get::<_, bool>(4) {
                return Ok(());
            }
            row.get(3)
        }
    };
    run::run_inline(app, def, id, input, last_step).await;
    Ok(())
}

struct Dispatcher {
    app: App,
    queue: String,
    slots: Arc<Semaphore>,
    concurrency: usize,
    poll: Duration,
    stop: watch::Sender<bool>,
    fatal: Arc<Mutex<Option<Error>>>,
}

impl Dispatcher {
    async fn run(self) {
        let mut conn: Option<Conn> = None;
        let mut delay = Duration::from_millis(50);
        let mut stop_rx = self.stop.subscribe();
        while !*stop_rx.borrow() {
            let first = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.expect("never closed"),
                _ = stop_rx.wait_for(|s| *s) => break,
            };
            let mut permits = vec![first];
            while permits.len() < self.concurrency {
                match self.slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            if conn.as_ref().map_or(true, |c| c.is_closed()) {
                match self.app.connect_one().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        log::warn!("dequeue from {} cannot connect ({e}); retrying in {delay:?}", self.queue);
                        drop(permits);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                        continue;
                    }
                }
            }
            let c = conn.as_mut().unwrap();
            let (n, wait) = (permits.len() as i32, self.poll.as_secs_f64());
            match c.all(sql::DEQUEUE, &[&self.queue, &self.app.executor_id(), &n, &wait]).await {
                Ok(rows) => {
                    delay = Duration::from_millis(50);
                    for row in rows {
                        let permit = permits.pop().expect("no more rows than slots");
                        submit(&self.app, permit, row.get(0), row.get(1), row.get(2), Some(row.get(3)));
                    }
                }
                Err(e) if e.sqlstate() == Some("WF004") => {
                    // This executor's row is gone (deleted, or the database restored): register
                    // again, as the heartbeat does, and go on dequeuing.
                    log::warn!("dequeue from {}: {e}; registering executor {} again", self.queue, self.app.executor_id());
                    if let Err(e) = c.one(sql::REGISTER, &[&self.app.executor_id(), &self.app.app_version()]).await {
                        log::warn!("registering executor {} failed ({e}); retrying in {delay:?}", self.app.executor_id());
                        conn = None;
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
                Err(Error::Connection(m)) => {
                    log::warn!("dequeue from {} failed ({m}); reconnecting in {delay:?}", self.queue);
                    conn = None;
                    drop(permits);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    log::error!("worker stops: dequeue from {:?}: {e}", self.queue);
                    *self.fatal.lock().unwrap() = Some(e);
                    self.stop.send_replace(true);
                }
            }
        }
    }
}

/// SIGTERM and ctrl-c, when the worker handles signals.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    on: bool,
}

impl Signals {
    fn new(on: bool) -> Signals {
        let term = if on { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok() } else { None };
        Signals { term, on }
    }

    async fn next(&mut self) {
        if !self.on {
            return std::future::pending().await;
        }
        let term = async {
            match self.term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
}
