"""The App: decorators, the client calls, and this process's executor."""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, Optional, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from . import sql
from .codec import Encoder, dumps, encode_input
from .context import current, is_disconnect
from .errors import ExtensionMissing, WorkflowNotRegistered, translate
from .execution import WorkflowDef, execute, local_future, outcome, spawn, Detached
from .client import ClientCalls
from .executor import Heartbeat
from .handle import WorkflowHandle
from .steps import run_step, run_transaction, secs

log = logging.getLogger("pg_workflow")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class RunInfo:
    workflow_id: str
    name: str
    status: str
    queue: Optional[str]
    executor_id: Optional[str]
    app_version: Optional[str]
    parent_id: Optional[str]
    input: Any
    output: Any
    error: Any
    created_at: datetime
    finished_at: Optional[datetime]
    last_step: int


def default_executor_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class App(ClientCalls):
    """Workflows, steps and transactions of one application, on one database.

    Nothing connects until the first call that needs the database. The executor is
    registered (and heartbeats from a background thread) from the first run it executes."""

    def __init__(self, dsn: Optional[str] = None, executor_id: Optional[str] = None,
                 app_version: Optional[str] = None, *, json_default: Optional[Encoder] = None,
                 pool_size: int = 64, reconnect_timeout: float = 300.0, keepalives: bool = True,
                 keepalives_idle: int = 30, keepalives_interval: int = 10, keepalives_count: int = 3,
                 tcp_user_timeout: int = 60_000):
        self.dsn = dsn
        self.executor_id = executor_id or default_executor_id()
        self.app_version = app_version
        self.json_default = json_default  # json.dumps(default=...) for types JSON lacks
        self.pool_size = pool_size
        self.reconnect_timeout = reconnect_timeout  # how long a call retries a lost server
        # TCP keepalives (seconds) and tcp_user_timeout (ms): a peer gone without a reset
        # (failover, partition) is noticed in about a minute, not the kernel's ~15.
        self.keepalives = keepalives
        self.keepalives_idle, self.keepalives_interval = keepalives_idle, keepalives_interval
        self.keepalives_count, self.tcp_user_timeout = keepalives_count, tcp_user_timeout
        self._workflows: dict[str, WorkflowDef] = {}
        self._lock = threading.RLock()
        self._pool: Optional[ConnectionPool] = None
        self._heartbeat: Optional[Heartbeat] = None
        self._local: dict[str, Future] = {}  # runs whose body runs in this process now
        self._local_lock = threading.Lock()

    # -- decorators ------------------------------------------------------------------------

    def workflow(self, name: Optional[str] = None) -> Callable[[F], F]:
        """A durable function. Calling it runs it as a workflow (a child, inside a workflow)."""
        def decorate(fn: F) -> F:
            wf = WorkflowDef(name or fn.__qualname__, fn, inspect.iscoroutinefunction(fn))
            known = self._workflows.get(wf.name)
            if known is not None and known.fn is not fn:
                raise ValueError(f"two workflows are named {wf.name!r}: give one @app.workflow(name=...)")
            self._workflows[wf.name] = wf
            if wf.is_async:
                @functools.wraps(fn)
                async def call_async(*args: Any, **kwargs: Any) -> Any:
                    from .aio import run_async
                    return await run_async(self, wf, args, kwargs)
                wrapper: Any = call_async
            else:
                @functools.wraps(fn)
                def call(*args: Any, **kwargs: Any) -> Any:
                    return self.run(wrapper, *args, **kwargs)
                wrapper = call
            wrapper.__pgwf_workflow__ = wf
            return wrapper  # type: ignore[return-value]
        return decorate

    def step(self, retries: int = 0, backoff: float = 1.0, backoff_rate: float = 2.0,
             name: Optional[str] = None) -> Callable[[F], F]:
        """At least once: checkpointed after it returns; retried `retries` times with backoff."""
        def decorate(fn: F) -> F:
            step_name = name or fn.__qualname__
            if inspect.iscoroutinefunction(fn):
                from .aio import async_step
                return async_step(self, step_name, fn, retries, backoff, backoff_rate)  # type: ignore
            @functools.wraps(fn)
            def call(*args: Any, **kwargs: Any) -> Any:
                return run_step(step_name, fn, args, kwargs, retries, backoff, backoff_rate)
            return call  # type: ignore[return-value]
        return decorate

    def transaction(self, name: Optional[str] = None) -> Callable[[F], F]:
        """Exactly once: fn(conn, ...) runs in the transaction that commits its checkpoint.
        Call it without `conn`; the SDK passes the workflow's connection."""
        def decorate(fn: F) -> F:
            step_name = name or fn.__qualname__
            if inspect.iscoroutinefunction(fn):
                from .aio import async_transaction
                return async_transaction(self, step_name, fn)  # type: ignore
            @functools.wraps(fn)
            def call(*args: Any, **kwargs: Any) -> Any:
                return run_transaction(step_name, fn, args, kwargs, self)
            return call  # type: ignore[return-value]
        return decorate

    # -- connections -----------------------------------------------------------------------

    def connect_kwargs(self) -> dict:
        """The libpq options every connection of this App adds to its DSN: TCP keepalives and
        tcp_user_timeout, except those the DSN sets itself (libpq ignores them on unix sockets)."""
        if not self.keepalives:
            return {}
        try:
            given = conninfo_to_dict(self.dsn or "")
        except psycopg.Error:
            given = {}
        if str(given.get("keepalives", "1")) == "0":
            return {}
        options = {"keepalives": 1, "keepalives_idle": self.keepalives_idle,
                   "keepalives_interval": self.keepalives_interval,
                   "keepalives_count": self.keepalives_count, "tcp_user_timeout": self.tcp_user_timeout}
        return {k: v for k, v in options.items() if k not in given}

    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                if not self.dsn:
                    raise RuntimeError("App has no dsn: pw.App(dsn) or app.dsn = ... before use")
                self._pool = ConnectionPool(
                    self.dsn, min_size=1, max_size=self.pool_size, open=True, name="pg_workflow",
                    kwargs={"autocommit": True, "prepare_threshold": 0, **self.connect_kwargs()})
            return self._pool

    @contextlib.contextmanager
    def connection(self, timeout: float = 60.0) -> Iterator[psycopg.Connection]:
        with self.pool().connection(timeout=timeout) as conn:
            yield conn

    def call_retrying(self, statement: str, params: Any, fetch: str = "one") -> Any:
        """One statement on a pooled connection. A lost server is retried with backoff for up
        to reconnect_timeout: every statement sent this way is safe to repeat."""
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.05
        while True:
            conn = None
            try:
                with self.connection() as conn:
                    cur = conn.execute(statement, params)
                    return cur.fetchone() if fetch == "one" else cur.fetchall()
            except PoolTimeout:
                if time.monotonic() > deadline:
                    raise
            except psycopg.Error as e:
                if not is_disconnect(e, conn) or time.monotonic() > deadline:
                    raise translate(e) from e
                self.pool().check()  # drop the other idle connections the restart broke
            log.warning("database unavailable; retrying in %.2fs", delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def launch(self) -> "App":
        """Checks the extension, registers the executor, starts its heartbeat. Idempotent."""
        with self._lock:
            if self._heartbeat is not None:
                return self
            if self.call_retrying(sql.EXTENSION, ()) is None:
                raise ExtensionMissing(f"the database of {self.dsn!r} has no pg_workflow extension "
                                       f"(CREATE EXTENSION pg_workflow)")
            lease = self.call_retrying(sql.REGISTER, (self.executor_id, self.app_version))[0]
            self._heartbeat = Heartbeat(self, lease)
            return self

    def close(self, wait: float = 30.0) -> None:
        """Waits (up to `wait` s) for the runs this process executes, then disconnects."""
        deadline = time.monotonic() + wait
        for future in list(self._local.values()):
            with contextlib.suppress(Exception):
                future.result(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._heartbeat is not None:
                self._heartbeat.stop()
                self._heartbeat = None
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def __enter__(self) -> "App":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running workflows -----------------------------------------------------------------

    def workflow_def(self, fn: Any) -> WorkflowDef:
        name = fn if isinstance(fn, str) else getattr(getattr(fn, "__pgwf_workflow__", None), "name", None)
        wf = self._workflows.get(name) if name else None
        if wf is None:
            what = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
            raise WorkflowNotRegistered(f"{what!r} is not a workflow of this App: decorate it "
                                        f"with @app.workflow() (and import it in the worker)")
        return wf

    def _ids(self, workflow_id: Optional[str]) -> tuple[str, Optional[str]]:
        """(id, parent_id): inside a workflow a child's default id is `<parent>-<step>`, so a
        replay names the same child and starts it once."""
        parent = current.get()
        if parent is not None and not parent.in_step:
            if parent.busy is not None:  # an async parent with a step in flight (asyncio.gather)
                from .aio import _take
                _take(parent, "a child start")  # raises
            n = parent.next_step()
            return workflow_id or f"{parent.workflow_id}-{n}", parent.workflow_id
        return workflow_id or str(uuid.uuid4()), None

    def _start_row(self, wf: WorkflowDef, encoded: str, workflow_id: str, timeout: Any,
                   parent_id: Optional[str], conn: Any = None) -> tuple:
        self.launch()
        params = (wf.name, encoded, workflow_id, self.executor_id, secs(timeout), parent_id)
        parent = current.get()
        if parent is not None and parent_id is not None and not parent.is_async:
            return parent.call(sql.START, params)  # on the parent's connection: a lost one replays it
        # An async parent's AsyncConnection cannot run this sync call: a pooled connection
        # does (the child's id is deterministic, so a retried or replayed start is one start).
        if conn is not None:
            try:
                return conn.execute(sql.START, params).fetchone()
            except psycopg.Error as e:
                if not is_disconnect(e, conn):
                    raise translate(e) from e
        return self.call_retrying(sql.START, params)

    def start(self, fn: Callable[..., Any], *args: Any, workflow_id: Optional[str] = None,
              timeout: Optional[float] = None, **kwargs: Any) -> WorkflowHandle:
        """Starts a run (idempotent on workflow_id). When this executor claims it, the body runs
        in a background thread of this process. Inside a workflow, starts a child run."""
        wf = self.workflow_def(fn)
        workflow_id, parent_id = self._ids(workflow_id)
        running = local_future(self, workflow_id)
        if running is not None:
            return WorkflowHandle(self, workflow_id, running)
        encoded = encode_input(wf.fn, args, kwargs, self.json_default)
        status, _, _, last_step, claimed, run_input = self._start_row(wf, encoded, workflow_id, timeout, parent_id)
        future = spawn(self, wf, workflow_id, run_input, last_step) if claimed else None
        return WorkflowHandle(self, workflow_id, future)

    def run(self, fn: Callable[..., Any], *args: Any, workflow_id: Optional[str] = None,
            timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """Runs a workflow to its end in this thread and returns its output (the body's own
        exception, when it fails). Calling a decorated workflow does this."""
        wf = self.workflow_def(fn)
        if current.get() is not None:
            return self.start(fn, *args, workflow_id=workflow_id, timeout=timeout, **kwargs).result()
        workflow_id = workflow_id or str(uuid.uuid4())
        encoded = encode_input(wf.fn, args, kwargs, self.json_default)
        # Reserve the id in this process before START, as spawn does: two threads running the
        # same id would both claim it (same executor) and run the body twice.
        future: Future = Future()
        with self._local_lock:
            running = self._local.setdefault(workflow_id, future)
        if running is not future:
            return WorkflowHandle(self, workflow_id, running).result()
        try:
            with self.connection() as conn:  # one connection for start, every step and finish
                status, output, error, last_step, claimed, run_input = self._start_row(
                    wf, encoded, workflow_id, timeout, None, conn)
                if status in sql.TERMINAL:
                    return outcome(workflow_id, status, output, error)
                if claimed:
                    value = execute(self, wf, workflow_id, run_input, last_step, conn if not conn.broken else None)
                    future.set_result(("SUCCESS", value))
                    return value
        except Detached:
            pass
        except BaseException as e:
            if not future.done():
                future.set_result(("ERROR", e.__pgwf_error__) if hasattr(e, "__pgwf_error__") else None)
            raise
        finally:
            if not future.done():
                future.set_result(None)  # not run here: waiters read the outcome from the database
            with self._local_lock:
                if self._local.get(workflow_id) is future:
                    del self._local[workflow_id]
        return WorkflowHandle(self, workflow_id).result()
