"""Testing helpers: a scratch database with the extension per test, and replaying a failed
run from its checkpoints against new code.

    from pg_workflow.testing import bound   # the pgwf_dsn fixture comes with the package

    def test_order(pgwf_dsn):
        with bound(app, pgwf_dsn):
            assert app.start(order, "o-1").result(timeout=30) == {...}

The server comes from PGWF_HOST (socket directory or host, default /tmp/pgwf_sdk), PGWF_PORT
(5490) and PGWF_USER (postgres); or PGWF_TEST_DSN, a DSN of a database to create others from.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from datetime import timedelta
from typing import Any, Iterator, Optional

import psycopg
from psycopg.conninfo import make_conninfo

from . import sql
from .app import App
from .execution import execute


def server_dsn(dbname: str = "postgres") -> str:
    base = os.environ.get("PGWF_TEST_DSN")
    if base:
        return make_conninfo(base, dbname=dbname)
    return make_conninfo(host=os.environ.get("PGWF_HOST", "/tmp/pgwf_sdk"),
                         port=os.environ.get("PGWF_PORT", "5490"),
                         user=os.environ.get("PGWF_USER", "postgres"), dbname=dbname)


@contextlib.contextmanager
def scratch_database(prefix: str = "pgwf_test", extension: bool = True) -> Iterator[str]:
    """A new database (with CREATE EXTENSION pg_workflow), dropped afterwards; yields its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        if extension:
            with psycopg.connect(server_dsn(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_workflow")
        yield server_dsn(name)
    finally:
        with psycopg.connect(server_dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bound(app: App, dsn: str, executor_id: Optional[str] = None) -> Iterator[App]:
    """Points a module-level App at a (scratch) database for the block, then closes it."""
    previous = app.dsn, app.executor_id
    app.close()
    app.dsn = dsn
    if executor_id:
        app.executor_id = executor_id
    try:
        yield app
    finally:
        app.close()
        app.dsn, app.executor_id = previous


def replay(app: App, workflow_id: str, from_step: Optional[int] = None) -> Any:
    """Forks a run (a failed production run, restored here) from its checkpoints and runs the
    fork to its end, in this thread, with this process's code. Steps before from_step replay
    their checkpoints; from_step (default: the first failed step, else the one after the
    last) on runs the new code. Returns the output, or raises the body's exception."""
    row = app.call_retrying(
        "SELECT name, app_version, last_step, "
        "(SELECT min(step) FROM workflow.steps s WHERE s.workflow_id = r.workflow_id AND NOT s.succeeded) "
        "FROM workflow.runs r WHERE workflow_id = %s", (workflow_id,))
    if row is None:
        raise LookupError(f"no run {workflow_id!r}")
    name, version, last_step, first_failed = row
    wf = app.workflow_def(name)
    from_step = from_step or first_failed or last_step + 1
    # The fork keeps the original's app_version: a throwaway executor of that version claims
    # it, from a private queue, so no worker takes it first.
    queue = f"pgwf_replay_{uuid.uuid4().hex[:12]}"
    replayer = App(app.dsn, executor_id=f"replay-{uuid.uuid4().hex[:12]}", app_version=version,
                   json_default=app.json_default)
    replayer._workflows = app._workflows
    try:
        replayer.create_queue(queue)
        new_id = replayer.fork(workflow_id, from_step, queue=queue).workflow_id
        replayer.launch()
        claimed = replayer.call_retrying(sql.DEQUEUE, (queue, replayer.executor_id, 1, timedelta(seconds=5)))
        if claimed is None or claimed[0] != new_id:
            raise RuntimeError(f"the fork {new_id} of {workflow_id} could not be claimed")
        return execute(replayer, wf, new_id, claimed[2], claimed[3])
    finally:
        replayer.close()
        with contextlib.suppress(psycopg.Error):
            with psycopg.connect(app.dsn, autocommit=True) as conn:
                conn.execute("SELECT workflow.drop_queue(%s)", (queue,))


try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def pgwf_dsn() -> Iterator[str]:
        """The DSN of a scratch database with the pg_workflow extension, dropped after the test."""
        with scratch_database() as dsn:
            yield dsn
