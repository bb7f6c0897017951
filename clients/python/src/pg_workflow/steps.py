"""Steps, transactions and the durable calls (sleep, recv, send, set_event) of a sync body.

A fresh step is one round trip and one commit: its body, then step_put. A replayed step
(position <= last_step) is one step_get and never runs its body."""
from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any, Callable

import psycopg

from . import sql
from .codec import as_stored, dumps, error_of, rebuild_step_error
from .context import Run, current, is_disconnect
from .errors import ConnectionLost, NotOwnerError, StepTaken, WorkflowCancelled

# Errors that mean "stop this body now": never recorded as a step's or workflow's error.
STOP = (ConnectionLost, NotOwnerError, WorkflowCancelled)


def secs(value: float | timedelta | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


def replay(run: Run, n: int, name: str) -> tuple[bool, Any]:
    """(True, value) when step n has a checkpoint; raises the recorded error of a failed step."""
    found, output, error = run.call(sql.STEP_GET, (run.workflow_id, n, name))
    if not found:
        return False, None  # a position without a checkpoint (a child start, a send)
    if error is not None:
        raise rebuild_step_error(error)
    return True, output


def recorded(run: Run, n: int, name: str) -> Any:
    """After 23505 on step_put: the step was recorded by another writer first (one whose step
    raced this executor's takeover). Its checkpoint wins: return its value or raise its error."""
    found, value = replay(run, n, name)
    if not found:  # pragma: no cover - 23505 means it exists
        raise NotOwnerError(f"workflow {run.workflow_id}: step {n} is taken but not readable")
    return value


def put(run: Run, n: int, name: str, encoded: Any, error: Any) -> tuple[bool, Any]:
    """step_put; (True, the recorded value) when the step was already recorded (23505)."""
    try:
        run.call(sql.STEP_PUT, (run.workflow_id, n, name, encoded, error, run.executor_id))
    except StepTaken:
        return True, recorded(run, n, name)
    return False, None


def record_error(run: Run, n: int, name: str, e: BaseException) -> tuple[bool, Any]:
    return put(run, n, name, None, dumps(error_of(e)))


def run_step(name: str, fn: Callable, args: tuple, kwargs: dict, retries: int, backoff: float,
             backoff_rate: float) -> Any:
    run = current.get()
    if run is None or run.in_step:
        return fn(*args, **kwargs)  # outside a workflow, or nested: a plain call
    n = run.next_step()
    if run.replaying(n):
        found, value = replay(run, n, name)
        if found:
            return value
    delay = backoff
    for attempt in range(retries + 1):
        run.in_step = True
        try:
            value = fn(*args, **kwargs)
            break
        except STOP:
            raise
        except Exception as e:
            if attempt == retries:
                run.in_step = False
                taken, recorded_value = record_error(run, n, name, e)
                if taken:
                    return recorded_value
                raise
        finally:
            run.in_step = False
        time.sleep(delay * (0.9 + 0.2 * random.random()))  # jitter: retries of many runs spread
        delay *= backoff_rate
    encoded = dumps(value, run.app.json_default, f"the return value of step {name}")
    taken, recorded_value = put(run, n, name, encoded, None)
    if taken:
        return recorded_value
    return as_stored(value, encoded)  # the checkpoint's value: a replay returns exactly this


def run_transaction(name: str, fn: Callable, args: tuple, kwargs: dict, app: Any) -> Any:
    """fn(conn, ...) and its checkpoint in one transaction: the step happens exactly once."""
    run = current.get()
    if run is None or run.in_step:
        with app.connection() as conn, conn.transaction():
            return fn(conn, *args, **kwargs)
    n = run.next_step()
    if run.replaying(n):
        found, value = replay(run, n, name)
        if found:
            return value
    conn = run.conn if run.sync_conn is None else run.sync_conn
    for attempt in range(5):
        run.in_step = True
        try:
            with conn.transaction():
                value = fn(conn, *args, **kwargs)
                encoded = dumps(value, app.json_default, f"the return value of transaction {name}")
                try:
                    conn.execute(sql.STEP_PUT, (run.workflow_id, n, name, encoded, None, run.executor_id))
                except psycopg.Error as e:
                    raise run.error(e, conn, sql.STEP_PUT) from e
            return as_stored(value, encoded)
        except StepTaken:  # rolled back: the checkpoint recorded first (and its effects) win
            run.in_step = False
            return recorded(run, n, name)
        except STOP:
            raise
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
            if attempt < 4:
                continue  # everything rolled back: the transaction may simply run again
            failure: BaseException = e
        except psycopg.Error as e:
            if is_disconnect(e, conn):
                raise ConnectionLost(str(e)) from e
            failure = e
        except Exception as e:
            failure = e
        finally:
            run.in_step = False
        taken, recorded_value = record_error(run, n, name, failure)
        if taken:
            return recorded_value
        raise failure


def not_in_step(run: Run, what: str) -> None:
    """A durable call takes a step number; inside a step (whose body a replay skips) it would
    shift every later number, so it is refused there."""
    if run.in_step:
        raise RuntimeError(f"pg_workflow.{what}() inside a step or transaction: call it from the "
                           f"workflow body (a replay skips a step's body, so the durable calls in "
                           f"it would shift the numbering); inside a step use the App's calls "
                           f"(app.send, app.get_event)")


def _need_run(what: str) -> Run:
    run = current.get()
    if run is None:
        raise RuntimeError(f"pg_workflow.{what}() is only durable inside a workflow; "
                           f"outside one, use App.{what} or time.sleep")
    not_in_step(run, what)
    return run


def sleep(seconds: float) -> None:
    """A durable sleep: the wake-up time is recorded once, so a resumed run sleeps only what is left."""
    run = current.get()
    if run is None or run.in_step:  # inside a step: a plain sleep, no step number
        time.sleep(seconds)
        return
    n = run.next_step()
    left = run.call(sql.SLEEP, (run.workflow_id, n, secs(seconds), run.executor_id))[0]
    time.sleep(left)


def recv(topic: str | None = None, timeout: float = 60.0) -> Any:
    """Waits for and consumes one message sent to this workflow (None after the timeout)."""
    run = _need_run("recv")
    n = run.next_step()
    return run.call(sql.RECV, (run.workflow_id, n, topic, secs(timeout), run.executor_id))[0]


def set_event(key: str, value: Any) -> None:
    """Publishes the latest value of `key` for App.get_event readers."""
    run = _need_run("set_event")
    n = run.next_step()
    encoded = dumps(value, run.app.json_default, f"the value of event {key}")
    run.call(sql.SET_EVENT, (run.workflow_id, n, key, encoded, run.executor_id))


def send(destination_id: str, message: Any, topic: str | None = None) -> None:
    """Sends a message to a workflow. Inside a workflow it is delivered once, even on replay."""
    run = current.get()
    if run is None:
        raise RuntimeError("pg_workflow.send() outside a workflow: use App.send")
    not_in_step(run, "send")
    n = run.next_step()
    encoded = dumps(message, run.app.json_default, "the message")
    run.call(sql.SEND, (destination_id, encoded, topic, f"{run.workflow_id}:{n}"))
