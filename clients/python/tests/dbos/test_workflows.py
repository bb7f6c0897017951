"""DBOS's "Workflows" and "Steps" tutorials, with the import changed."""
import time
import uuid

import pytest

from pg_workflow.dbos import (DBOS, DBOSMaxStepRetriesExceeded, SetWorkflowID, SetWorkflowTimeout,
                              WorkflowHandle, WorkflowStatusString)


def test_workflow_with_steps_runs_and_checkpoints(dbos, sql):
    calls = []

    @DBOS.step()
    def step_one(x):
        calls.append("one")
        return x + 1

    @DBOS.step()
    def step_two(x):
        calls.append("two")
        return x * 2

    @DBOS.workflow()
    def workflow(x):
        return step_two(step_one(x))

    wid = str(uuid.uuid4())
    with SetWorkflowID(wid):
        assert workflow(3) == 8
    # The same id again is the same run: its result, and no step runs twice.
    with SetWorkflowID(wid):
        assert workflow(3) == 8
    assert calls == ["one", "two"]
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["output"]) for s in steps] == [(1, 4), (2, 8)]
    assert sql("SELECT status FROM workflow.runs WHERE workflow_id = %s", wid) == [("SUCCESS",)]


def test_start_workflow_handle_and_retrieve(dbos):
    @DBOS.workflow()
    def greet(name, punctuation="!"):
        return f"hello {name}{punctuation} from {DBOS.workflow_id}"

    with SetWorkflowID("greet-1-" + uuid.uuid4().hex):
        handle: WorkflowHandle = DBOS.start_workflow(greet, "ada", punctuation="?")
    assert handle.workflow_id == handle.get_workflow_id()
    assert handle.get_result() == f"hello ada? from {handle.workflow_id}"
    status = handle.get_status()
    assert status.status == WorkflowStatusString.SUCCESS.value
    assert status.name.endswith("greet") and status.output == handle.get_result()
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == handle.get_result()


def test_step_id_and_workflow_id_inside(dbos):
    @DBOS.step()
    def where():
        return [DBOS.workflow_id, DBOS.step_id]

    @DBOS.workflow()
    def wf():
        return [where(), where()]

    with SetWorkflowID(wid := uuid.uuid4().hex):
        assert wf() == [[wid, 1], [wid, 2]]
    assert DBOS.workflow_id is None


def test_step_retries_then_gives_up(dbos):
    attempts = {"flaky": 0, "broken": 0}

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01, backoff_rate=1)
    def flaky():
        attempts["flaky"] += 1
        if attempts["flaky"] < 3:
            raise ConnectionError("try again")
        return "ok"

    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0.01)
    def broken():
        attempts["broken"] += 1
        raise ConnectionError("down")

    @DBOS.workflow()
    def wf():
        first = flaky()
        try:
            broken()
        except DBOSMaxStepRetriesExceeded as e:
            return [first, e.max_retries]

    assert wf() == ["ok", 2]
    assert attempts == {"flaky": 3, "broken": 2}


def test_workflow_error_is_raised_by_get_result(dbos):
    @DBOS.workflow()
    def fails():
        raise ValueError("bad input")

    handle = DBOS.start_workflow(fails)
    with pytest.raises(ValueError, match="bad input"):
        handle.get_result()
    assert handle.get_status().status == "ERROR"


def test_timeout_cancels(dbos, sql):
    @DBOS.workflow()
    def slow():
        DBOS.sleep(30)
        return "never"

    with SetWorkflowTimeout(0.2):
        handle = DBOS.start_workflow(slow)
    from pg_workflow.dbos import DBOSAwaitedWorkflowCancelledError
    # The server's tick() cancels runs past their deadline; the test database has no
    # scheduler worker (workflow.database names another), so tick here until it has.
    deadline = time.monotonic() + 60
    while handle.get_status().status != "CANCELLED" and time.monotonic() < deadline:
        sql("SELECT workflow.tick()")
        time.sleep(0.1)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()


def test_decorated_after_launch_and_relaunch(config):
    DBOS.destroy(destroy_registry=True)
    DBOS(config=config)

    @DBOS.workflow()
    def before():
        return "before"

    DBOS.launch()

    @DBOS.workflow()
    def after():
        return "after"

    assert (before(), after()) == ("before", "after")
    DBOS.destroy()
    # The registry outlives destroy (unless destroy_registry=True): launch again, same functions.
    DBOS(config=config)
    DBOS.launch()
    try:
        assert DBOS.start_workflow(before).get_result() == "before"
        assert after() == "after"
    finally:
        DBOS.destroy(destroy_registry=True)


def test_logger(dbos, caplog):
    with caplog.at_level("INFO", logger="dbos"):
        DBOS.logger.info("from the app")
    assert "from the app" in caplog.text
