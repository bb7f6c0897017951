"""Races and limits: a step already recorded by another writer, payloads over the server's
limit, pool sizing, durable calls inside steps, async parents of children."""
import asyncio

import psycopg
import pytest

import pg_workflow as pw
from pg_workflow.testing import bound
from sdk_support import wait_until

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


BIG = 1_100_000  # over workflow.max_payload_size (1 MB)


@app.workflow()
def returns_too_much() -> str:
    return "x" * BIG


@app.workflow()
def raises_too_much() -> None:
    raise ValueError("y" * BIG)


def test_an_output_or_error_over_the_payload_limit_fails_the_run(db):
    # finish (or fail) refused with 54000 used to escape, leaving the run PENDING forever.
    with pytest.raises(pw.WorkflowFailed) as e:
        app.start(returns_too_much).result(timeout=30)
    assert e.value.type_name == "ProgramLimitExceeded"
    h = app.start(raises_too_much)
    with pytest.raises(pw.WorkflowFailed) as e:
        h.result(timeout=30)
    assert e.value.type_name == "ValueError" and len(e.value.message) < 10_000
    assert h.status() == "ERROR"


@app.workflow()
def plain() -> str:
    return "done"


def test_a_run_whose_connection_cannot_be_had_is_retried(db, monkeypatch):
    from pg_workflow import execution
    real, calls = execution.execute, []

    def flaky_execute(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise psycopg.OperationalError("connection refused (simulated)")
        return real(*args, **kwargs)
    monkeypatch.setattr(execution, "execute", flaky_execute)
    assert app.start(plain).result(timeout=30) == "done"
    assert len(calls) == 2


def test_a_worker_larger_than_its_pool_is_refused():
    small = pw.App("postgresql://unused", pool_size=8)
    with pytest.raises(ValueError, match="pool_size"):
        small.worker(concurrency=8)
    with pytest.raises(ValueError):
        small.worker(concurrency=0)
    assert small.worker(concurrency=4).concurrency == 4  # nothing connects before start()


@app.step()
def naps() -> str:
    pw.sleep(0.01)  # a plain sleep inside a step: no step number
    return "napped"


@app.step()
def publishes() -> None:
    pw.set_event("inside", 1)


@app.workflow()
def sleeps_in_a_step() -> list:
    return [naps(), step_two()]


@app.step()
def step_two() -> int:
    return pw.step_id()


@app.workflow()
def publishes_in_a_step() -> None:
    publishes()


@app.step()
async def naps_async() -> str:
    await pw.sleep_async(0.01)
    return "napped"


@app.step()
async def publishes_async() -> None:
    await pw.set_event_async("inside", 1)


@app.workflow()
async def async_in_steps() -> list:
    out = [await naps_async(), pw.step_id()]
    try:
        await publishes_async()
    except RuntimeError as e:
        out.append("refused" if "inside a step" in str(e) else str(e))
    return out


def test_durable_calls_inside_a_step_take_no_step_number(db):
    assert app.start(sleeps_in_a_step, workflow_id="nap").result(timeout=30) == ["napped", 2]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT step, step_name FROM workflow.steps WHERE workflow_id = 'nap' "
                            "ORDER BY step").fetchall() == [(1, "naps"), (2, "step_two")]
    with pytest.raises(pw.WorkflowFailed) as e:
        app.start(publishes_in_a_step).result(timeout=30)
    assert e.value.type_name == "RuntimeError" and "inside a step" in e.value.message
    assert app.start(async_in_steps).result(timeout=30) == ["napped", 1, "refused"]


@app.workflow()
def sync_child(x: int) -> int:
    return x * 10


@app.workflow()
async def async_child(x: int) -> int:
    return x + 1


@app.workflow()
async def async_parent() -> list:
    started = app.start(sync_child, 1)  # a sync call from the async body
    queued = app.enqueue("default", sync_child, 2)
    awaited = await async_child(3)
    return [await asyncio.to_thread(started.result, 30), queued.workflow_id, awaited]


def test_an_async_workflow_starts_and_enqueues_children(db):
    out = app.start(async_parent, workflow_id="ap").result(timeout=30)
    assert out == [10, "ap-2", 4]
    with psycopg.connect(db) as conn:
        kids = conn.execute("SELECT workflow_id FROM workflow.runs WHERE parent_id = 'ap' ORDER BY 1").fetchall()
    assert kids == [("ap-1",), ("ap-2",), ("ap-3",)]


bodies = []


@app.workflow()
def counted() -> str:
    bodies.append(1)
    import time
    time.sleep(0.3)
    return "once"


def test_app_run_of_one_id_from_two_threads_runs_the_body_once(db):
    import threading
    bodies.clear()
    barrier, results = threading.Barrier(2), []

    def go():
        barrier.wait()
        results.append(app.run(counted, workflow_id="twice"))
    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["once", "once"] and len(bodies) == 1


