"""workflow.stats: counters count committed events only, per database; gauges read the tables;
stats_reset() zeroes one database's counters. Each test uses databases of its own, so other
tests' activity never shows in its counters."""
import psycopg
import pytest

from conftest import DATA_DIR, PORT, connect, recreate_database, show, wait_until


def connect_as(user, dbname="stats_a"):
    return psycopg.connect(host=DATA_DIR, port=PORT, user=user, dbname=dbname, autocommit=True)


def counters(c):
    return {name: int(value) for name, value in
            c.execute("SELECT name, value FROM workflow.stats WHERE kind = 'counter'").fetchall()}


def gauges(c):
    return {(name, queue): value for name, queue, value in
            c.execute("SELECT name, queue, value FROM workflow.stats WHERE kind = 'gauge'").fetchall()}


@pytest.fixture
def stats_db():
    recreate_database("stats_a", "default")
    with connect("stats_a") as c:
        yield c


def test_only_committed_events_count(stats_db):
    c = stats_db
    c.execute("SELECT workflow.register_executor('e1')")
    c.execute("SELECT * FROM workflow.start('w', NULL, 'r1', 'e1')")
    c.execute("SELECT workflow.step_put('r1', 1, 'one', '1')")
    with pytest.raises(psycopg.errors.UniqueViolation):  # a second writer of step 1: rolled back
        c.execute("SELECT workflow.step_put('r1', 1, 'one', '1')")
    c.execute("BEGIN")
    c.execute("SELECT workflow.step_put('r1', 2, 'two', '2')")
    c.execute("ROLLBACK")
    # A released savepoint's step counts; a later sibling that rolls back does not take it along.
    c.execute("BEGIN")
    c.execute("SAVEPOINT a")
    c.execute("SELECT workflow.step_put('r1', 2, 'two', '2')")
    c.execute("RELEASE a")
    c.execute("SAVEPOINT b")
    c.execute("SELECT workflow.step_put('r1', 3, 'three', '3')")
    c.execute("ROLLBACK TO b")
    c.execute("COMMIT")
    # A prepared transaction may commit elsewhere, later: it is never counted.
    c.execute("BEGIN")
    c.execute("SELECT workflow.step_put('r1', 3, 'three', '3')")
    c.execute("PREPARE TRANSACTION 'stats-p1'")
    c.execute("ROLLBACK PREPARED 'stats-p1'")
    got = counters(c)
    assert got["runs_started"] == 1
    assert got["steps_recorded"] == 2


def test_each_event_is_counted(stats_db, short_lease):
    c = stats_db
    c.execute("SELECT workflow.register_executor('e1')")
    c.execute("SELECT workflow.create_queue('q')")
    c.execute("SELECT * FROM workflow.start('w', NULL, 'ok', 'e1')")
    c.execute("SELECT workflow.finish('ok', '1', 'e1')")
    c.execute("SELECT * FROM workflow.start('w', NULL, 'bad', 'e1')")
    c.execute("""SELECT workflow.fail('bad', '{"message": "no"}', 'e1')""")
    c.execute("SELECT workflow.enqueue('q', 'w', NULL, 'queued')")
    c.execute("SELECT workflow.enqueue('q', 'w', NULL, 'queued')")  # idempotent: not a new run
    c.execute("SELECT workflow.cancel('queued')")
    c.execute("SELECT workflow.enqueue('q', 'w', NULL, 'taken')")
    assert c.execute("SELECT count(*) FROM workflow.dequeue('q', 'e1', 5)").fetchone()[0] == 1
    c.execute("SELECT workflow.send('taken', '1', NULL, 'k1')")
    c.execute("SELECT workflow.send('taken', '1', NULL, 'k1')")  # delivered once already
    c.execute("SELECT workflow.fork('ok', 1, 'forked', 'q')")
    c.execute("SELECT workflow.schedule('s', '0 0 1 1 *', 'w', NULL, 'q')")
    c.execute("SELECT workflow.trigger_schedule('s')")
    # e1 stops heartbeating: tick() recovers its PENDING run 'taken'.
    wait_until(lambda: c.execute("SELECT (workflow.tick()->>'recovered')::int").fetchone()[0] == 1,
               what="the expired lease's run to be recovered")
    got = counters(c)
    assert got == {
        "runs_started": 6,  # ok, bad, queued, taken, forked, the trigger's run
        "runs_dequeued": 1,
        "runs_succeeded": 1,
        "runs_failed": 1,
        "runs_cancelled": 1,
        "runs_recovered": 1,
        "runs_dead_lettered": 0,
        "steps_recorded": 0,
        "messages_sent": 1,
        "schedule_fires": 1,
    }
    g = gauges(c)
    assert g[("runs_enqueued", "q")] == 3  # taken (recovered), forked, the trigger's run
    assert g[("runs_pending", "q")] == 0
    assert g[("runs_enqueued", "default")] == 0
    assert g[("oldest_enqueued_age_seconds", "q")] > 0
    assert g[("executors_registered", None)] == 1
    assert g[("executors_live", None)] == 0  # its 1 s lease has expired


