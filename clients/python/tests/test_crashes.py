"""Crashes and recovery against the real server: SIGKILLed worker processes, an executor
that never comes back, fencing, and a server restart under a running worker. Deadlines are
generous; nothing asserts a latency."""
import os
import signal
import subprocess
import sys
import threading
import uuid

import psycopg
import pytest

import pg_workflow as pw
from pg_workflow.testing import bound
from sdk_support import HOST, PORT, ROOT, one, wait_until

import crash_app

HERE = os.path.dirname(os.path.abspath(__file__))


def ledger_table(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS sdk_ledger (workflow_id text, note text)")


def spawn_worker(dsn, executor_id, queue):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "crash_app.py"), dsn, executor_id, queue])


def reached(gate_dir):
    path = os.path.join(gate_dir, "reached")
    return open(path).read().split() if os.path.exists(path) else []


def test_a_sigkilled_worker_restarted_resumes_from_its_last_checkpoint(pgwf_dsn, tmp_path):
    ledger_table(pgwf_dsn)
    with bound(crash_app.app, pgwf_dsn):
        h = crash_app.app.enqueue("default", crash_app.order, "o-1", str(tmp_path))
        executor = f"crash-{uuid.uuid4().hex[:8]}"
        first = spawn_worker(pgwf_dsn, executor, "default")
        try:
            wait_until(lambda: reached(tmp_path), what="the run to reach its gate")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(60)
        (tmp_path / "open").touch()
        second = spawn_worker(pgwf_dsn, executor, "default")  # the same executor, restarted
        try:
            result = h.result(timeout=120)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, "SIGTERM drains the worker and it exits cleanly"
    assert result == {"r": {"reserved": "o-1"}, "shipped": "shipped o-1"}
    assert one(pgwf_dsn, "SELECT count(*) FROM sdk_ledger") == 1, "the transaction ran once"
    assert one(pgwf_dsn, "SELECT count(*) FROM workflow.runs WHERE parent_id = %s", (h.workflow_id,)) == 1
    assert len(reached(tmp_path)) == 2, "the step in flight ran again (at least once), after step 1 replayed"
    assert one(pgwf_dsn, "SELECT max(recovery_attempts) FROM workflow.runs WHERE workflow_id = %s",
               (h.workflow_id,)) >= 1


def test_runs_of_a_process_that_never_returns_are_recovered_and_finished_elsewhere(
        served_dsn, short_lease, tmp_path):
    ledger_table(served_dsn)
    queue = "sdk_recovery"
    with bound(crash_app.app, served_dsn, executor_id=f"survivor-{uuid.uuid4().hex[:8]}"):
        crash_app.app.create_queue(queue)
        h = crash_app.app.enqueue(queue, crash_app.order, "o-2", str(tmp_path))
        lost = spawn_worker(served_dsn, f"lost-{uuid.uuid4().hex[:8]}", queue)
        try:
            wait_until(lambda: reached(tmp_path), what="the run to reach its gate")
        finally:
            lost.send_signal(signal.SIGKILL)
            lost.wait(60)
        (tmp_path / "open").touch()
        # The scheduler worker sees the lease expire and puts the run back on its queue.
        worker = crash_app.app.worker(queues=[queue], concurrency=2).start()
        try:
            assert h.result(timeout=120)["shipped"] == "shipped o-2"
        finally:
            worker.stop()
    assert one(served_dsn, "SELECT count(*) FROM sdk_ledger WHERE workflow_id = %s", (h.workflow_id,)) == 1
    assert one(served_dsn, "SELECT executor_id FROM workflow.runs WHERE workflow_id = %s",
               (h.workflow_id,)).startswith("survivor-"), "another worker finished it"


fenced_app = pw.App()
release = threading.Event()
seen = []


@fenced_app.step()
def slow_step() -> str:
    release.wait(60)
    return "late"


