"""Races and limits: a step already recorded by another writer, payloads over the server's
limit, pool sizing, durable calls inside steps, async parents of children."""
import asyncio

import psycopg
import pytest

import pg_workflow as pw
from pg_workflow.testing import bound

app = pw.App()
DSN = {}


def record_behind_its_back(step: int, name: str, value: str) -> None:
    """Another writer (the executor a takeover raced with) records the step first."""
    with psycopg.connect(DSN["dsn"], autocommit=True) as conn:
        conn.execute("SELECT workflow.step_put(%s, %s, %s, %s::jsonb)",
                     (pw.workflow_id(), step, name, f'"{value}"'))


@pytest.fixture
def db(pgwf_dsn):
    DSN["dsn"] = pgwf_dsn
    with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE taken_ledger (note text)")
    with bound(app, pgwf_dsn):
        yield pgwf_dsn


@app.step(name="raced")
def raced() -> str:
    record_behind_its_back(1, "raced", "theirs")
    return "mine"


@app.transaction(name="raced_tx")
def raced_tx(conn) -> str:
    conn.execute("INSERT INTO taken_ledger VALUES ('mine')")
    record_behind_its_back(2, "raced_tx", "theirs-tx")
    return "mine-tx"


@app.workflow()
def races() -> list:
    return [raced(), raced_tx()]


def test_a_step_already_recorded_is_replayed_not_a_stop(db):
    # 23505 on step_put: the checkpoint recorded first wins and the run goes on (it used to
    # raise NotOwnerError and leave the run PENDING under a live lease).
    assert app.start(races, workflow_id="race-1").result(timeout=30) == ["theirs", "theirs-tx"]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM taken_ledger").fetchone()[0] == 0, \
            "the losing transaction rolled back"


@app.workflow()
def other_name() -> str:
    return "other"


@app.workflow()
def starts_a_duplicate() -> str:
    try:
        app.start(other_name, workflow_id="dup-target")
    except pw.DuplicateWorkflow:
        return "duplicate"
    return "started"


def test_a_duplicate_child_id_is_duplicate_workflow(db):
    app.start(races, workflow_id="dup-target").result(timeout=30)  # the id, with another name
    assert app.start(starts_a_duplicate).result(timeout=30) == "duplicate"
