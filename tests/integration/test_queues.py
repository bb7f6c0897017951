"""Queues under real concurrency: several processes dequeue at once, and the recorded start
and finish times prove that no limit was ever exceeded."""
import threading

import psycopg
import pytest

from conftest import Background, connect, kill_backend, new_id, run_processes


def max_overlap(intervals):
    """The most intervals (start, end) open at one instant; an end at t closes before a start at t."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def make_queue(db, **limits):
    name = new_id("q")
    cols = ", ".join(f"{k} => %s" for k in limits)
    db.execute(f"SELECT workflow.create_queue(%s{', ' if cols else ''}{cols})", (name, *limits.values()))
    return name


def drain(queue, executor, stop_when_empty=True):
    """One executor process: dequeue one run at a time (waiting up to 1 s), finish it."""
    with connect() as c:
        c.execute("SELECT workflow.register_executor(%s)", (executor,))
        while True:
            row = c.execute("SELECT workflow_id FROM workflow.dequeue(%s, %s, 1, '1 s')",
                            (queue, executor)).fetchone()
            if row:
                c.execute("SELECT workflow.finish(%s)", (row[0],))
            elif stop_when_empty and c.execute(
                    "SELECT count(*) FROM workflow.runs WHERE queue = %s AND status IN ('ENQUEUED', 'DELAYED')",
                    (queue,)).fetchone()[0] == 0:
                return


def intervals(db, queue):
    return db.execute("SELECT started_at, finished_at FROM workflow.runs WHERE queue = %s",
                      (queue,)).fetchall()


def test_eight_dequeuers_never_exceed_global_concurrency():
    with connect() as db:
        queue = make_queue(db, concurrency=3)
        db.execute("SELECT count(workflow.enqueue(%s, 'job')) FROM generate_series(1, 2000)", (queue,))
    run_processes(drain, [(queue, f"drain-{i}") for i in range(8)])
    with connect() as db:
        spans = intervals(db, queue)
        done = db.execute("SELECT count(*) FROM workflow.runs WHERE queue = %s AND status = 'SUCCESS'",
                          (queue,)).fetchone()[0]
    assert done == 2000
    assert max_overlap(spans) <= 3
    assert max_overlap(spans) == 3, "the limit was reached, not just respected"


def test_per_executor_limit_holds_across_sessions_of_one_executor():
    with connect() as db:
        queue = make_queue(db, worker_concurrency=2)
        db.execute("SELECT count(workflow.enqueue(%s, 'job')) FROM generate_series(1, 10)", (queue,))
        db.execute("SELECT workflow.register_executor('solo')")
    claimed = []

    def session():
        with connect() as c:
            claimed.extend(r[0] for r in c.execute(
                "SELECT workflow_id FROM workflow.dequeue(%s, 'solo', 10)", (queue,)).fetchall())

    threads = [threading.Thread(target=session) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(claimed) == 2
    with connect() as db:
        db.execute("SELECT workflow.register_executor('other')")
        assert len(db.execute("SELECT * FROM workflow.dequeue(%s, 'other', 10)", (queue,)).fetchall()) == 2


def test_partition_limit_under_concurrent_dequeuers():
    with connect() as db:
        queue = make_queue(db, partition_concurrency=2)
        db.execute("SELECT count(workflow.enqueue(%s, 'job', partition_key => 'p' || (i %% 4)))"
                   " FROM generate_series(1, 200) i", (queue,))
    run_processes(drain, [(queue, f"part-{i}") for i in range(4)])
    with connect() as db:
        for part in ("p0", "p1", "p2", "p3"):
            spans = db.execute("SELECT started_at, finished_at FROM workflow.runs "
                               "WHERE queue = %s AND partition_key = %s", (queue, part)).fetchall()
            assert len(spans) == 50
            assert max_overlap(spans) <= 2


def test_rate_limit_over_a_two_second_window():
    with connect() as db:
        queue = make_queue(db, rate_limit=4, rate_period="2 s")
        db.execute("SELECT count(workflow.enqueue(%s, 'job')) FROM generate_series(1, 12)", (queue,))
    run_processes(drain, [(queue, f"rate-{i}") for i in range(3)])
    with connect() as db:
        starts = [r[0] for r in db.execute(
            "SELECT started_at FROM workflow.runs WHERE queue = %s ORDER BY started_at", (queue,)).fetchall()]
    assert len(starts) == 12
    for i, s in enumerate(starts):
        in_window = [t for t in starts[i:] if (t - s).total_seconds() < 2.0]
        assert len(in_window) <= 4, f"{len(in_window)} starts within 2 s of {s}"


def test_a_dequeuer_killed_between_claim_and_commit_loses_nothing():
    with connect() as db:
        queue = make_queue(db)
        wid = db.execute("SELECT workflow.enqueue(%s, 'precious', '{\"n\": 1}')", (queue,)).fetchone()[0]
        db.execute("SELECT workflow.register_executor('doomed')")
        db.execute("SELECT workflow.register_executor('heir')")
    doomed = connect(autocommit=False)
    assert doomed.execute("SELECT workflow_id FROM workflow.dequeue(%s, 'doomed')", (queue,)).fetchone()[0] == wid
    kill_backend(doomed.info.backend_pid)
    with connect() as db:
        assert db.execute("SELECT status, attempt FROM workflow.runs WHERE workflow_id = %s",
                          (wid,)).fetchone() == ("ENQUEUED", 0)
        row = db.execute("SELECT workflow_id, input, attempt FROM workflow.dequeue(%s, 'heir')", (queue,)).fetchone()
    assert row == (wid, {"n": 1}, 1)


def test_a_waiting_dequeuer_is_woken_by_an_enqueue():
    with connect() as db:
        queue = make_queue(db)
        db.execute("SELECT workflow.register_executor('sleeper')")
        waiter = Background("SELECT workflow_id FROM workflow.dequeue(%s, 'sleeper', 1, '120 s')", (queue,))
        waiter.wait_until_blocked()
        wid = db.execute("SELECT workflow.enqueue(%s, 'wake')", (queue,)).fetchone()[0]
    assert waiter.join() == [(wid,)]


def test_a_waiting_dequeuer_honours_statement_timeout():
    with connect() as db:
        queue = make_queue(db)
        db.execute("SELECT workflow.register_executor('impatient')")
        db.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            db.execute("SELECT * FROM workflow.dequeue(%s, 'impatient', 1, '60 s')", (queue,))


def test_a_finish_frees_a_slot_for_a_waiting_dequeuer():
    with connect() as db:
        queue = make_queue(db, concurrency=1)
        db.execute("SELECT count(workflow.enqueue(%s, 'job')) FROM generate_series(1, 2)", (queue,))
        db.execute("SELECT workflow.register_executor('first')")
        db.execute("SELECT workflow.register_executor('second')")
        first = db.execute("SELECT workflow_id FROM workflow.dequeue(%s, 'first')", (queue,)).fetchone()[0]
        waiter = Background("SELECT workflow_id FROM workflow.dequeue(%s, 'second', 1, '120 s')", (queue,))
        waiter.wait_until_blocked()
        db.execute("SELECT workflow.finish(%s)", (first,))
    rows = waiter.join()
    assert len(rows) == 1 and rows[0][0] != first
