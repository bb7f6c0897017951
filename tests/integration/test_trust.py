"""Defects of issue 8 that need two sessions: each test reproduces one against a real server.
The one-session cases are in tests/pg_regress/sql/trust.sql."""
import threading

import psycopg
import pytest

from conftest import Background, connect, new_id, wait_until


def raises(sqlstate):
    """pytest.raises for our own SQLSTATEs, which psycopg has no class for."""
    return pytest.raises(psycopg.Error, check=lambda e: e.sqlstate == sqlstate)


def start(c, wid, executor=None, name="trusty"):
    return c.execute("SELECT status, claimed FROM workflow.start(%s, NULL, %s, %s)",
                     (name, wid, executor)).fetchone()


def test_a_repeatable_read_step_after_a_cancel_fails_and_teaches_the_cache_nothing(db):
    wid = new_id("rr")
    start(db, wid)
    with connect() as s1:
        s1.execute("SELECT workflow.step_put(%s, 1, 'one', '1')", (wid,))  # s1 knows the run
        s1.autocommit = False
        s1.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        s1.execute("SELECT 1")                                   # the snapshot is taken here
        db.execute("SELECT workflow.cancel(%s)", (wid,))          # another session cancels
        with pytest.raises(psycopg.errors.SerializationFailure):
            s1.execute("SELECT workflow.step_put(%s, 2, 'two', '2')", (wid,))
        s1.rollback()
        s1.autocommit = True
        with raises("WF003"):   # it used to be accepted from now on
            s1.execute("SELECT workflow.step_put(%s, 3, 'three', '3')", (wid,))
    assert db.execute("SELECT max(step) FROM workflow.checkpoint WHERE workflow_id = %s",
                      (wid,)).fetchone()[0] == 1


def test_a_takeover_through_start_fences_the_stale_executor_that_had_cached_its_run(db):
    wid = new_id("takeover")
    for e in ("stale-exec", "fresh-exec"):
        db.execute("SELECT workflow.register_executor(%s)", (e,))
    with connect() as stale:
        start(stale, wid, "stale-exec")
        stale.execute("SELECT workflow.step_put(%s, 1, 'one', '1', NULL, 'stale-exec')", (wid,))
        db.execute("UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' "
                   "WHERE executor_id = 'stale-exec'")            # its lease expires
        assert start(db, wid, "fresh-exec") == ("PENDING", True)  # and another takes the run
        for call in ("SELECT workflow.step_put(%s, 2, 'two', '\"stale\"', NULL, 'stale-exec')",
                     "SELECT workflow.finish(%s, '\"stale\"', 'stale-exec')"):
            with raises("WF007"):
                stale.execute(call, (wid,))
    db.execute("SELECT workflow.finish(%s, '\"fresh\"', 'fresh-exec')", (wid,))
    assert db.execute("SELECT status, output, executor_id FROM workflow.runs WHERE workflow_id = %s",
                      (wid,)).fetchone() == ("SUCCESS", "fresh", "fresh-exec")


@pytest.fixture
def slow_ready_deletes(db):
    """A trigger that holds a dequeue between its two locks (ready row, then run row) for one
    second, in sessions that ask for it: the window in which cancel used to deadlock with it."""
    db.execute("""CREATE FUNCTION public.slow_ready_delete() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN
                    IF current_setting('test.slow_ready', true) = 'on' THEN PERFORM pg_sleep(1); END IF;
                    RETURN OLD;
                  END $$""")
    db.execute("CREATE TRIGGER slow_ready_delete BEFORE DELETE ON workflow.ready "
               "FOR EACH ROW EXECUTE FUNCTION public.slow_ready_delete()")
    yield
    db.execute("DROP TRIGGER slow_ready_delete ON workflow.ready")
    db.execute("DROP FUNCTION public.slow_ready_delete()")


def test_cancel_and_dequeue_take_their_locks_in_one_order(db, slow_ready_deletes):
    db.execute("SELECT workflow.register_executor('lock-order')")
    db.execute("SELECT workflow.create_queue('lock_order')")
    wid = db.execute("SELECT workflow.enqueue('lock_order', 'job')").fetchone()[0]

    def connect_slow():
        c = connect()
        c.execute("SET test.slow_ready = 'on'")
        return c
    dequeuer = Background("SELECT workflow_id FROM workflow.dequeue('lock_order', 'lock-order')",
                          connect_fn=connect_slow)
    wait_until(lambda: db.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                  (dequeuer.pid,)).fetchone()[0] == "PgSleep", what="the dequeue to hold its ready row")
    with connect() as c:
        assert c.execute("SELECT workflow.cancel(%s)", (wid,)).fetchone()[0] is True  # no 40P01
    assert dequeuer.join() == [(wid,)] and dequeuer.error is None
    assert db.execute("SELECT status FROM workflow.runs WHERE workflow_id = %s", (wid,)).fetchone()[0] == "CANCELLED"
    db.execute("SELECT workflow.drop_queue('lock_order')")


def test_gc_commits_after_each_batch(db):
    db.execute("CREATE TABLE gc_transactions (xid xid8)")
    db.execute("""CREATE FUNCTION public.note_gc_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.gc_transactions VALUES (pg_current_xact_id()); RETURN NULL; END $$""")
    db.execute("CREATE TRIGGER note_gc_transaction AFTER DELETE ON workflow.run "
               "FOR EACH STATEMENT EXECUTE FUNCTION public.note_gc_transaction()")
    try:
        db.execute("CALL workflow.gc('0 s')")  # earlier tests' runs go first
        db.execute("TRUNCATE gc_transactions")
        db.execute("""SELECT count(workflow.finish(s.workflow_id))
                        FROM generate_series(1, 2500) i, workflow.start('gc_me', to_jsonb(i)) s""")
        deleted = db.execute("CALL workflow.gc('0 s')").fetchone()[0]
        assert deleted >= 2500
        # 1000 runs a batch, each batch its own transaction (plus the empty last look).
        assert db.execute("SELECT count(DISTINCT xid) FROM gc_transactions").fetchone()[0] >= 3
        assert db.execute("SELECT count(*) FROM workflow.run WHERE name = 'gc_me'").fetchone()[0] == 0
    finally:
        db.execute("DROP TRIGGER note_gc_transaction ON workflow.run")
        db.execute("DROP FUNCTION public.note_gc_transaction()")
        db.execute("DROP TABLE gc_transactions")


def test_gc_killed_midway_keeps_its_committed_batches_and_finishes_when_called_again(db):
    from conftest import kill_backend
    db.execute("CALL workflow.gc('0 s')")
    db.execute("SELECT count(workflow.finish(s.workflow_id)) FROM generate_series(1, 3000) i, workflow.start('gc_kill', to_jsonb(i)) s")
    with connect() as victim:
        pid = victim.info.backend_pid
        killer = threading.Timer(0.05, kill_backend, args=(pid,))
        killer.start()
        try:
            victim.execute("CALL workflow.gc('0 s')")
        except psycopg.OperationalError:
            pass  # killed mid-way, or it finished first: both must leave a consistent table
        killer.join()
    with connect() as c:
        c.execute("CALL workflow.gc('0 s')")
        assert c.execute("SELECT count(*) FROM workflow.run WHERE name = 'gc_kill'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM workflow.checkpoint c LEFT JOIN workflow.run r USING (workflow_id) "
                         "WHERE r.workflow_id IS NULL").fetchone()[0] == 0
