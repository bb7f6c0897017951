"""async def workflows and steps, on psycopg's AsyncConnection.

An async body runs on its own AsyncConnection (autocommit, prepared statements) in the
caller's event loop when awaited directly, or in a private event loop in a worker thread when
a worker or app.start runs it. Inside an async workflow, use async steps and transactions and
the *_async calls (sleep_async, recv_async, set_event_async, send_async)."""
from __future__ import annotations

import asyncio
import functools
import random
import uuid
from typing import Any, Callable

import psycopg

from . import sql
from .codec import Encoded, as_stored, decode_input, dumps, encode_input, error_of, rebuild_step_error
from .context import Run, current, is_disconnect
from .errors import ConnectionLost, NotOwnerError, StepTaken, WorkflowCancelled
from .execution import Detached, WorkflowDef, compact, outcome, reclaim
from .steps import STOP, not_in_step, secs


async def _connect(app: Any) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(app.dsn, autocommit=True, prepare_threshold=0,
                                                 **app.connect_kwargs())


async def _fail_run(run: Run, e: BaseException) -> dict:
    """Records `e` as the run's error (compacted when the full one is refused); returns it."""
    error = error_of(e)
    try:
        await run.acall(sql.FAIL, (run.workflow_id, dumps(error), run.executor_id))
    except STOP:
        raise
    except Exception:
        error = compact(error)
        await run.acall(sql.FAIL, (run.workflow_id, dumps(error), run.executor_id))
    return error


async def _body(app: Any, wf: WorkflowDef, conn: Any, workflow_id: str, args: list, kwargs: dict,
                last_step: int) -> Any:
    run = Run(app, workflow_id, wf.name, conn, last_step)
    token = current.set(run)
    try:
        try:
            value = await wf.fn(*args, **kwargs)
            encoded = dumps(value, app.json_default, f"the return value of workflow {wf.name}")
        except (ConnectionLost, NotOwnerError, WorkflowCancelled):
            raise
        except Exception as e:
            e.__pgwf_error__ = await _fail_run(run, e)  # type: ignore[attr-defined]
            raise
        try:
            await run.acall(sql.FINISH, (workflow_id, encoded, app.executor_id))
        except STOP:
            raise
        except Exception as e:  # e.g. 54000: the output is over workflow.max_payload_size
            e.__pgwf_error__ = await _fail_run(run, e)  # type: ignore[attr-defined]
            raise
        return as_stored(value, encoded)
    finally:
        current.reset(token)


async def execute_async(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any, last_step: int) -> Any:
    args, kwargs = decode_input(input_json)
    while True:
        try:
            async with await _connect(app) as conn:
                return await _body(app, wf, conn, workflow_id, args, kwargs, last_step)
        except ConnectionLost:
            pass
        except psycopg.OperationalError:  # the connect itself failed: the server is away
            await asyncio.sleep(0.5)
        last_step = await asyncio.to_thread(reclaim, app, wf, workflow_id, input_json)


def execute_async_in_thread(app: Any, wf: WorkflowDef, workflow_id: str, input_json: Any,
                            last_step: int) -> Any:
    return asyncio.run(execute_async(app, wf, workflow_id, input_json, last_step))


async def run_async(app: Any, wf: WorkflowDef, args: tuple, kwargs: dict) -> Any:
    """`await workflow(...)`: runs the workflow in this event loop and returns its output."""
    if current.get() is not None:  # a child of an async workflow
        handle = await asyncio.to_thread(app.start, wf.name, *args, **kwargs)
        return await asyncio.to_thread(handle.result)
    await asyncio.to_thread(app.launch)
    workflow_id = str(uuid.uuid4())
    encoded: Encoded = encode_input(wf.fn, args, kwargs, app.json_default)
    row = await asyncio.to_thread(app.call_retrying, sql.START,
                                  (wf.name, encoded, workflow_id, app.executor_id, None, None))
    status, output, error, last_step, claimed, _ = row
    if status in sql.TERMINAL or not claimed:
        try:
            return outcome(workflow_id, status, output, error)
        except Detached:
            return await asyncio.to_thread(app.handle(workflow_id).result)
    return await execute_async(app, wf, workflow_id, encoded, last_step)


async def _replay(run: Run, n: int, name: str) -> tuple[bool, Any]:
    found, output, error = await run.acall(sql.STEP_GET, (run.workflow_id, n, name))
    if found and error is not None:
        raise rebuild_step_error(error)
    return bool(found), output


async def _recorded(run: Run, n: int, name: str) -> Any:
    """After 23505 on step_put: the checkpoint recorded first wins (see steps.recorded)."""
    found, value = await _replay(run, n, name)
    if not found:  # pragma: no cover - 23505 means it exists
        raise NotOwnerError(f"workflow {run.workflow_id}: step {n} is taken but not readable")
    return value


async def _put(run: Run, n: int, name: str, encoded: Any, error: Any) -> tuple[bool, Any]:
    try:
        await run.acall(sql.STEP_PUT, (run.workflow_id, n, name, encoded, error, run.executor_id))
    except StepTaken:
        return True, await _recorded(run, n, name)
    return False, None


