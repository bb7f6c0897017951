"""pg_dump -Fc and pg_restore into a new database: every row of every table comes back, the
default queue keeps its custom limits, and the restored database works, sends included (message
ids must continue after the restored ones, not start again at 1)."""
import os
import subprocess

import pytest

from conftest import DATA_DIR, PORT, connect, counts, one, recreate_database

SOURCE, RESTORED = "dump_source", "dump_restored"
BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")  # the server's own version
def fill(db):
    """Runs in every state that survives a restore as it is, with everything they own."""
    db.execute("SELECT workflow.register_executor('ex-1', 'v1')")
    db.execute("SELECT workflow.create_queue('limited', concurrency => 2, worker_concurrency => 1, "
               "rate_limit => 10, rate_period => '1 min', partition_concurrency => 1)")
    db.execute("SELECT workflow.alter_queue('default', concurrency => 3)")
    # PENDING, with checkpoints, events and an inbox.
    db.execute("SELECT * FROM workflow.start('checkout', '{\"cart\": 1}', 'open', 'ex-1')")
    db.execute("SELECT workflow.step_put('open', 1, 'reserve', '{\"ok\": true}')")
    db.execute("SELECT workflow.set_event('open', 2, 'progress', '\"half\"')")
    db.execute("SELECT workflow.set_event('open', 3, 'progress', '\"most\"')")
    for n in range(1, 6):  # plain messages 1..5; recv below consumes 1
        db.execute("SELECT workflow.send('open', %s)", (f'{{"n": {n}}}',))
    for key in ["idem-a", "idem-b"]:
        db.execute("SELECT workflow.send('open', %s, 'keyed', %s)", (f'"{key}"', key))
    assert one(db, "SELECT workflow.recv('open', 4, NULL, '0 s', 'ex-1')") == {"n": 1}
    # SUCCESS, with a checkpoint and a consumed keyed message of its own.
    db.execute("SELECT * FROM workflow.start('checkout', '{\"cart\": 2}', 'done', 'ex-1')")
    db.execute("SELECT workflow.send('done', '\"hello\"', NULL, 'done-key')")
    assert one(db, "SELECT workflow.recv('done', 1, NULL, '0 s', 'ex-1')") == "hello"
    db.execute("SELECT workflow.finish('done', '\"paid\"', 'ex-1')")
    # ENQUEUED on both queues, and DELAYED.
    db.execute("SELECT workflow.enqueue('limited', 'job', '{\"n\": 1}', 'queued-limited', partition_key => 'p1')")
    db.execute("SELECT workflow.enqueue('default', 'job', '{\"n\": 2}', 'queued-default')")
    db.execute("SELECT workflow.enqueue('default', 'job', NULL, 'later', delay => '1 hour')")
    db.execute("SELECT workflow.schedule('nightly', '0 3 * * *', 'report', '{\"k\": 1}', 'limited')")
    db.execute("SELECT workflow.schedule('hourly', '@hourly', 'sweep')")
    db.execute("SELECT workflow.pause_schedule('hourly')")


def run(*cmd):
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd[0]} exited {done.returncode}:\n{done.stderr}"


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    recreate_database(SOURCE)
    with connect(SOURCE) as db:
        db.execute("CREATE EXTENSION pg_workflow")
        fill(db)
        before = counts(db)
        statuses = dict(db.execute("SELECT workflow_id, status FROM workflow.run").fetchall())
        max_id = one(db, "SELECT max(id) FROM workflow.message")
    assert sorted(set(statuses.values())) == ["DELAYED", "ENQUEUED", "PENDING", "SUCCESS"]
    dump = tmp_path_factory.mktemp("dump") / "source.dump"
    conn = ["-h", DATA_DIR, "-p", str(PORT), "-U", "postgres"]
    run(f"{BIN}/pg_dump", *conn, "-Fc", "-f", str(dump), SOURCE)
    recreate_database(RESTORED)
    run(f"{BIN}/pg_restore", *conn, "-d", RESTORED, str(dump))
    yield before, statuses, max_id
    with connect("postgres") as c:
        for name in [SOURCE, RESTORED]:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_every_row_comes_back(restored):
    before, statuses, _ = restored
    with connect(RESTORED) as db:
        assert counts(db) == before
        assert dict(db.execute("SELECT workflow_id, status FROM workflow.run").fetchall()) == statuses
        # CREATE EXTENSION made a default queue before the copy: its custom limit must win.
        assert db.execute("SELECT name, concurrency, worker_concurrency, rate_limit, rate_period::text, "
                          "partition_concurrency FROM workflow.queues ORDER BY name").fetchall() == [
            ("default", 3, None, None, None, None), ("limited", 2, 1, 10, "00:01:00", 1)]


