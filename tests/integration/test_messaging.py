"""recv and get_event wait inside the server and are woken by the sender's commit; a replay
after a crash returns what the first run recorded."""
from conftest import Background, connect, crash_server, new_id


def test_a_waiting_recv_is_woken_by_a_send_from_another_session():
    wid = new_id("inbox")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('inbox', NULL, %s)", (wid,))
        waiter = Background("SELECT workflow.recv(%s, 1, 'orders', '120 s')", (wid,)).wait_until_blocked()
        db.execute("SELECT workflow.send(%s, '{\"order\": 7}', 'orders')", (wid,))
    assert waiter.join() == [({"order": 7},)]


def test_get_event_waits_for_the_event():
    wid = new_id("events")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('events', NULL, %s)", (wid,))
        waiter = Background("SELECT workflow.get_event(%s, 'status', '120 s')", (wid,)).wait_until_blocked()
        db.execute("SELECT workflow.set_event(%s, 1, 'status', '\"ready\"')", (wid,))
    assert waiter.join() == [("ready",)]


def test_recv_event_and_sleep_replay_the_same_after_a_server_crash():
    wid = new_id("replayed")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('replayed', NULL, %s)", (wid,))
        db.execute("SELECT workflow.send(%s, '\"first\"')", (wid,))
        first = db.execute("SELECT workflow.recv(%s, 1), workflow.sleep(%s, 3, '1 h')", (wid, wid)).fetchone()
        db.execute("SELECT workflow.set_event(%s, 2, 'k', '1')", (wid,))
    crash_server()
    with connect() as db:
        db.execute("SELECT workflow.send(%s, '\"second\"')", (wid,))
        again = db.execute("SELECT workflow.recv(%s, 1), workflow.sleep(%s, 3, '1 h')", (wid, wid)).fetchone()
        assert again == first == ("first", first[1])
        assert db.execute("SELECT workflow.get_event(%s, 'k', '0 s')", (wid,)).fetchone()[0] == 1
        assert db.execute("SELECT workflow.recv(%s, 4, NULL, '0 s')", (wid,)).fetchone()[0] == "second"
