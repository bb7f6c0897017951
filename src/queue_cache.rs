//! What a backend knows about a queue between dequeues: its limits, and when its earliest
//! DELAYED run comes due. With it, a dequeue on an unlimited queue is a single statement.
//!
//! An entry is trusted while the epoch of the queue's config slot is unchanged; alter_queue,
//! drop_queue and every delayed enqueue move it. Without shared memory nothing is cached.

use crate::error::{Result, WorkflowError};
use crate::fmgr::text_datum;
use crate::spi::{Statement, TEXT};
use crate::{ready_from, sql, wake};
use std::cell::RefCell;

static SETTINGS: Statement = Statement::new(
    c"SELECT concurrency, worker_concurrency, rate_limit,
             (extract(epoch FROM rate_period) * 1000000)::int8, partition_concurrency
        FROM workflow.queue WHERE name = $1",
    &[TEXT],
);

/// Promotes the DELAYED runs that are due into the ready table, and says when the next is.
static PROMOTE_DUE: Statement = Statement::new(sql!(
    "WITH promoted AS (
        UPDATE workflow.run SET status = 'ENQUEUED'
         WHERE queue = $1 AND status = 'DELAYED' AND available_at <= clock_timestamp()
        RETURNING workflow_id, queue, priority, created_at, partition_key, status),
      readied AS (",
    ready_from!("promoted"),
    ") SELECT min(available_at) FROM workflow.run
       WHERE queue = $1 AND status = 'DELAYED' AND available_at > clock_timestamp()"),
    &[TEXT],
);

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub concurrency: Option<i32>,
    pub worker_concurrency: Option<i32>,
    pub rate_limit: Option<i32>,
    pub rate_period_micros: Option<i64>,
    pub partition_concurrency: Option<i32>,
}

impl Limits {
    /// Any limit means dequeuers must take the queue lock before they count.
    pub fn any(&self) -> bool {
        self.concurrency.is_some()
            || self.worker_concurrency.is_some()
            || self.rate_limit.is_some()
            || self.partition_concurrency.is_some()
    }
}

struct Entry {
    queue: String,
    epoch: u64,
    limits: Limits,
    /// When the earliest DELAYED run comes due (µs since 2000); None: there is none.
    next_due: Option<i64>,
}

struct Cache(RefCell<Vec<Entry>>);
// SAFETY: a Postgres backend runs our code on one thread only.
unsafe impl Sync for Cache {}
static CACHE: Cache = Cache(RefCell::new(Vec::new()));
const CAPACITY: usize = 16;

pub fn config_slot(queue: &str) -> usize {
    wake::slot_of("queue-config", queue)
}

/// Drops every backend's cached view of the queue once the current transaction commits.
pub fn invalidate_on_commit(queue: &str) {
    CACHE.0.borrow_mut().retain(|e| e.queue != queue);
    wake::notify_on_commit(config_slot(queue));
}

/// The queue's limits, after promoting any DELAYED runs that are due. Call inside `spi::connect`.
pub fn limits_promoting_due(queue: &str) -> Result<Limits> {
    let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    let epoch = wake::epoch(config_slot(queue));
    {
        let entries = CACHE.0.borrow();
        if let Some(e) = entries.iter().find(|e| e.queue == queue && Some(e.epoch) == epoch) {
            if e.next_due.is_none_or(|due| now < due) {
                return Ok(e.limits.clone());
            }
        }
    }
    let rows = SETTINGS.run(&[text_datum(queue)]);
    if rows.is_empty() {
        return Err(WorkflowError::UnknownQueue { queue: queue.into() });
    }
    let limits = Limits {
        concurrency: rows.int(0, 1),
        worker_concurrency: rows.int(0, 2),
        rate_limit: rows.int(0, 3),
        rate_period_micros: rows.int8(0, 4),
        partition_concurrency: rows.int(0, 5),
    };
    let next_due = PROMOTE_DUE.run(&[text_datum(queue)]).int8(0, 1);
    if let Some(epoch) = epoch {
        let mut entries = CACHE.0.borrow_mut();
        entries.retain(|e| e.queue != queue);
        if entries.len() >= CAPACITY {
            entries.remove(0);
        }
        entries.push(Entry { queue: queue.into(), epoch, limits: limits.clone(), next_due });
    }
    Ok(limits)
}

/// When the earliest DELAYED run of the queue comes due, as last seen by this backend.
pub fn next_due(queue: &str) -> Option<i64> {
    CACHE.0.borrow().iter().find(|e| e.queue == queue).and_then(|e| e.next_due)
}
