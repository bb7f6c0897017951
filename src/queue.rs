//! Queues: their flow-control settings, and enqueue. Claiming is in `dequeue.rs`.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args};
use crate::spi::{self, Conn, Statement, INT4, INTERVAL, JSONB, TEXT};
use crate::{queue_cache, sql, sql_app_version, sql_function, sql_workflow, validate, wake};
use pgrx::pg_sys::Datum;
use pgrx::IntoDatum;

static CREATE: Statement = Statement::new(
    c"INSERT INTO workflow.queue (name, concurrency, worker_concurrency, rate_limit, rate_period, partition_concurrency)
      VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
    &[TEXT, INT4, INT4, INT4, INTERVAL, INT4],
);

static ALTER: Statement = Statement::new(
    c"UPDATE workflow.queue SET concurrency = $2, worker_concurrency = $3, rate_limit = $4,
             rate_period = $5, partition_concurrency = $6
       WHERE name = $1",
    &[TEXT, INT4, INT4, INT4, INTERVAL, INT4],
);

/// Drop takes a SHARE lock on the runs, so no enqueue can slip in between count and delete.
static LOCK_RUNS: Statement = Statement::new(c"LOCK TABLE workflow.run IN SHARE MODE", &[]);

static ACTIVE_RUNS: Statement = Statement::new(
    c"SELECT count(*) FROM workflow.run WHERE queue = $1 AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')",
    &[TEXT],
);

static DROP: Statement = Statement::new(
    c"WITH q AS (DELETE FROM workflow.queue WHERE name = $1 RETURNING name)
      DELETE FROM workflow.queue_start s USING q WHERE s.queue = q.name",
    &[TEXT],
);

static EXISTS: Statement = Statement::new(c"SELECT 1 FROM workflow.queue WHERE name = $1", &[TEXT]);

static SCHEDULED: Statement =
    Statement::new(c"SELECT name FROM workflow.schedule WHERE queue = $1 ORDER BY name LIMIT 1", &[TEXT]);

/// The columns a statement must RETURN for `ready_from!` to place its runs in the ready table.
#[macro_export]
macro_rules! ready_columns {
    () => {
        "workflow_id, queue, priority, created_at, partition_key, status, app_version"
    };
}

/// SQL text for a CTE body that gives the runs returned by CTE `$cte` (with `ready_columns!`)
/// their row in the ready table, if ENQUEUED.
#[macro_export]
macro_rules! ready_from {
    ($cte:literal) => {
        concat!(
            "INSERT INTO workflow.ready (workflow_id, queue, priority, created_at, partition_key, app_version)
             SELECT workflow_id, queue, priority, created_at, partition_key, app_version FROM ",
            $cte,
            " WHERE status = 'ENQUEUED'"
        )
    };
}

/// One statement: the run, and its place in the ready table unless it is DELAYED. ON CONFLICT
/// covers both the id and an active deduplication_id. `$source` gives the run's timeout and
/// app_version (from $8 and $10, or from a SQL workflow's definition).
macro_rules! enqueue {
    ($timeout:expr, $app_version:expr, $source:expr) => {
        sql!("WITH inserted AS (
        INSERT INTO workflow.run (workflow_id, name, status, queue, input, priority, deduplication_id,
                                  partition_key, timeout, available_at, app_version, parent_id)
        SELECT $1, $2, CASE WHEN $9 > interval '0' THEN 'DELAYED' ELSE 'ENQUEUED' END, q.name,
               $4, $5, $6, $7, ", $timeout, ", CASE WHEN $9 > interval '0' THEN now() + $9 END, ", $app_version, ", $11
          FROM ", $source, "
        ON CONFLICT DO NOTHING
        RETURNING ", ready_columns!(), "),
      readied AS (", ready_from!("inserted"), ") SELECT workflow_id, app_version FROM inserted")
    };
}
const ENQUEUE_TYPES: &[pgrx::pg_sys::Oid] = &[TEXT, TEXT, TEXT, JSONB, INT4, TEXT, TEXT, INTERVAL, INTERVAL, TEXT, TEXT];

/// A run of a SQL workflow is marked for the SQL workers (whatever app_version was asked for)
/// and takes its definition's timeout when none is given.
static ENQUEUE: Statement = Statement::new(
    enqueue!(
        "coalesce($8, d.timeout)",
        concat!("CASE WHEN d.name IS NULL THEN $10 ELSE '", sql_app_version!(), "' END"),
        "workflow.queue q LEFT JOIN workflow.sql_workflow d ON d.name = $2 WHERE q.name = $3"
    ),
    ENQUEUE_TYPES,
);

