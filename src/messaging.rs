//! Messages, events and durable sleep. recv, set_event and sleep are checkpointed steps: a
//! replay returns what the first run recorded. recv and get_event wait on the wake board.

use crate::error::{Result, WorkflowError};
use crate::fmgr::{text_datum, Args, Raw};
use crate::spi::{self, Out, Statement, INT4, INTERVAL, JSONB, TEXT};
use crate::step::{self, ensure_live};
use crate::workflow::needs_read_committed;
use crate::{sql_function, wake};
use pgrx::IntoDatum;
use std::time::{Duration, Instant};

static SEND: Statement = Statement::new(
    c"INSERT INTO workflow.message (destination_id, topic, message, idempotency_key)
      SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM workflow.run WHERE workflow_id = $1)
      ON CONFLICT (destination_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING id",
    &[TEXT, TEXT, JSONB, TEXT],
);

static RUN_EXISTS: Statement = Statement::new(c"SELECT 1 FROM workflow.run WHERE workflow_id = $1", &[TEXT]);

/// Takes the oldest unread message; SKIP LOCKED so two readers never take the same one.
static TAKE: Statement = Statement::new(
    c"UPDATE workflow.message m SET consumed_at = clock_timestamp(), consumed_step = $3
       WHERE m.id = (SELECT id FROM workflow.message
                      WHERE destination_id = $1 AND topic = $2 AND consumed_at IS NULL
                      ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
      RETURNING m.message",
    &[TEXT, TEXT, INT4],
);

static SET_EVENT: Statement = Statement::new(
    c"WITH latest AS (
        INSERT INTO workflow.event (workflow_id, key, value) VALUES ($1, $3, $4)
        ON CONFLICT (workflow_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now())
      INSERT INTO workflow.event_history (workflow_id, step, key, value) VALUES ($1, $2, $3, $4)",
    &[TEXT, INT4, TEXT, JSONB],
);

static GET_EVENT: Statement = Statement::new(
    c"SELECT e.value, e.key IS NOT NULL FROM workflow.run r
        LEFT JOIN workflow.event e ON e.workflow_id = r.workflow_id AND e.key = $2
       WHERE r.workflow_id = $1",
    &[TEXT, TEXT],
);

static WAKE_AT: Statement = Statement::new(
    c"SELECT to_jsonb(clock_timestamp() + $1), (clock_timestamp() + $1)",
    &[INTERVAL],
);

static JSON_TO_TIMESTAMP: Statement =
    Statement::new(c"SELECT ($1 #>> '{}'::text[])::timestamptz", &[JSONB]);

/// Wait slots: one per (workflow, topic) inbox and per (workflow, key) event.
fn inbox_slot(workflow_id: &str, topic: &str) -> usize {
    wake::slot_of("inbox", &format!("{workflow_id}\u{1}{topic}"))
}

fn event_slot(workflow_id: &str, key: &str) -> usize {
    wake::slot_of("event", &format!("{workflow_id}\u{1}{key}"))
}

fn deadline_of(args: &Args, i: usize) -> Result<Option<Instant>> {
    Ok(args.interval(i, "timeout")?.map(|(_, micros)| Instant::now() + Duration::from_micros(micros as u64)))
}

fn send(args: &Args) -> Result<()> {
    let destination = args.name(0, "destination_id")?;
    let message = args.jsonb(1, "message")?;
    let topic = args.topic(2, "topic")?;
    let key = args.optional_name(3, "idempotency_key")?;
    spi::connect(|c| {
        let row = [text_datum(&destination), text_datum(&topic), message, key.as_deref().and_then(text_datum)];
        if SEND.run(c, &row).len() == 1 {
            crate::stats::count(crate::stats::Counter::MessagesSent);
            wake::notify_on_commit(inbox_slot(&destination, &topic));
        } else if RUN_EXISTS.run(c, &[text_datum(&destination)]).is_empty() {
            return Err(WorkflowError::UnknownWorkflow { workflow_id: destination.clone() });
        }
        Ok(()) // a repeated idempotency key: delivered once already
    })
}

/// A checkpointed step: takes one message (or records that none came before the timeout).
fn recv(args: &Args) -> Result<Raw> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let topic = args.topic(2, "topic")?;
    let deadline = deadline_of(args, 3)?;
    let executor = args.optional_name(4, "executor_id")?;
    let executor = executor.as_deref();
    needs_read_committed("recv")?;
    let waiter = wake::Waiter::new(inbox_slot(&workflow_id, &topic));
    loop {
        let seen = waiter.epoch();
        let taken = spi::connect(|c| {
            if let Some((output, _)) = step::replay(c, &workflow_id, step, "recv")? {
                return Ok(Some(output));
            }
            ensure_live(c, &workflow_id, executor)?;
            let rows = TAKE.run(c, &[text_datum(&workflow_id), text_datum(&topic), step.into_datum()]);
            if rows.is_empty() {
                return Ok(None);
            }
            let message = rows.varlena(0, 1);
            step::record(c, &workflow_id, step, "recv", message.map(Out::datum), None);
            Ok(Some(message))
        })?;
        if let Some(message) = taken {
            return Ok(Raw(message));
        }
        match wake::nap_ms(deadline) {
            Some(ms) => waiter.sleep(seen, ms),
            None => {
                // Timed out: that too is the step's outcome, so a replay does not wait again.
                // The run may have been cancelled while we waited: check, as any step does.
                spi::connect(|c| {
                    ensure_live(c, &workflow_id, executor)?;
                    step::record(c, &workflow_id, step, "recv", None, None);
                    Ok(())
                })?;
                return Ok(Raw(None));
            }
        }
    }
}