tx_tries = []


@app.transaction()
async def conflicts_once(conn) -> int:
    tx_tries.append(1)
    await conn.execute("INSERT INTO taken_ledger VALUES ('async')")
    if len(tx_tries) == 1:
        raise psycopg.errors.SerializationFailure("could not serialize access (simulated)")
    return len(tx_tries)


@app.workflow()
async def retries_its_transaction() -> int:
    return await conflicts_once()


def test_an_async_transaction_retries_a_serialization_failure(db):
    tx_tries.clear()
    assert app.start(retries_its_transaction).result(timeout=30) == 2
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM taken_ledger").fetchone()[0] == 1


@app.step()
async def slow_a() -> str:
    await asyncio.sleep(0.05)
    return "a"


@app.step()
async def slow_b() -> str:
    await asyncio.sleep(0.05)
    return "b"


@app.workflow()
async def gathers_steps() -> list:
    a, b = await asyncio.gather(slow_a(), slow_b(), return_exceptions=True)
    refused = isinstance(b, RuntimeError) and "one after another" in str(b)
    return [a, "refused" if refused else repr(b), await slow_b()]


@app.step()
async def gathers_inside() -> list:
    return list(await asyncio.gather(slow_a(), slow_b()))  # nested: plain calls


@app.workflow()
async def gathers_in_a_step() -> list:
    return [await gathers_inside(), pw.step_id()]


def test_concurrent_async_steps_of_one_run_are_refused(db):
    # Two steps of one run in flight at once (asyncio.gather) shared the step counter and the
    # in-step flag: the second ran unrecorded, and numbering depended on timing on replay.
    assert app.start(gathers_steps, workflow_id="gather").result(timeout=30) == ["a", "refused", "b"]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT step, step_name FROM workflow.steps WHERE workflow_id = 'gather' "
                            "ORDER BY step").fetchall() == [(1, "slow_a"), (2, "slow_b")]
    # Inside a step, concurrent inner steps are plain calls, as before.
    assert app.start(gathers_in_a_step).result(timeout=30) == [["a", "b"], 1]


@app.workflow()
def waits_for_go() -> str:
    return pw.recv("go", timeout=120)


def test_worker_stop_honours_its_timeout(db):
    # stop(timeout=...) used to wait for the runs in flight however long they took (here a
    # recv of up to 120s). Now it returns after the timeout; the run goes on meanwhile.
    import threading
    h = app.enqueue("default", waits_for_go)
    worker = app.worker(queues=["default"], concurrency=2).start()
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 0.2}, daemon=True)
    try:
        wait_until(lambda: h.status() == "PENDING", what="the run to be claimed")
        stopper.start()
        stopper.join(60)
        assert not stopper.is_alive(), "stop(timeout=0.2) returned"
        assert h.status() == "PENDING", "the run was still in flight"
    finally:
        app.send(h.workflow_id, "go", topic="go")
    assert h.result(timeout=60) == "go"


KEEPALIVES = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")


def test_every_connection_asks_for_tcp_keepalives(db, monkeypatch):
    # Without keepalives a peer that vanishes without a reset (failover, partition) blocked a
    # call for the kernel's ~15 minutes. libpq ignores them on unix sockets (as here).
    from pg_workflow import aio
    from pg_workflow.executor import Heartbeat
    with app.connection() as conn:
        params = conn.info.get_parameters()
    assert params["keepalives"] == "1" and all(k in params for k in KEEPALIVES), params
    conn = asyncio.run(aio._connect(app))
    try:
        assert all(k in conn.info.get_parameters() for k in KEEPALIVES)
    finally:
        asyncio.run(conn.close())
    seen = []
    real = psycopg.connect

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(psycopg, "connect", spy)
    worker = app.worker(queues=["default"], concurrency=2, poll=0.1).start()  # its dequeue connection
    beat = Heartbeat(app, 0.15)  # its own connection, at the first beat
    try:
        wait_until(lambda: len(seen) >= 2 and beat._conn is not None, what="both connections")
    finally:
        beat.stop()
        worker.stop()
    assert len(seen) >= 2 and all(kw.get("keepalives") == 1 and all(k in kw for k in KEEPALIVES)
                                  for kw in seen), seen


def test_keepalive_settings_can_be_overridden():
    tuned = pw.App("host=db.example keepalives_idle=5", keepalives_idle=99, keepalives_count=7,
                   tcp_user_timeout=0)
    kwargs = tuned.connect_kwargs()
    assert "keepalives_idle" not in kwargs, "the DSN's own value wins"
    assert kwargs["keepalives_count"] == 7 and kwargs["tcp_user_timeout"] == 0
    assert "keepalives" not in pw.App("host=db", keepalives=False).connect_kwargs()