/// The same on a schema from before SQL workflows (until ALTER EXTENSION UPDATE).
static ENQUEUE_WITHOUT_SQL_WORKFLOWS: Statement =
    Statement::new(enqueue!("$8", "$10", "workflow.queue q WHERE q.name = $3"), ENQUEUE_TYPES);

static SAME_ID: Statement = Statement::new(c"SELECT name FROM workflow.run WHERE workflow_id = $1", &[TEXT]);

static SAME_DEDUPLICATION: Statement = Statement::new(
    c"SELECT workflow_id FROM workflow.run
       WHERE queue = $1 AND deduplication_id = $2 AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')",
    &[TEXT, TEXT],
);

/// Wakes the queue's waiting dequeuers once the current transaction commits.
pub fn wake_dequeuers(queue: &str) {
    wake::notify_on_commit(slot(queue));
}

pub fn slot(queue: &str) -> usize {
    wake::slot_of("queue", queue)
}

/// The six arguments shared by create_queue and alter_queue, checked.
fn settings(args: &Args) -> Result<[Option<Datum>; 6]> {
    let name = args.name(0, "name")?;
    let concurrency = validate::limit("concurrency", args.int(1))?;
    let worker = validate::limit("worker_concurrency", args.int(2))?;
    let rate_limit = validate::limit("rate_limit", args.int(3))?;
    let rate_period = args.interval(4, "rate_period")?;
    let partition = validate::limit("partition_concurrency", args.int(5))?;
    if let Some((_, 0)) = rate_period {
        return Err(WorkflowError::ZeroInterval { arg: "rate_period" });
    }
    if rate_limit.is_some() != rate_period.is_some() {
        return Err(WorkflowError::RateNeedsBoth);
    }
    Ok([
        text_datum(&name),
        concurrency.into_datum(),
        worker.into_datum(),
        rate_limit.into_datum(),
        rate_period.map(|(d, _)| d),
        partition.into_datum(),
    ])
}

fn create_queue(args: &Args) -> Result<()> {
    let values = settings(args)?;
    let queue = args.text(0).unwrap_or_default();
    spi::connect(|c| match CREATE.run(c, &values).len() {
        1 => {
            // A queue of this name may have been cached before DROP/CREATE EXTENSION.
            queue_cache::invalidate_on_commit(&queue);
            Ok(())
        }
        _ => Err(WorkflowError::QueueExists { queue: queue.clone() }),
    })
}

fn alter_queue(args: &Args) -> Result<()> {
    let values = settings(args)?;
    let queue = args.text(0).unwrap_or_default();
    spi::connect(|c| match ALTER.run(c, &values).len() {
        1 => {
            queue_cache::invalidate_on_commit(&queue);
            wake_dequeuers(&queue); // looser limits may let waiting dequeuers claim now
            Ok(())
        }
        _ => Err(WorkflowError::UnknownQueue { queue: queue.clone() }),
    })
}

fn drop_queue(args: &Args) -> Result<()> {
    let queue = args.name(0, "name")?;
    if queue == "default" {
        return Err(WorkflowError::DefaultQueue);
    }
    spi::connect(|c| {
        if EXISTS.run(c, &[text_datum(&queue)]).is_empty() {
            return Err(WorkflowError::UnknownQueue { queue: queue.clone() });
        }
        LOCK_RUNS.run(c, &[]);
        let active = ACTIVE_RUNS.run(c, &[text_datum(&queue)]).int8(0, 1).unwrap_or(0);
        if active > 0 {
            return Err(WorkflowError::QueueInUse { queue: queue.clone(), active });
        }
        // A schedule firing into a dropped queue would fail at every fire time.
        if let Some(schedule) = SCHEDULED.run(c, &[text_datum(&queue)]).text(0, 1) {
            return Err(WorkflowError::QueueScheduled { queue: queue.clone(), schedule });
        }
        DROP.run(c, &[text_datum(&queue)]);
        queue_cache::invalidate_on_commit(&queue);
        Ok(())
    })
}

/// One run to enqueue. `input`, `delay` and `timeout` are raw Datums (jsonb, interval).
pub struct NewRun<'a> {
    pub queue: &'a str,
    pub name: &'a str,
    pub workflow_id: &'a str,
    pub input: Option<Datum>,
    pub priority: i32,
    pub deduplication_id: Option<&'a str>,
    pub partition_key: Option<&'a str>,
    pub delay: Option<Datum>,
    pub timeout: Option<Datum>,
    pub app_version: Option<&'a str>,
    pub parent_id: Option<&'a str>,
}

