"""The SDK's API end to end: steps, transactions, children, messages, events, sleep, errors."""
import psycopg
import pytest

import pg_workflow as pw
from pg_workflow.testing import bound

app = pw.App()  # bound to each test's scratch database by the fixture
attempts = {}


@pytest.fixture
def db(pgwf_dsn):
    attempts.clear()
    with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (workflow_id text, note text)")
    with bound(app, pgwf_dsn):
        yield pgwf_dsn


@app.step(retries=3, backoff=0.01)
def flaky(key: str) -> int:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise ConnectionError("try again")
    return attempts[key]


@app.transaction()
def write_ledger(conn, note: str) -> dict:
    conn.execute("INSERT INTO ledger VALUES (%s, %s)", (pw.workflow_id(), note))
    return {"note": note, "step": pw.step_id()}


@app.workflow()
def child(x: int) -> int:
    return x * 10


@app.workflow()
def parent(x: int) -> dict:
    tries = flaky(pw.workflow_id())
    row = write_ledger("reserved")
    pw.set_event("stage", "children")
    kids = [app.start(child, x + i).result(timeout=60) for i in range(2)]
    pw.sleep(0.05)
    return {"tries": tries, "row": row, "kids": kids, "inline": child(1)}


def test_a_workflow_runs_its_steps_once_and_records_them(db):
    h = app.start(parent, 4, workflow_id="p-1")
    assert h.result(timeout=60) == {"tries": 3, "row": {"note": "reserved", "step": 2},
                                    "kids": [40, 50], "inline": 10}
    assert h.status() == "SUCCESS" and app.get_event("p-1", "stage", timeout=5) == "children"
    # The same id again: idempotent, nothing runs twice.
    assert app.start(parent, 4, workflow_id="p-1").result(timeout=60)["kids"] == [40, 50]
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone()[0] == 1
        kids = conn.execute("SELECT workflow_id, parent_id FROM workflow.runs WHERE parent_id = 'p-1' "
                            "ORDER BY 1").fetchall()
    assert kids == [("p-1-4", "p-1"), ("p-1-5", "p-1"), ("p-1-7", "p-1")]
    assert [r.workflow_id for r in app.list(status="SUCCESS", name="parent")] == ["p-1"]


def test_calling_a_workflow_runs_it_and_a_step_outside_one_is_a_plain_call(db):
    assert child(3) == 30
    assert write_ledger("plain")["note"] == "plain"
    with pytest.raises(ConnectionError):  # a plain call: no checkpoint, no retries
        flaky("plain-call")
    assert pw.workflow_id() is None and pw.step_id() is None


@app.workflow()
def fails(message: str) -> None:
    raise KeyError(message)


def test_a_failure_is_recorded_and_re_raised_with_its_type(db):
    h = app.start(fails, "no such sku")
    with pytest.raises(pw.WorkflowFailed) as e:
        h.result(timeout=60)
    assert e.value.type_name == "KeyError" and "no such sku" in e.value.message
    assert "Traceback" in e.value.traceback
    error = app.list(status="ERROR")[0].error
    assert set(error) == {"type", "message", "traceback"} and error["type"] == "KeyError"
    with pytest.raises(KeyError):  # a direct call raises the body's own exception
        fails("direct")


@app.workflow()
def conversation() -> dict:
    first = pw.recv("greeting", timeout=60)
    pw.set_event("heard", first)
    late = pw.recv("never", timeout=0.1)
    return {"first": first, "late": late}


def test_messages_and_events(db):
    h = app.start(conversation, workflow_id="talk")
    app.send("talk", {"hello": 1}, topic="greeting")
    assert app.get_event("talk", "heard", timeout=60) == {"hello": 1}
    assert h.result(timeout=60) == {"first": {"hello": 1}, "late": None}


@app.step()
def returns_a_set() -> set:
    return {1, 2}


@app.workflow()
def bad_value() -> None:
    returns_a_set()


def test_bad_use_is_a_clear_exception(db):
    def not_decorated():
        pass
    with pytest.raises(pw.WorkflowNotRegistered):
        app.start(not_decorated)
    with pytest.raises(pw.SerializationError):
        app.start(child, object())
    with pytest.raises(pw.WorkflowFailed) as e:
        app.start(bad_value).result(timeout=60)
    assert e.value.type_name == "SerializationError"
    with pytest.raises(RuntimeError):
        pw.recv("outside")


def test_a_database_without_the_extension(db):
    from pg_workflow.testing import scratch_database
    with scratch_database(extension=False) as bare, bound(app, bare):
        with pytest.raises(pw.ExtensionMissing):
            app.start(child, 1)
        with pytest.raises(pw.ExtensionMissing):
            app.send("x", 1)


@app.step()
def step_a() -> str:
    return "a"


@app.step()
def step_b() -> str:
    return "b"


def test_a_renamed_step_on_replay_is_nondeterminism(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT workflow.register_executor(%s)", (app.executor_id + "-old",))
        conn.execute("SELECT * FROM workflow.start('uses_b', '[]', 'nd', %s)", (app.executor_id + "-old",))
        conn.execute("SELECT workflow.step_put('nd', 1, 'step_a', '\"a\"')")
        conn.execute("DELETE FROM workflow.executor WHERE executor_id = %s", (app.executor_id + "-old",))

    @app.workflow(name="uses_b")
    def uses_b() -> str:
        return step_b()
    with pytest.raises(pw.NondeterminismError):
        app.run(uses_b, workflow_id="nd")


@app.workflow()
def waits_forever() -> None:
    pw.recv("nothing", timeout=3600)
    step_a()


def test_cancel_resume_fork(db):
    h = app.start(waits_forever, workflow_id="c-1")
    assert app.handle("c-1").status() == "PENDING"
    assert h.cancel()
    with pytest.raises(pw.WorkflowCancelled):
        h.result(timeout=60)
    assert app.resume("c-1").status() == "ENQUEUED"
    app.cancel("c-1")
    ok = app.start(parent, 1, workflow_id="f-1")
    ok.result(timeout=60)
    forked = app.fork("f-1", from_step=3)
    worker = app.worker(queues=["default"], concurrency=2).start()
    try:
        assert forked.result(timeout=60) == ok.result()
    finally:
        worker.stop()


@app.workflow(name="echo_input")
def echo_input(word: str) -> str:
    return word


def test_a_claimed_run_replays_with_the_input_it_was_first_started_with(db):
    """A run whose executor died before its body began is claimed again by a start() that
    passes other arguments: the first start's input wins, in start() and run() alike."""
    with psycopg.connect(db, autocommit=True) as conn:
        for run in ("first-1", "first-2"):
            conn.execute("SELECT workflow.register_executor(%s)", (app.executor_id + "-old",))
            conn.execute("SELECT * FROM workflow.start('echo_input', '[\"first\"]', %s, %s)",
                         (run, app.executor_id + "-old"))
        conn.execute("DELETE FROM workflow.executor WHERE executor_id = %s", (app.executor_id + "-old",))
    assert app.start(echo_input, "second", workflow_id="first-1").result(timeout=60) == "first"
    assert app.run(echo_input, "second", workflow_id="first-2") == "first"