def test_a_run_recovered_too_often_is_counted_dead_lettered(stats_db):
    c = stats_db
    with connect("postgres") as admin:
        admin.execute("ALTER SYSTEM SET workflow.max_recovery_attempts = 1")
        admin.execute("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: show("workflow.max_recovery_attempts") == "1", what="the reload")
        c.execute("SELECT workflow.register_executor('e1')")
        c.execute("SELECT * FROM workflow.start('w', NULL, 'r', 'e1')")
        c.execute("SELECT * FROM workflow.start('w', NULL, 'r', 'e1')")  # a replay: recovery 1
        c.execute("SELECT * FROM workflow.start('w', NULL, 'r', 'e1')")  # recovery 2 > 1
        assert c.execute("SELECT status FROM workflow.runs WHERE workflow_id = 'r'").fetchone()[0] \
            == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
        got = counters(c)
        assert (got["runs_recovered"], got["runs_dead_lettered"]) == (1, 1)
    finally:
        with connect("postgres") as admin:
            admin.execute("ALTER SYSTEM RESET workflow.max_recovery_attempts")
            admin.execute("SELECT pg_reload_conf()")


def test_counters_are_per_database_and_reset_per_database(stats_db):
    recreate_database("stats_b", "default")
    with connect("stats_b") as b:
        b.execute("SELECT * FROM workflow.start('w', NULL, 'x')")
        b.execute("SELECT workflow.step_put('x', 1, 'one', '1')")
        assert counters(b)["steps_recorded"] == 1
        assert counters(stats_db)["steps_recorded"] == 0
        stats_db.execute("SELECT * FROM workflow.start('w', NULL, 'y')")
        stats_db.execute("SELECT workflow.step_put('y', 1, 'one', '1')")
        before = stats_db.execute("SELECT max(stats_reset) FROM workflow.stats").fetchone()[0]
        reset_at = stats_db.execute("SELECT workflow.stats_reset()").fetchone()[0]
        assert reset_at > before
        assert set(counters(stats_db).values()) == {0}
        assert stats_db.execute("SELECT DISTINCT stats_reset FROM workflow.stats WHERE kind = 'counter'").fetchall() \
            == [(reset_at,)]
        assert counters(b)["steps_recorded"] == 1  # the other database keeps its counts


def test_readers_read_and_admins_reset(stats_db):
    c = stats_db
    c.execute("DROP ROLE IF EXISTS stats_reader_login")
    c.execute("DROP ROLE IF EXISTS stats_admin_login")
    c.execute("CREATE ROLE stats_reader_login LOGIN IN ROLE workflow_reader")
    c.execute("CREATE ROLE stats_admin_login LOGIN IN ROLE workflow_admin")
    try:
        with connect_as("stats_reader_login") as r:
            assert len(counters(r)) == 10
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                r.execute("SELECT workflow.stats_reset()")
        with connect_as("stats_admin_login") as a:
            assert a.execute("SELECT workflow.stats_reset()").fetchone()[0] is not None
    finally:
        c.execute("DROP ROLE stats_reader_login")
        c.execute("DROP ROLE stats_admin_login")