/// Enqueues `run`; returns its id (also when it existed already).
pub fn enqueue_run(c: &Conn, run: &NewRun) -> Result<String> {
    let row = [
        text_datum(run.workflow_id),
        text_datum(run.name),
        text_datum(run.queue),
        run.input,
        run.priority.into_datum(),
        run.deduplication_id.and_then(text_datum),
        run.partition_key.and_then(text_datum),
        run.timeout,
        run.delay,
        run.app_version.and_then(text_datum),
        run.parent_id.and_then(text_datum),
    ];
    let statement = if sql_workflow::schema_has_them(c) { &ENQUEUE } else { &ENQUEUE_WITHOUT_SQL_WORKFLOWS };
    let enqueued = statement.run(c, &row);
    if enqueued.len() == 1 {
        crate::stats::count(crate::stats::Counter::RunsStarted);
        if run.delay.is_some() {
            queue_cache::invalidate_on_commit(run.queue); // dequeuers must learn the new due time
        }
        wake_dequeuers(run.queue);
        if enqueued.text(0, 2).as_deref() == Some(sql_workflow::APP_VERSION) {
            wake::notify_on_commit(wake::sql_slot());
        }
        return Ok(run.workflow_id.into());
    }
    why_not_enqueued(c, run.queue, run.workflow_id, run.name, run.deduplication_id)
}

fn enqueue(args: &Args) -> Result<String> {
    let queue = args.name(0, "queue")?;
    let name = args.name(1, "name")?;
    let input = args.jsonb(2, "input")?;
    let given_id = args.optional_name(3, "workflow_id")?;
    let priority = args.int(4).ok_or(WorkflowError::NullArgument { arg: "priority" })?;
    let deduplication_id = args.optional_name(5, "deduplication_id")?;
    let partition_key = args.optional_name(6, "partition_key")?;
    let delay = args.interval(7, "delay")?.map(|(d, _)| d);
    let timeout = args.interval(8, "timeout")?.map(|(d, _)| d);
    let app_version = args.optional_name(9, "app_version")?;
    if app_version.as_deref() == Some(sql_workflow::APP_VERSION) {
        return Err(WorkflowError::ReservedAppVersion);
    }
    let parent_id = args.optional_name(10, "parent_id")?;
    let workflow_id = given_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    spi::connect(|c| {
        enqueue_run(c, &NewRun {
            queue: &queue,
            name: &name,
            workflow_id: &workflow_id,
            input,
            priority,
            deduplication_id: deduplication_id.as_deref(),
            partition_key: partition_key.as_deref(),
            delay,
            timeout,
            app_version: app_version.as_deref(),
            parent_id: parent_id.as_deref(),
        })
    })
}

/// The insert was skipped: an unknown queue, an id that exists (same name: enqueue is
/// idempotent and returns it), or an active run with the same deduplication_id.
fn why_not_enqueued(c: &Conn, queue: &str, workflow_id: &str, name: &str, deduplication_id: Option<&str>) -> Result<String> {
    if EXISTS.run(c, &[text_datum(queue)]).is_empty() {
        return Err(WorkflowError::UnknownQueue { queue: queue.into() });
    }
    if let Some(existing) = SAME_ID.run(c, &[text_datum(workflow_id)]).text(0, 1) {
        if existing == name {
            return Ok(workflow_id.into());
        }
        return Err(WorkflowError::NameMismatch {
            workflow_id: workflow_id.into(),
            existing,
            requested: name.into(),
        });
    }
    let dedup = deduplication_id.unwrap_or_default();
    let holder = SAME_DEDUPLICATION.run(c, &[text_datum(queue), text_datum(dedup)]).text(0, 1);
    Err(WorkflowError::Duplicate {
        queue: queue.into(),
        deduplication_id: dedup.into(),
        workflow_id: holder.unwrap_or_else(|| "(just finished)".into()),
    })
}

sql_function!(wf_create_queue, pg_finfo_wf_create_queue, create_queue);
sql_function!(wf_alter_queue, pg_finfo_wf_alter_queue, alter_queue);
sql_function!(wf_drop_queue, pg_finfo_wf_drop_queue, drop_queue);
sql_function!(wf_enqueue, pg_finfo_wf_enqueue, enqueue);
