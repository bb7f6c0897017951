"""Without shared_preload_libraries there is no shared memory: waits fall back to a bounded
poll of the process latch, and everything else works the same."""
import os

import psycopg
import pytest

from conftest import DATA_DIR, PORT, Background, own_server

DIR = os.path.join(os.path.dirname(DATA_DIR), "unpreloaded")


@pytest.fixture(scope="module")
def plain_server():
    port = int(os.environ.get("PGWF_UNPRELOADED_PORT", PORT + 10))

    def connect():
        return psycopg.connect(host=DIR, port=port, user="postgres", dbname="postgres", autocommit=True)

    with own_server(DIR, port, PGWF_PRELOAD="0"):
        with connect() as c:
            c.execute("CREATE EXTENSION pg_workflow")
            assert c.execute("SHOW shared_preload_libraries").fetchone()[0] == ""
        yield connect


def test_the_protocol_works(plain_server):
    with plain_server() as c:
        assert c.execute("SELECT claimed FROM workflow.start('plain', NULL, 'p-1')").fetchone()[0] is True
        c.execute("SELECT workflow.step_put('p-1', 1, 'one', '1')")
        assert c.execute("SELECT found FROM workflow.step_get('p-1', 1, 'one')").fetchone()[0] is True
        c.execute("SELECT workflow.cancel('p-1')")
        with pytest.raises(psycopg.Error) as raised:
            c.execute("SELECT workflow.step_put('p-1', 2, 'two', '2')")
        assert raised.value.sqlstate == "WF003"


def test_a_waiting_dequeue_still_sees_a_later_enqueue(plain_server):
    with plain_server() as c:
        c.execute("SELECT workflow.register_executor('plain-exec')")
        waiter = Background("SELECT workflow_id FROM workflow.dequeue('default', 'plain-exec', 1, '60 s')",
                            connect_fn=plain_server)
        waiter.wait_until_blocked(connect_fn=plain_server)
        c.execute("SELECT workflow.enqueue('default', 'late', NULL, 'p-2')")
    assert waiter.join() == [("p-2",)]


def test_wait_still_sees_a_later_finish(plain_server):
    with plain_server() as c:
        c.execute("SELECT * FROM workflow.start('plain', NULL, 'p-3')")
        waiter = Background("SELECT status FROM workflow.wait('p-3', '60 s')", connect_fn=plain_server)
        waiter.wait_until_blocked(connect_fn=plain_server)
        c.execute("SELECT workflow.finish('p-3')")
    assert waiter.join() == [("SUCCESS",)]


def test_stats_has_gauges_but_no_counters(plain_server):
    with plain_server() as c:
        c.execute("SELECT * FROM workflow.start('plain', NULL, 'p-stats')")
        c.execute("SELECT workflow.step_put('p-stats', 1, 'one', '1')")
        rows = c.execute("SELECT name, value, stats_reset FROM workflow.stats WHERE kind = 'counter'").fetchall()
        assert len(rows) == 10 and all(value is None and since is None for _, value, since in rows)
        assert c.execute("SELECT value FROM workflow.stats WHERE name = 'runs_pending' AND queue IS NULL"
                         ).fetchone()[0] >= 1
        assert c.execute("SELECT workflow.stats_reset()").fetchone()[0] is None
