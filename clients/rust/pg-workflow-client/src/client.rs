//! Calls on runs that need no running body: queues, messages, events, operations, cron.
//! Every one is safe to retry after a lost connection (ids and keys are made up here).

use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use crate::app::App;
use crate::codec;
use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::sql;
use crate::worker::Worker;

/// Options of `enqueue`: `EnqueueOptions::default().priority(1).deduplication_id("welcome-7")`.
#[derive(Clone, Debug, Default)]
pub struct EnqueueOptions {
    pub(crate) workflow_id: Option<String>,
    pub(crate) priority: i32,
    pub(crate) deduplication_id: Option<String>,
    pub(crate) partition_key: Option<String>,
    pub(crate) delay: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
}

impl EnqueueOptions {
    pub fn id(id: impl Into<String>) -> Self {
        EnqueueOptions { workflow_id: Some(id.into()), ..Default::default() }
    }
    pub fn workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }
    /// Lower first (0 by default), then FIFO.
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }
    /// Unique per queue while a run with it is active: a duplicate is [`Error::Duplicate`].
    pub fn deduplication_id(mut self, d: impl Into<String>) -> Self {
        self.deduplication_id = Some(d.into());
        self
    }
    pub fn partition_key(mut self, k: impl Into<String>) -> Self {
        self.partition_key = Some(k.into());
        self
    }
    /// DELAYED until then.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }
    /// Counted from the dequeue; past it the run is cancelled (WF003).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    pub(crate) fn params(&self, queue: &str, name: &str, input: &Value, id: &str, app_version: Option<&str>, parent: Option<&str>) -> EnqueueParams {
        EnqueueParams {
            queue: queue.into(),
            name: name.into(),
            input: input.clone(),
            id: id.into(),
            priority: self.priority,
            dedup: self.deduplication_id.clone(),
            partition: self.partition_key.clone(),
            delay: self.delay.map(|d| d.as_secs_f64()),
            timeout: self.timeout.map(|d| d.as_secs_f64()),
            app_version: app_version.map(str::to_string),
            parent: parent.map(str::to_string),
        }
    }
}

pub(crate) struct EnqueueParams {
    queue: String,
    name: String,
    input: Value,
    id: String,
    priority: i32,
    dedup: Option<String>,
    partition: Option<String>,
    delay: Option<f64>,
    timeout: Option<f64>,
    app_version: Option<String>,
    parent: Option<String>,
}

impl EnqueueParams {
    pub(crate) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.queue, &self.name, &self.input, &self.id, &self.priority, &self.dedup, &self.partition,
             &self.delay, &self.timeout, &self.app_version, &self.parent]
    }
}

/// Options of `schedule`: the queue each fire is enqueued on (`default`) and the time zone (UTC).
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    pub(crate) queue: String,
    pub(crate) timezone: String,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions { queue: "default".into(), timezone: "UTC".into() }
    }
}

impl ScheduleOptions {
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = q.into();
        self
    }
    pub fn timezone(mut self, tz: impl Into<String>) -> Self {
        self.timezone = tz.into();
        self
    }
}

/// One row of `workflow.runs`, as `App::list` returns it.
#[derive(Clone, Debug)]
pub struct RunInfo {
    pub workflow_id: String,
    pub name: String,
    pub status: String,
    pub queue: Option<String>,
    pub executor_id: Option<String>,
    pub app_version: Option<String>,
    pub parent_id: Option<String>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub created_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub last_step: i32,
}

impl App {
    /// Puts a run on a queue for a worker of this app_version (or of none). Idempotent on
    /// the id (made up here when none is given). The workflow need not be registered here.
    pub async fn enqueue<I: Serialize + ?Sized>(&self, queue: &str, name: &str, input: &I, options: EnqueueOptions) -> Result<Handle> {
        self.enqueue_encoded(queue, name, codec::encode_input(input)?, options).await
    }

    /// `enqueue` with several positional arguments (a tuple or Vec: the input array itself).
    pub async fn enqueue_args<A: Serialize + ?Sized>(&self, queue: &str, name: &str, args: &A, options: EnqueueOptions) -> Result<Handle> {
        self.enqueue_encoded(queue, name, codec::encode_args(args)?, options).await
    }

    async fn enqueue_encoded(&self, queue: &str, name: &str, input: Value, options: EnqueueOptions) -> Result<Handle> {
        let id = options.workflow_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let params = options.params(queue, name, &input, &id, self.app_version(), None);
        self.call(sql::ENQUEUE, &params.refs()).await?;
        Ok(Handle::new(self.clone(), id, None))
    }

    /// A handle on any run by its id.
    pub fn handle(&self, workflow_id: &str) -> Handle {
        Handle::new(self.clone(), workflow_id.to_string(), crate::run::local(self, workflow_id))
    }

