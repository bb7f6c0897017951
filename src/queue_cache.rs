//! What a backend knows about a queue between dequeues: its limits, and when its earliest
//! DELAYED run comes due. With it, a dequeue on an unlimited queue is a single statement.
//!
//! An entry is learned only from committed state (`tx_cache`: a waiting dequeue's attempt that
//! rolls back takes its promotions and what it learned with it), and trusted while the epoch
//! of the queue's config slot is unchanged; create_queue, alter_queue, drop_queue and every
//! delayed enqueue move it. Without shared memory nothing is cached.

use crate::error::{Result, WorkflowError};
use crate::fmgr::text_datum;
use crate::spi::{Conn, Statement, TEXT};
use crate::tx_cache::{self, TxCache};
use crate::{ready_columns, ready_from, sql, wake};

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
        RETURNING ", ready_columns!(), "),
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

impl tx_cache::Entry for Entry {
    fn key(&self) -> &str {
        &self.queue
    }
}

static CACHE: TxCache<Entry> = TxCache::new(16);

pub fn config_slot(queue: &str) -> usize {
    wake::slot_of("queue-config", queue)
}

/// Drops every backend's cached view of the queue once the current transaction commits.
pub fn invalidate_on_commit(queue: &str) {
    CACHE.forget(queue);
    wake::notify_on_commit(config_slot(queue));
}

/// The queue's limits, after promoting any DELAYED runs that are due, and when the next
/// DELAYED run comes due (µs since 2000).
pub fn limits_promoting_due(c: &Conn, queue: &str) -> Result<(Limits, Option<i64>)> {
    // SAFETY: reads the clock.
    let now = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    let epoch = wake::epoch(config_slot(queue));
    let fresh = |e: &Entry| Some(e.epoch) == epoch && e.next_due.is_none_or(|due| now < due);
    if let Some(cached) = CACHE.with(queue, |e| fresh(e).then(|| (e.limits.clone(), e.next_due))).flatten() {
        return Ok(cached);
    }
    let rows = SETTINGS.run(c, &[text_datum(queue)]);
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
    let next_due = PROMOTE_DUE.run(c, &[text_datum(queue)]).int8(0, 1);
    if let Some(epoch) = epoch {
        CACHE.learn(Entry { queue: queue.into(), epoch, limits: limits.clone(), next_due });
    }
    Ok((limits, next_due))
}
