"""The running workflow of this thread (or asyncio task), and the calls a body makes on it."""
from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any, Optional

import psycopg

from . import sql
from .errors import ConnectionLost, StepTaken, translate

# The run whose async step (or transaction) body this asyncio context is running: tasks a step
# body creates inherit it (their steps are plain calls), sibling tasks of the workflow body do not.
_stepping: contextvars.ContextVar[Any] = contextvars.ContextVar("pg_workflow_stepping", default=None)


def is_disconnect(e: BaseException, conn: Any) -> bool:
    """A lost server (restart, failover, network), as opposed to an error of the call itself."""
    if conn is not None and (conn.broken or conn.closed):
        return True
    state = getattr(e, "sqlstate", None) or ""
    return state.startswith("08") or state in ("57P01", "57P02", "57P03")


@dataclass
class Run:
    """One execution of a workflow body: its id, its connection and its step counter.

    Steps are numbered in the order the body calls them; a position at or below `last_step`
    (what start or dequeue reported) is a replay and reads its checkpoint."""
    app: Any
    workflow_id: str
    name: str
    conn: Any  # psycopg.Connection, or AsyncConnection for an async body
    last_step: int
    step: int = 0
    sync_in_step: bool = False
    cursor: Any = None
    sync_conn: Any = None  # a sync step inside an async body borrows a pooled connection
    extra: dict = field(default_factory=dict)
    busy: Optional[str] = None  # the async step (or durable call) of this run in flight

    @property
    def in_step(self) -> bool:
        """Inside a step's or transaction's body (whose durable calls are plain calls or refused).
        An async run keeps it per asyncio context: a sibling task is not inside the step."""
        if self.is_async:
            return _stepping.get() is self
        return self.sync_in_step

    @in_step.setter
    def in_step(self, value: bool) -> None:
        if self.is_async:
            _stepping.set(self if value else None)
        else:
            self.sync_in_step = value

    @property
    def executor_id(self) -> str:
        return self.app.executor_id

    @property
    def is_async(self) -> bool:
        return isinstance(self.conn, psycopg.AsyncConnection)

    def next_step(self) -> int:
        self.step += 1
        return self.step

    def replaying(self, n: int) -> bool:
        return n <= self.last_step

    def call(self, statement: str, params: tuple) -> Optional[tuple]:
        if self.cursor is None:  # one cursor for the whole run: no per-call cursor setup
            self.cursor = self.conn.cursor()
        try:
            return self.cursor.execute(statement, params).fetchone()
        except psycopg.Error as e:
            raise self.error(e, self.conn, statement) from e

    async def acall(self, statement: str, params: tuple) -> Optional[tuple]:
        try:
            cur = await self.conn.execute(statement, params)
            return await cur.fetchone()
        except psycopg.Error as e:
            raise self.error(e, self.conn, statement) from e

    def error(self, e: psycopg.Error, conn: Any, statement: str = "") -> BaseException:
        if is_disconnect(e, conn):
            return ConnectionLost(str(e))
        if e.sqlstate == "23505" and statement == sql.STEP_PUT:
            # First write wins: the step is already recorded (e.g. by the executor this one
            # took the run over from, whose step raced the takeover). Replay it (step_get).
            return StepTaken(f"workflow {self.workflow_id}: {e}")
        return translate(e, f"workflow {self.workflow_id}")  # 23505 of start/enqueue: duplicate


current: contextvars.ContextVar[Optional[Run]] = contextvars.ContextVar("pg_workflow_run", default=None)


def workflow_id() -> Optional[str]:
    """The id of the workflow running in this context, or None outside a workflow."""
    run = current.get()
    return run.workflow_id if run else None


def step_id() -> Optional[int]:
    """The number of the step (or durable call) that ran last in this workflow, or that is
    running now when called from inside a step; None outside a workflow."""
    run = current.get()
    return run.step if run else None