def _take(run: Run, what: str) -> int:
    """The next step number, for an async step or durable call that holds the run until it
    returns (release with `run.busy = None`). One starting while another of the same run is in
    flight (asyncio.gather, create_task) is refused: the numbers would depend on timing, so a
    replay could give a checkpoint to the wrong step, and both would share the connection."""
    if run.busy is not None:
        raise RuntimeError(f"pg_workflow: {what} started while {run.busy} of the same workflow "
                           f"({run.workflow_id}) is still running: the steps of one workflow must "
                           f"be awaited one after another (not with asyncio.gather or create_task), "
                           f"so that a replay numbers them the same; for concurrency, start child "
                           f"workflows or gather inside one step")
    run.busy = what
    return run.next_step()


def async_step(app: Any, name: str, fn: Callable, retries: int, backoff: float, rate: float) -> Callable:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        run = current.get()
        if run is None or run.in_step:
            return await fn(*args, **kwargs)
        n = _take(run, f"step {name}")
        try:
            return await checkpointed(run, n, args, kwargs)
        finally:
            run.busy = None

    async def checkpointed(run: Run, n: int, args: tuple, kwargs: dict) -> Any:
        if run.replaying(n):
            found, value = await _replay(run, n, name)
            if found:
                return value
        delay = backoff
        for attempt in range(retries + 1):
            run.in_step = True
            try:
                value = await fn(*args, **kwargs)
                break
            except STOP:
                raise
            except Exception as e:
                if attempt == retries:
                    run.in_step = False
                    taken, recorded_value = await _put(run, n, name, None, dumps(error_of(e)))
                    if taken:
                        return recorded_value
                    raise
            finally:
                run.in_step = False
            await asyncio.sleep(delay * (0.9 + 0.2 * random.random()))
            delay *= rate
        encoded = dumps(value, app.json_default, f"the return value of step {name}")
        taken, recorded_value = await _put(run, n, name, encoded, None)
        if taken:
            return recorded_value
        return as_stored(value, encoded)
    return call


def async_transaction(app: Any, name: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        run = current.get()
        if run is None or run.in_step:
            async with await _connect(app) as conn, conn.transaction():
                return await fn(conn, *args, **kwargs)
        n = _take(run, f"transaction {name}")
        try:
            return await committed(run, n, args, kwargs)
        finally:
            run.busy = None

    async def committed(run: Run, n: int, args: tuple, kwargs: dict) -> Any:
        if run.replaying(n):
            found, value = await _replay(run, n, name)
            if found:
                return value
        conn = run.conn
        for attempt in range(5):
            run.in_step = True
            try:
                async with conn.transaction():
                    value = await fn(conn, *args, **kwargs)
                    encoded = dumps(value, app.json_default, f"the return value of transaction {name}")
                    try:
                        await conn.execute(sql.STEP_PUT, (run.workflow_id, n, name, encoded, None,
                                                          run.executor_id))
                    except psycopg.Error as e:
                        raise run.error(e, conn, sql.STEP_PUT) from e
                return as_stored(value, encoded)
            except StepTaken:  # rolled back: the checkpoint recorded first (and its effects) win
                run.in_step = False
                return await _recorded(run, n, name)
            except STOP:
                raise
            except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as e:
                if attempt < 4:
                    continue  # everything rolled back: the transaction may simply run again
                failure: BaseException = e
            except Exception as e:
                if isinstance(e, psycopg.Error) and is_disconnect(e, conn):
                    raise ConnectionLost(str(e)) from e
                failure = e
            finally:
                run.in_step = False
            taken, recorded_value = await _put(run, n, name, None, dumps(error_of(failure)))
            if taken:
                return recorded_value
            raise failure
    return call


def _need_run(what: str) -> Run:
    run = current.get()
    if run is None:
        raise RuntimeError(f"pg_workflow.{what}() is only durable inside a workflow")
    not_in_step(run, what)
    return run


async def sleep_async(seconds: float) -> None:
    run = current.get()
    if run is None or run.in_step:  # inside a step: a plain sleep, no step number
        await asyncio.sleep(seconds)
        return
    n = _take(run, "sleep_async")
    try:
        left = (await run.acall(sql.SLEEP, (run.workflow_id, n, secs(seconds), run.executor_id)))[0]
        await asyncio.sleep(left)
    finally:
        run.busy = None


async def recv_async(topic: str | None = None, timeout: float = 60.0) -> Any:
    run = _need_run("recv_async")
    n = _take(run, "recv_async")
    try:
        return (await run.acall(sql.RECV, (run.workflow_id, n, topic, secs(timeout), run.executor_id)))[0]
    finally:
        run.busy = None


async def set_event_async(key: str, value: Any) -> None:
    run = _need_run("set_event_async")
    n = _take(run, "set_event_async")
    try:
        await run.acall(sql.SET_EVENT, (run.workflow_id, n, key, dumps(value, run.app.json_default),
                                        run.executor_id))
    finally:
        run.busy = None


async def send_async(destination_id: str, message: Any, topic: str | None = None) -> None:
    run = _need_run("send_async")
    n = _take(run, "send_async")
    try:
        await run.acall(sql.SEND, (destination_id, dumps(message, run.app.json_default), topic,
                                   f"{run.workflow_id}:{n}"))
    finally:
        run.busy = None
