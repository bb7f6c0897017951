"""Version routing, cron fires, replaying a failed run against new code, a worker started from
a background thread."""
import threading

import psycopg
import pytest

import pg_workflow as pw
from pg_workflow.testing import bound, replay

v1 = pw.App(app_version="v1")
v2 = pw.App(app_version="v2")


@v1.workflow(name="versioned")
def versioned_v1() -> str:
    return "v1"


@v2.workflow(name="versioned")
def versioned_v2() -> str:
    return "v2"


def test_a_worker_claims_only_runs_of_its_own_version(pgwf_dsn):
    with bound(v1, pgwf_dsn), bound(v2, pgwf_dsn):
        old = v1.enqueue("default", versioned_v1)
        new = v2.enqueue("default", versioned_v2)
        worker = v2.worker(queues=["default"]).start()
        try:
            assert new.result(timeout=60) == "v2"
            assert old.status() == "ENQUEUED", "a v2 worker leaves v1's run alone"
        finally:
            worker.stop()
        started = []
        t = threading.Thread(target=lambda: started.append(v1.worker(queues=["default"]).start()))
        t.start()
        t.join()  # a worker started from a background thread (no signal handlers there)
        try:
            assert old.result(timeout=60) == "v1"
        finally:
            started[0].stop()


app = pw.App()
fixed = {"bug": True}


@app.step()
def compute(x: int) -> int:
    if fixed["bug"]:
        raise ZeroDivisionError("the bug")
    return x * 2


@app.step()
def expensive(x: int) -> int:
    return x + 1


@app.workflow()
def pipeline(x: int) -> int:
    return compute(expensive(x))


def test_replay_a_failed_run_against_new_code(pgwf_dsn):
    with bound(app, pgwf_dsn):
        failed = app.start(pipeline, 20)
        with pytest.raises(pw.WorkflowFailed) as e:
            failed.result(timeout=60)
        assert e.value.type_name == "ZeroDivisionError"
        fixed["bug"] = False  # the new code
        assert replay(app, failed.workflow_id) == 42
        with psycopg.connect(pgwf_dsn) as conn:
            forked = conn.execute("SELECT status, forked_from FROM workflow.runs WHERE forked_from = %s",
                                  (failed.workflow_id,)).fetchone()
        assert forked == ("SUCCESS", failed.workflow_id)


@app.workflow()
def nightly(kind: str) -> str:
    return f"report {kind} by {pw.workflow_id()}"


def test_a_schedule_fires_into_the_worker(pgwf_dsn):
    with bound(app, pgwf_dsn):
        app.schedule("nightly", "0 3 * * *", nightly, "daily")
        with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
            fired = conn.execute("SELECT workflow.trigger_schedule('nightly')").fetchone()[0]
        worker = app.worker(queues=["default"]).start()
        try:
            assert app.handle(fired).result(timeout=60) == f"report daily by {fired}"
        finally:
            worker.stop()


def test_an_unregistered_workflow_fails_its_run_instead_of_hanging(pgwf_dsn):
    with bound(app, pgwf_dsn):
        with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
            wid = conn.execute("SELECT workflow.enqueue('default', 'not_in_this_worker')").fetchone()[0]
        worker = app.worker(queues=["default"]).start()
        try:
            with pytest.raises(pw.WorkflowFailed) as e:
                app.handle(wid).result(timeout=60)
            assert e.value.type_name == "WorkflowNotRegistered"
        finally:
            worker.stop()
