"""Exactly-once transactional steps: BEGIN; <app SQL>; step_put; COMMIT is all or nothing,
whether the client's backend is killed or the whole server crashes."""
import pytest

from conftest import connect, crash_server, kill_backend, new_id


def start(db, wid):
    return db.execute("SELECT status, last_step, claimed FROM workflow.start('payment', NULL, %s)",
                      (wid,)).fetchone()


def run_step(wid, commit):
    """An executor's step 1: the app SQL and the checkpoint in one transaction."""
    conn = connect(autocommit=False)
    conn.execute("INSERT INTO app_ledger VALUES (%s, 1, 'charged')", (wid,))
    conn.execute("SELECT workflow.step_put(%s, 1, 'charge', '{\"charge\": \"ch_1\"}')", (wid,))
    if commit:
        conn.commit()
    return conn


def crash_during_step(crash, commit):
    """Starts a run, runs its step 1 (committed or not), then crashes as `crash` says."""
    wid = new_id("committed" if commit else "uncommitted")
    with connect() as db:
        start(db, wid)
    conn = run_step(wid, commit)
    if crash == "kill_backend":
        kill_backend(conn.info.backend_pid)
    else:
        crash_server()
    return wid


def ledger_rows(db, wid):
    return db.execute("SELECT count(*) FROM app_ledger WHERE workflow_id = %s", (wid,)).fetchone()[0]


def checkpoints(db, wid):
    return db.execute("SELECT count(*) FROM workflow.steps WHERE workflow_id = %s", (wid,)).fetchone()[0]


def replay(wid):
    """What a restarted executor does: start, then skip recorded steps, run the rest."""
    with connect() as db:
        status, last_step, claimed = start(db, wid)
        assert (status, claimed) == ("PENDING", True)
        found, output = db.execute("SELECT found, output FROM workflow.step_get(%s, 1, 'charge')",
                                   (wid,)).fetchone()
        if not found:
            with db.transaction():
                db.execute("INSERT INTO app_ledger VALUES (%s, 1, 'charged')", (wid,))
                db.execute("SELECT workflow.step_put(%s, 1, 'charge', '{\"charge\": \"ch_2\"}')", (wid,))
        db.execute("SELECT workflow.finish(%s, '\"paid\"')", (wid,))
        return last_step, found


@pytest.mark.parametrize("crash", ["kill_backend", "crash_server"])
def test_crash_before_commit_keeps_neither(crash):
    wid = crash_during_step(crash, commit=False)
    with connect() as db:
        assert ledger_rows(db, wid) == 0
        assert checkpoints(db, wid) == 0
    last_step, found = replay(wid)
    assert (last_step, found) == (0, False)
    with connect() as db:
        assert ledger_rows(db, wid) == 1, "the step ran exactly once, on replay"
        assert db.execute("SELECT status FROM workflow.runs WHERE workflow_id = %s",
                          (wid,)).fetchone()[0] == "SUCCESS"


@pytest.mark.parametrize("crash", ["kill_backend", "crash_server"])
def test_crash_after_commit_keeps_both(crash):
    wid = crash_during_step(crash, commit=True)
    with connect() as db:
        assert ledger_rows(db, wid) == 1
        assert checkpoints(db, wid) == 1
    last_step, found = replay(wid)
    assert (last_step, found) == (1, True), "the replay returned the checkpoint"
    with connect() as db:
        assert ledger_rows(db, wid) == 1, "the step did not run again"
        out = db.execute("SELECT output FROM workflow.steps WHERE workflow_id = %s AND step = 1",
                         (wid,)).fetchone()[0]
        assert out == {"charge": "ch_1"}


def test_finished_runs_survive_a_server_crash():
    ids = [new_id("durable") for _ in range(20)]
    with connect() as db:
        for wid in ids:
            start(db, wid)
            db.execute("SELECT workflow.step_put(%s, 1, 'only', '1')", (wid,))
            db.execute("SELECT workflow.finish(%s, '\"ok\"')", (wid,))
    crash_server()
    with connect() as db:
        done = db.execute("SELECT count(*) FROM workflow.runs WHERE workflow_id = ANY(%s) "
                          "AND status = 'SUCCESS' AND last_step = 1", (ids,)).fetchone()[0]
        assert done == len(ids)
