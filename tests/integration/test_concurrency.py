"""Several sessions and processes at once: first write wins, leases, wake-ups, cancellation."""
import threading
import time

import psycopg
import pytest

from conftest import Background, connect, new_id, run_processes, wait_until


def test_first_write_wins_and_the_second_writer_fails():
    wid = new_id("race")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('race', NULL, %s)", (wid,))
    first = connect(autocommit=False)
    first.execute("SELECT workflow.step_put(%s, 1, 'step', '\"first\"')", (wid,))
    # The second writer blocks on the first one's uncommitted checkpoint.
    second = Background("SELECT workflow.step_put(%s, 1, 'step', '\"second\"')", (wid,))
    second.wait_until_blocked("Lock")
    first.commit()
    second.join()
    assert isinstance(second.error, psycopg.errors.UniqueViolation)
    with connect() as db:
        assert db.execute("SELECT output FROM workflow.steps WHERE workflow_id = %s",
                          (wid,)).fetchone()[0] == "first"


def test_wait_is_woken_by_a_finish_in_another_session():
    wid = new_id("waited")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('waited', NULL, %s)", (wid,))
        waiter = Background("SELECT status, output FROM workflow.wait(%s, '120 s')", (wid,))
        waiter.wait_until_blocked()
        db.execute("SELECT workflow.finish(%s, '{\"n\": 42}')", (wid,))
    assert waiter.join() == [("SUCCESS", {"n": 42})]


def test_wait_times_out_with_the_current_status():
    wid = new_id("slow")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('slow', NULL, %s)", (wid,))
        assert db.execute("SELECT status FROM workflow.wait(%s, '200 ms')", (wid,)).fetchone() == ("PENDING",)


def test_a_waiting_session_can_be_cancelled():
    wid = new_id("stuck")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('stuck', NULL, %s)", (wid,))
        waiter = Background("SELECT * FROM workflow.wait(%s)", (wid,)).wait_until_blocked()
        db.execute("SELECT pg_cancel_backend(%s)", (waiter.pid,))
    waiter.join()
    assert isinstance(waiter.error, psycopg.errors.QueryCanceled)


def test_statement_timeout_ends_a_wait():
    wid = new_id("timeout")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('timeout', NULL, %s)", (wid,))
        db.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            db.execute("SELECT * FROM workflow.wait(%s)", (wid,))


def test_cancel_stops_a_running_executor_at_its_next_step():
    wid = new_id("cancelled")
    steps_done = []
    stopped = {}

    def executor():
        with connect() as c:
            c.execute("SELECT * FROM workflow.start('looping', NULL, %s)", (wid,))
            try:
                for step in range(1, 10_000):
                    c.execute("SELECT workflow.step_put(%s, %s, 'tick', 'null')", (wid, step))
                    steps_done.append(step)
                    time.sleep(0.01)
            except psycopg.Error as e:
                stopped["sqlstate"] = e.sqlstate

    t = threading.Thread(target=executor)
    t.start()
    wait_until(lambda: len(steps_done) >= 3, what="a few steps")
    with connect() as db:
        assert db.execute("SELECT workflow.cancel(%s)", (wid,)).fetchone()[0] is True
    t.join(60)
    assert stopped["sqlstate"] == "WF003"
    with connect() as db:
        status, last_step = db.execute("SELECT status, last_step FROM workflow.runs WHERE workflow_id = %s",
                                       (wid,)).fetchone()
    assert status == "CANCELLED"
    assert last_step == len(steps_done)


def test_a_live_lease_is_respected_and_an_expired_one_is_taken_over(short_lease):
    wid = new_id("lease")
    with connect() as db:
        db.execute("SELECT workflow.register_executor('exec-old')")
        db.execute("SELECT workflow.register_executor('exec-new')")
        assert db.execute("SELECT claimed FROM workflow.start('leased', NULL, %s, 'exec-old')",
                          (wid,)).fetchone()[0] is True
        db.execute("SELECT workflow.step_put(%s, 1, 'one', '1')", (wid,))
        # The owner is alive: another executor may not take the run.
        assert db.execute("SELECT claimed FROM workflow.start('leased', NULL, %s, 'exec-new')",
                          (wid,)).fetchone()[0] is False
        # exec-old stops heartbeating; once its lease is over, exec-new claims the run.
        claimed = wait_until(lambda: db.execute(
            "SELECT claimed, last_step FROM workflow.start('leased', NULL, %s, 'exec-new')",
            (wid,)).fetchone() if db.execute(
            "SELECT NOT alive FROM workflow.executors WHERE executor_id = 'exec-old'").fetchone()[0] else None,
            what="exec-old's lease to expire")
        assert claimed == (True, 1)
        db.execute("SELECT workflow.step_put(%s, 2, 'two', '\"new\"')", (wid,))
        # The stale executor wakes up and tries the same step: the first write won.
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute("SELECT workflow.step_put(%s, 2, 'two', '\"old\"')", (wid,))
        row = db.execute("SELECT executor_id, recovery_attempts FROM workflow.runs WHERE workflow_id = %s",
                         (wid,)).fetchone()
        assert row == ("exec-new", 1)


def run_workflows(worker, count):
    """One executor process: registers, heartbeats, runs `count` 3-step workflows."""
    with connect() as c:
        executor = f"proc-{worker}"
        c.execute("SELECT workflow.register_executor(%s)", (executor,))
        for i in range(count):
            wid = f"multi-{worker}-{i}"
            status, last, claimed = c.execute(
                "SELECT status, last_step, claimed FROM workflow.start('multi', %s, %s, %s)",
                (psycopg.types.json.Jsonb({"i": i}), wid, executor)).fetchone()
            assert claimed
            for step in range(last + 1, 4):
                with c.transaction():
                    c.execute("INSERT INTO app_ledger VALUES (%s, %s, 'multi')", (wid, step))
                    c.execute("SELECT workflow.step_put(%s, %s, %s, %s)",
                              (wid, step, f"step{step}", psycopg.types.json.Jsonb({"step": step})))
            c.execute("SELECT workflow.finish(%s, %s)", (wid, psycopg.types.json.Jsonb({"done": i})))
            if i % 10 == 0:
                c.execute("SELECT workflow.heartbeat(%s)", (executor,))


def test_several_executor_processes_run_concurrently():
    run_processes(run_workflows, [(w, 50) for w in range(6)])
    with connect() as db:
        runs, steps, ledger = db.execute(
            "SELECT count(*), sum(last_step), "
            "(SELECT count(*) FROM app_ledger WHERE note = 'multi') "
            "FROM workflow.runs WHERE name = 'multi' AND status = 'SUCCESS'").fetchone()
    assert (runs, steps, ledger) == (300, 900, 900)
