"""Running a claimed run's body to its end: finish or fail it, and after a lost connection,
reconnect, claim it again and replay from its checkpoints."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Optional

import psycopg
from psycopg_pool import PoolTimeout

from . import sql
from .codec import Encoded, as_stored, decode_input, dumps, error_of
from .context import Run, current
from .errors import ConnectionLost, NotOwnerError, WorkflowCancelled, WorkflowFailed

STOP = (ConnectionLost, NotOwnerError, WorkflowCancelled)

log = logging.getLogger("pg_workflow")


@dataclass
class WorkflowDef:
    name: str
    fn: Callable[..., Any]
    is_async: bool


class Detached(Exception):
    """The run is no longer this executor's to execute (another one claimed it, it was
    cancelled, or it is back on a queue): its outcome is read from the database."""


def outcome(workflow_id: str, status: str, output: Any, error: Any) -> Any:
    """The value of an ended run, or the exception its result() raises."""
    if status == "SUCCESS":
        return output  # psycopg has parsed the jsonb
    if status == "CANCELLED":
        raise WorkflowCancelled(f"workflow {workflow_id} was cancelled")
    if status == "ERROR":
        raise WorkflowFailed.from_error(workflow_id, error)
    if status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED":
        raise WorkflowFailed(workflow_id, status, "dead-lettered after too many recovery attempts")
    raise Detached(status)


def compact(error: dict) -> dict:
    """An error small enough to record when the full one is refused (54000: over
    workflow.max_payload_size): the type, the message's start and the traceback's end."""
    message, trace = str(error.get("message", "")), str(error.get("traceback") or "")
    return {"type": error.get("type", "Error"),
            "message": message if len(message) <= 4000 else message[:4000] + "... (truncated)",
            "traceback": trace if len(trace) <= 4000 else "(truncated) ..." + trace[-4000:]}


def fail_run(run: Run, e: BaseException) -> dict:
    """Records `e` as the run's error (compacted when the full one is refused); returns it."""
    error = error_of(e)
    try:
        run.call(sql.FAIL, (run.workflow_id, dumps(error), run.executor_id))
    except STOP:
        raise
    except Exception:
        error = compact(error)
        run.call(sql.FAIL, (run.workflow_id, dumps(error), run.executor_id))
    return error


def run_body(app: Any, wf: WorkflowDef, conn: Any, workflow_id: str, args: list, kwargs: dict,
             last_step: int) -> Any:
    """One execution of the body on `conn`. Returns the output, or raises the body's own
    exception after recording it (marked with __pgwf_error__), or a STOP error."""
    run = Run(app, workflow_id, wf.name, conn, last_step)
    token = current.set(run)
    try:
        try:
            value = wf.fn(*args, **kwargs)
            encoded = dumps(value, app.json_default, f"the return value of workflow {wf.name}")
        except (ConnectionLost, NotOwnerError, WorkflowCancelled):
            raise
        except Exception as e:
            e.__pgwf_error__ = fail_run(run, e)  # type: ignore[attr-defined]
            raise
        try:
            run.call(sql.FINISH, (workflow_id, encoded, app.executor_id))
        except STOP:
            raise
        except Exception as e:  # e.g. 54000: the output is over workflow.max_payload_size
            e.__pgwf_error__ = fail_run(run, e)  # type: ignore[attr-defined]
            raise
        return as_stored(value, encoded)
    finally:
        current.reset(token)


def execute(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any, last_step: int,
            conn: Any = None) -> Any:
    """Runs a run this executor has claimed until it ends, across lost connections."""
    if wf.is_async:
        from .aio import execute_async_in_thread
        return execute_async_in_thread(app, wf, workflow_id, input_json, last_step)
    args, kwargs = decode_input(input_json)
    while True:
        try:
            if conn is not None:
                return run_body(app, wf, conn, workflow_id, args, kwargs, last_step)
            with app.connection() as pooled:
                return run_body(app, wf, pooled, workflow_id, args, kwargs, last_step)
        except ConnectionLost as lost:
            log.warning("workflow %s lost its connection (%s); reconnecting to replay it", workflow_id, lost)
        conn = None
        last_step = reclaim(app, wf, workflow_id, input_json)


def reclaim(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any) -> int:
    """After a lost connection: start() again (idempotent); a replay when we still own it."""
    status, output, error, last_step, claimed, _ = app.call_retrying(
        sql.START, (wf.name, input_json if isinstance(input_json, Encoded) else dumps(input_json),
                    workflow_id, app.executor_id, None, None))
    if status in sql.TERMINAL:
        raise Detached(status)  # it ended while we were away: the handle reads the outcome
    if not claimed:
        raise Detached(status)
    return last_step


def execute_or_fail(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any,
                    last_step: int) -> Any:
    """execute, for a run nobody waits on in this thread (a worker's, a background one): a
    pool or connect failure is retried with backoff (reclaiming the run, up to
    reconnect_timeout); any other error that escapes fails the run (best effort) instead of
    leaving it PENDING under this executor's live lease."""
    deadline = time.monotonic() + app.reconnect_timeout
    delay = 0.5
    while True:
        try:
            return execute(app, wf, workflow_id, input_json, last_step)
        except (Detached, *STOP):
            raise
        except Exception as e:
            if hasattr(e, "__pgwf_error__"):
                raise  # the body's own exception, recorded
            if isinstance(e, (PoolTimeout, psycopg.OperationalError)) and time.monotonic() < deadline:
                log.warning("workflow %s could not run (%s); retrying in %.1fs", workflow_id, e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                last_step = reclaim(app, wf, workflow_id, input_json)
                continue
            log.exception("workflow %s stopped; failing it", workflow_id)
            error = compact(error_of(e))
            try:
                app.call_retrying(sql.FAIL, (workflow_id, dumps(error), app.executor_id))
            except Exception:
                log.exception("workflow %s could not be failed", workflow_id)
                raise e
            e.__pgwf_error__ = error  # type: ignore[attr-defined]
            raise


def spawn(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any, last_step: int,
          inline: bool = False) -> Future:
    """Runs a claimed run once in this process: in a new thread, or in this one (a worker's).
    A run already running here is not started twice; its future is returned."""
    with app._local_lock:
        running = app._local.get(workflow_id)
        if running is not None:
            return running
        future: Future = Future()
        app._local[workflow_id] = future

    def target() -> None:
        try:
            future.set_result(("SUCCESS", execute_or_fail(app, wf, workflow_id, input_json, last_step)))
        except Exception as e:
            if hasattr(e, "__pgwf_error__"):
                future.set_result(("ERROR", e.__pgwf_error__))
            elif isinstance(e, (Detached, NotOwnerError, WorkflowCancelled)):
                future.set_result(None)  # not ours to finish: result() asks the database
            else:
                log.exception("workflow %s stopped", workflow_id)
                future.set_result(None)
        except BaseException:
            future.set_result(None)
            raise
        finally:
            with app._local_lock:
                app._local.pop(workflow_id, None)

    if inline:
        target()
    else:
        threading.Thread(target=target, name=f"pgwf-{workflow_id}"[:60], daemon=True).start()
    return future


def local_future(app: Any, workflow_id: str) -> Optional[Future]:
    with app._local_lock:
        return app._local.get(workflow_id)