    /// Sends a message to a run; delivered once, even when a lost connection makes this call
    /// retry (the idempotency key is made up here when none is given).
    pub async fn send<M: Serialize + ?Sized>(&self, destination_id: &str, message: &M, topic: Option<&str>, idempotency_key: Option<&str>) -> Result<()> {
        let message = codec::encode(message, "the message")?;
        let key = idempotency_key.map(str::to_string).unwrap_or_else(|| format!("send:{}", uuid::Uuid::new_v4()));
        self.call(sql::SEND, &[&destination_id, &message, &topic, &key]).await?;
        Ok(())
    }

    /// Waits until the run has set `key`, then returns its latest value (`None` after the timeout).
    pub async fn get_event<T: DeserializeOwned>(&self, workflow_id: &str, key: &str, timeout: Duration) -> Result<Option<T>> {
        let secs = timeout.as_secs_f64();
        let row = self.call(sql::GET_EVENT, &[&workflow_id, &key, &secs]).await?;
        row.get::<_, Option<Value>>(0).map(|v| codec::decode(v, "the event")).transpose()
    }

    /// The newest runs first; filter by status and workflow name.
    pub async fn list(&self, status: Option<&str>, name: Option<&str>, limit: i64) -> Result<Vec<RunInfo>> {
        let rows = self.call_rows(sql::LIST, &[&status, &name, &limit]).await?;
        Ok(rows
            .iter()
            .map(|r| RunInfo {
                workflow_id: r.get(0),
                name: r.get(1),
                status: r.get(2),
                queue: r.get(3),
                executor_id: r.get(4),
                app_version: r.get(5),
                parent_id: r.get(6),
                input: r.get(7),
                output: r.get(8),
                error: r.get(9),
                created_at: r.get(10),
                finished_at: r.get(11),
                last_step: r.get(12),
            })
            .collect())
    }

    /// Cancels a run; its body stops at its next step call. False if it had already ended.
    pub async fn cancel(&self, workflow_id: &str) -> Result<bool> {
        Ok(self.call(sql::CANCEL, &[&workflow_id]).await?.get(0))
    }

    /// Puts a CANCELLED, ERROR or dead-lettered run back on its queue, from its checkpoints.
    pub async fn resume(&self, workflow_id: &str) -> Result<Handle> {
        self.call(sql::RESUME, &[&workflow_id]).await?;
        Ok(self.handle(workflow_id))
    }

    /// A new run with the input and the checkpoints of the steps before `from_step`, enqueued
    /// on `queue`.
    pub async fn fork(&self, workflow_id: &str, from_step: i32, new_workflow_id: Option<&str>, queue: &str) -> Result<Handle> {
        let new_id = new_workflow_id.map(str::to_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let id: String = self.call(sql::FORK, &[&workflow_id, &from_step, &new_id, &queue]).await?.get(0);
        Ok(Handle::new(self.clone(), id, None))
    }

    /// Creates a queue (admin); an existing one is kept. Limits: None means no limit.
    pub async fn create_queue(&self, name: &str, limits: QueueLimits) -> Result<()> {
        let period = limits.rate_period.map(|d| d.as_secs_f64());
        match self
            .call(sql::CREATE_QUEUE, &[&name, &limits.concurrency, &limits.worker_concurrency, &limits.rate_limit, &period, &limits.partition_concurrency])
            .await
        {
            Err(Error::Sql { sqlstate, .. }) if sqlstate == "42710" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// A cron schedule (upsert on `name`): each fire enqueues `workflow` with `input` on the
    /// options' queue, for a worker to run. Returns the time until its next fire.
    pub async fn schedule<I: Serialize + ?Sized>(&self, name: &str, cron: &str, workflow: &str, input: &I, options: ScheduleOptions) -> Result<Duration> {
        let input = codec::encode_input(input)?;
        let row = self.call(sql::SCHEDULE, &[&name, &cron, &workflow, &input, &options.queue, &options.timezone]).await?;
        Ok(Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)))
    }

    pub async fn unschedule(&self, name: &str) -> Result<()> {
        self.call(sql::UNSCHEDULE, &[&name]).await.map(|_| ())
    }

    /// A worker that dequeues and runs this App's workflows from `queues`, `concurrency` at a
    /// time: `.run().await` until SIGTERM or ctrl-c, then it drains.
    pub fn worker(&self, queues: &[&str], concurrency: usize) -> Worker {
        Worker::new(self.clone(), queues.iter().map(|q| q.to_string()).collect(), concurrency)
    }
}

/// The limits of `create_queue` (None: no limit).
#[derive(Clone, Debug, Default)]
pub struct QueueLimits {
    pub concurrency: Option<i32>,
    pub worker_concurrency: Option<i32>,
    pub rate_limit: Option<i32>,
    pub rate_period: Option<Duration>,
    pub partition_concurrency: Option<i32>,
}