def test_sends_after_the_restore_are_stored(restored):
    _, _, max_id = restored
    with connect(RESTORED) as db:
        # Enough sends to walk over every id the dump holds: each one must add a row.
        for n in range(max_id + 2):
            count = one(db, "SELECT count(*) FROM workflow.message")
            db.execute("SELECT workflow.send('open', %s)", (f'{{"after": {n}}}',))
            assert one(db, "SELECT count(*) FROM workflow.message") == count + 1, f"send {n} was dropped"
        # A key delivered before the dump still delivers once; a new key is a new message.
        count = one(db, "SELECT count(*) FROM workflow.message")
        db.execute("SELECT workflow.send('open', '\"again\"', 'keyed', 'idem-a')")
        assert one(db, "SELECT count(*) FROM workflow.message") == count
        db.execute("SELECT workflow.send('open', '\"new\"', 'keyed', 'idem-c')")
        assert one(db, "SELECT count(*) FROM workflow.message") == count + 1


def test_the_restored_runs_go_on(restored):
    with connect(RESTORED) as db:
        # recv takes the oldest unconsumed message, which the dump held: ids kept their order.
        assert one(db, "SELECT workflow.recv('open', 5, NULL, '0 s', 'ex-1')") == {"n": 2}
        assert one(db, "SELECT workflow.recv('open', 6, 'keyed', '0 s', 'ex-1')") == "idem-a"
        # A replay of a step recorded before the dump returns what it recorded.
        assert one(db, "SELECT workflow.recv('open', 4, NULL, '0 s', 'ex-1')") == {"n": 1}
        assert one(db, "SELECT workflow.get_event('open', 'progress', '0 s')") == "most"
        assert db.execute("SELECT found, output FROM workflow.step_get('open', 1, 'reserve')").fetchone() == (
            True, {"ok": True})
        db.execute("SELECT workflow.step_put('open', 7, 'ship', '{\"shipped\": true}', NULL, 'ex-1')")
        assert one(db, "SELECT last_step FROM workflow.runs WHERE workflow_id = 'open'") == 7
        assert one(db, "SELECT workflow.finish('open', '\"shipped\"', 'ex-1')") == "SUCCESS"
        # Dequeues claim the restored ENQUEUED runs; the DELAYED one is not due for an hour.
        assert db.execute("SELECT workflow_id FROM workflow.dequeue('limited', 'ex-1')").fetchall() == [
            ("queued-limited",)]
        assert db.execute("SELECT workflow_id FROM workflow.dequeue('default', 'ex-1', 5)").fetchall() == [
            ("queued-default",)]
        assert one(db, "SELECT status FROM workflow.runs WHERE workflow_id = 'later'") == "DELAYED"
        assert one(db, "SELECT count(*) FROM workflow.ready") == 0
        # The schedules are back as they were, the paused one paused, and they fire.
        assert db.execute("SELECT name, queue, paused FROM workflow.schedules ORDER BY name").fetchall() == [
            ("hourly", "default", True), ("nightly", "limited", False)]
        fired = one(db, "SELECT workflow.trigger_schedule('nightly')")
        assert one(db, "SELECT status FROM workflow.runs WHERE workflow_id = %s", (fired,)) == "ENQUEUED"