@fenced_app.workflow()
def fenced() -> str:
    try:
        return slow_step()
    except pw.NotOwnerError as e:
        seen.append(e)
        raise


def test_a_stale_executor_is_fenced_with_not_owner_error(pgwf_dsn, short_lease):
    with bound(fenced_app, pgwf_dsn):
        h = fenced_app.start(fenced, workflow_id="fenced-1")
        wait_until(lambda: one(pgwf_dsn, "SELECT status FROM workflow.runs WHERE workflow_id = 'fenced-1'")
                   == "PENDING", what="the run to start")
        fenced_app._heartbeat.stop()  # this executor goes silent: its lease expires
        wait_until(lambda: one(pgwf_dsn, "SELECT NOT alive FROM workflow.executors WHERE executor_id = %s",
                               (fenced_app.executor_id,)), what="the lease to expire")
        with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
            conn.execute("SELECT workflow.register_executor('thief')")
            assert conn.execute("SELECT claimed FROM workflow.start('fenced', NULL, 'fenced-1', 'thief')"
                                ).fetchone()[0]
        release.set()
        wait_until(lambda: seen, what="the stale step to be fenced")
        assert isinstance(seen[0], pw.NotOwnerError)
        assert h.status() == "PENDING", "the stale executor neither finished nor failed the run"
        assert one(pgwf_dsn, "SELECT count(*) FROM workflow.steps WHERE workflow_id = 'fenced-1'") == 0


restart_app = pw.App()
gate_open = threading.Event()


@restart_app.step()
def before() -> str:
    return "before"


@restart_app.step()
def across_the_restart() -> str:
    gate_open.wait(120)
    return "across"


@restart_app.workflow()
def survives() -> list:
    return [before(), across_the_restart(), before()]


@pytest.mark.skipif(not os.path.isdir(os.path.join(HOST, "data")), reason="needs the server's data directory")
def test_a_server_restart_under_a_running_worker(pgwf_dsn):
    with bound(restart_app, pgwf_dsn):
        worker = restart_app.worker(queues=["default"], concurrency=2).start()
        try:
            h = restart_app.enqueue("default", survives)
            wait_until(lambda: one(pgwf_dsn, "SELECT last_step FROM workflow.runs WHERE workflow_id = %s",
                                   (h.workflow_id,)) == 1, what="step 1")
            script = os.path.join(ROOT, "scripts", "server.sh")
            subprocess.run([script, "stop", HOST, "immediate"], check=True)
            subprocess.run([script, "start", HOST, PORT], check=True)
            gate_open.set()  # the step in flight returns to a dead connection
            assert h.result(timeout=120) == ["before", "across", "before"]
            after = restart_app.enqueue("default", survives)  # the dequeuer reconnected too
            assert after.result(timeout=120) == ["before", "across", "before"]
        finally:
            worker.stop()


def test_a_second_sigterm_exits_a_draining_worker_at_once(pgwf_dsn, tmp_path):
    # The drain waits for the run blocked at its gate; a second SIGTERM used to be ignored.
    ledger_table(pgwf_dsn)
    with bound(crash_app.app, pgwf_dsn):
        h = crash_app.app.enqueue("default", crash_app.order, "o-3", str(tmp_path))
        worker = spawn_worker(pgwf_dsn, f"twice-{uuid.uuid4().hex[:8]}", "default")
        try:
            wait_until(lambda: reached(tmp_path), what="the run to reach its gate")
            worker.send_signal(signal.SIGTERM)
            # Signals sent back to back may reach Python as one: repeat until one is the second.
            def exited():
                worker.send_signal(signal.SIGTERM)
                try:
                    return worker.wait(0.5) is not None
                except subprocess.TimeoutExpired:
                    return False
            wait_until(exited, what="a second SIGTERM to exit the draining worker")
            assert worker.returncode == 128 + signal.SIGTERM
            assert h.status() == "PENDING", "the run in flight stays PENDING for recovery"
        finally:
            (tmp_path / "open").touch()
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(60)
