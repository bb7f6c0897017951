"""Schedule options with the real scheduler worker (it serves the `postgres` database): a
schedule fires every second, and an executor here holds each run for 3 s before it finishes
it. With overlap 'skip' there are never two active runs of the schedule; with 'buffer_one'
the fire that came during a run starts, with its own fire time, once that run has ended."""
import datetime
import re
import threading
import time

import pytest

from conftest import connect, one, recreate_database, wait_until

WORKER_DB = "postgres"  # the scratch servers' workflow.database
HOLD = 3.0              # seconds an executor keeps each run PENDING
ACTIVE = ("ENQUEUED", "DELAYED", "PENDING")


@pytest.fixture(scope="module")
def worker_db():
    """The extension in the worker's database, for this module only (test_planted makes its own)."""
    with connect(WORKER_DB) as db:
        created = one(db, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_workflow'") == 0
        if created:
            db.execute("CREATE EXTENSION pg_workflow")
    yield
    if created:
        with connect(WORKER_DB) as db:
            db.execute("DROP EXTENSION pg_workflow")


class Executor:
    """Dequeues from one queue and finishes each run HOLD seconds after claiming it."""

    def __init__(self, queue):
        self.queue, self.executor_id = queue, f"{queue}-executor"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self):
        with connect(WORKER_DB) as c:
            c.execute("SELECT workflow.register_executor(%s)", (self.executor_id,))
            while not self.stop.is_set():
                claimed = c.execute("SELECT workflow_id FROM workflow.dequeue(%s, %s, 1, '200 ms')",
                                    (self.queue, self.executor_id)).fetchall()
                for (workflow_id,) in claimed:
                    self.stop.wait(HOLD)
                    c.execute("SELECT workflow.finish(%s, '\"done\"', %s)", (workflow_id, self.executor_id))

    def join(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def fire_time(workflow_id):
    """The fire time in a fire id, cron:<name>:<YYYY-MM-DDTHH:MM:SSZ>."""
    at = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", workflow_id).group()
    return datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def run_with_options(name, overlap, seconds):
    """Schedules `name` every second with `overlap`, runs an executor, and samples the active
    runs of the schedule every 50 ms for `seconds`. Returns the most seen at once and the runs."""
    queue = f"{name}_q"
    with connect(WORKER_DB) as db:
        db.execute("SELECT workflow.create_queue(%s)", (queue,))
        db.execute("SELECT workflow.schedule(%s, '* * * * * *', 'tick_tock', NULL, %s, overlap => %s)",
                   (name, queue, overlap))
        executor = Executor(queue)
        most = 0
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                most = max(most, one(db, "SELECT count(*) FROM workflow.runs WHERE workflow_id LIKE %s "
                                          "AND status = ANY(%s)", (f"cron:{name}:%", list(ACTIVE))))
                time.sleep(0.05)
        finally:
            db.execute("SELECT workflow.unschedule(%s)", (name,))
            executor.join()
        runs = db.execute("SELECT workflow_id, status, created_at, started_at, finished_at FROM workflow.runs "
                          "WHERE workflow_id LIKE %s ORDER BY created_at, workflow_id", (f"cron:{name}:%",)).fetchall()
        for workflow_id, status, *_ in runs:
            if status in ACTIVE:
                db.execute("SELECT workflow.cancel(%s)", (workflow_id,))
        db.execute("SELECT workflow.delete(workflow_id) FROM workflow.runs WHERE queue = %s", (queue,))
        db.execute("SELECT workflow.drop_queue(%s)", (queue,))
    return most, runs


def test_overlap_skip_never_has_two_active_runs(worker_db):
    most, runs = run_with_options("opt_skip_it", "skip", 10)
    assert most == 1, f"{most} active runs of one schedule at once"
    assert len(runs) >= 2, "the schedule fired once only"
    # Each run was fired after the one before it had ended (the fires in between were skipped).
    for (_, _, _, _, ended), (next_id, *_) in zip(runs, runs[1:]):
        assert ended is not None and fire_time(next_id) >= ended.replace(microsecond=0)


def test_overlap_buffer_one_starts_the_buffered_fire_after_the_run_ends(worker_db):
    most, runs = run_with_options("opt_buffer_it", "buffer_one", 10)
    assert most == 1, f"{most} active runs of one schedule at once"
    assert len(runs) >= 2, "the buffered fire never started"
    for (_, _, _, _, ended), (next_id, _, created, _, _) in zip(runs, runs[1:]):
        # Enqueued once the run before had ended, and promptly (the worker passes every second) ...
        # (The pass's transaction may begin a moment before the finish commits, hence the 0.1 s.)
        assert ended is not None
        assert ended - datetime.timedelta(seconds=0.1) <= created <= ended + datetime.timedelta(seconds=2.5)
        # ... with the fire time of a fire that came while that run was still going: buffered.
        assert fire_time(next_id) < ended


def test_skipped_fires_are_counted(worker_db):
    with connect(WORKER_DB) as db:
        db.execute("SELECT workflow.create_queue('opt_count_q')")
        db.execute("SELECT workflow.schedule('opt_count_it', '* * * * * *', 'tick_tock', NULL, 'opt_count_q', "
                   "overlap => 'skip')")
        try:
            # Nobody dequeues: the first run stays ENQUEUED, and every later fire is skipped.
            wait_until(lambda: one(db, "SELECT skipped_fires FROM workflow.schedules WHERE name = 'opt_count_it'") >= 2,
                       timeout=30, what="two skipped fires")
            assert one(db, "SELECT count(*) FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_count_it:%'") == 1
            assert one(db, "SELECT last_skipped_at > last_fired_at FROM workflow.schedules "
                           "WHERE name = 'opt_count_it'") is True
        finally:
            db.execute("SELECT workflow.unschedule('opt_count_it')")
            db.execute("SELECT workflow.cancel(workflow_id) FROM workflow.runs WHERE queue = 'opt_count_q'")
            db.execute("SELECT workflow.delete(workflow_id) FROM workflow.runs WHERE queue = 'opt_count_q'")
            db.execute("SELECT workflow.drop_queue('opt_count_q')")


def test_a_0_2_0_database_fires_its_schedules_until_it_is_updated():
    """The new library on the 0.2.0 schema (no option columns) and the 6-argument declaration."""
    name = "options_020"
    recreate_database(name, "0.2.0")
    try:
        with connect(name) as db:
            db.execute("SELECT workflow.schedule('old', '* * * * *', 'w')")
            db.execute("UPDATE workflow.schedule SET next_fire_at = now() - interval '1 minute'")
            assert one(db, "SELECT workflow.tick() ->> 'fired'") == "1"
            assert one(db, "SELECT count(*) FROM workflow.runs WHERE workflow_id LIKE 'cron:old:%'") == 1
            db.execute("ALTER EXTENSION pg_workflow UPDATE")
            db.execute("SELECT workflow.schedule('old', '* * * * *', 'w', overlap => 'skip')")
            db.execute("UPDATE workflow.schedule SET next_fire_at = now() - interval '1 minute'")
            assert one(db, "SELECT workflow.tick() ->> 'fired'") == "0"  # the first run is still ENQUEUED
            assert one(db, "SELECT skipped_fires FROM workflow.schedules WHERE name = 'old'") == 1
    finally:
        with connect("postgres") as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