/// A checkpointed step: the latest value per key, plus one history row for this step.
fn set_event(args: &Args) -> Result<()> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let key = args.name(2, "key")?;
    let value = args.jsonb(3, "value")?;
    let executor = args.optional_name(4, "executor_id")?;
    spi::connect(|c| {
        if step::replay(c, &workflow_id, step, "set_event")?.is_some() {
            return Ok(());
        }
        ensure_live(c, &workflow_id, executor.as_deref())?;
        SET_EVENT.run(c, &[text_datum(&workflow_id), step.into_datum(), text_datum(&key), value]);
        step::record(c, &workflow_id, step, "set_event", value, None);
        wake::notify_on_commit(event_slot(&workflow_id, &key));
        Ok(())
    })
}

fn get_event(args: &Args) -> Result<Raw> {
    let workflow_id = args.name(0, "workflow_id")?;
    let key = args.name(1, "key")?;
    let deadline = deadline_of(args, 2)?;
    needs_read_committed("get_event")?;
    let waiter = wake::Waiter::new(event_slot(&workflow_id, &key));
    loop {
        let seen = waiter.epoch();
        let found = spi::connect(|c| {
            let rows = GET_EVENT.run(c, &[text_datum(&workflow_id), text_datum(&key)]);
            match rows.bool(0, 2) {
                None => Err(WorkflowError::UnknownWorkflow { workflow_id: workflow_id.clone() }),
                Some(true) => Ok(Some(rows.varlena(0, 1))),
                Some(false) => Ok(None),
            }
        })?;
        if let Some(value) = found {
            return Ok(Raw(value));
        }
        match wake::nap_ms(deadline) {
            Some(ms) => waiter.sleep(seen, ms),
            None => return Ok(Raw(None)),
        }
    }
}

/// A checkpointed step: records the wake-up time once; a replay returns the same time, so a
/// resumed workflow sleeps only for what is left. The caller sleeps, e.g. with pg_sleep_until.
fn sleep(args: &Args) -> Result<Raw> {
    let workflow_id = args.name(0, "workflow_id")?;
    let step = args.step(1)?;
    let duration = args.interval(2, "duration")?.ok_or(WorkflowError::NullArgument { arg: "duration" })?;
    let executor = args.optional_name(3, "executor_id")?;
    spi::connect(|c| {
        let recorded = match step::replay(c, &workflow_id, step, "sleep")? {
            Some((output, _)) => output,
            None => {
                ensure_live(c, &workflow_id, executor.as_deref())?;
                let wake_at = WAKE_AT.run(c, &[Some(duration.0)]).varlena(0, 1);
                step::record(c, &workflow_id, step, "sleep", wake_at.map(Out::datum), None);
                wake_at
            }
        };
        let wake_at = JSON_TO_TIMESTAMP.run(c, &[recorded.map(Out::datum)]).int8(0, 1);
        Ok(Raw(wake_at.map(Out::by_value)))
    })
}

sql_function!(wf_send, pg_finfo_wf_send, send);
sql_function!(wf_recv, pg_finfo_wf_recv, recv);
sql_function!(wf_set_event, pg_finfo_wf_set_event, set_event);
sql_function!(wf_get_event, pg_finfo_wf_get_event, get_event);
sql_function!(wf_sleep, pg_finfo_wf_sleep, sleep);

