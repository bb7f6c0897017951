"""The README's Python client runs, and a second run replays instead of re-executing."""
import os
import subprocess
import sys

from conftest import DATA_DIR, DB, PORT, ROOT, connect, new_id

EXAMPLE = os.path.join(ROOT, "clients", "python", "example.py")


def run_example(wid):
    env = dict(os.environ, DATABASE_URL=f"host={DATA_DIR} port={PORT} user=postgres dbname={DB}")
    return subprocess.run([sys.executable, EXAMPLE, wid], env=env, check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


def test_the_example_runs_three_steps_and_replays():
    wid = new_id("example")
    first = run_example(wid)
    assert "TRK-3" in first
    assert run_example(wid) == first
    with connect() as db:
        status, last_step = db.execute("SELECT status, last_step FROM workflow.runs WHERE workflow_id = %s",
                                       (wid,)).fetchone()
    assert (status, last_step) == ("SUCCESS", 3)


def test_the_example_resumes_after_a_crash_mid_workflow():
    wid = new_id("example-crash")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('fulfil_order', '{\"qty\": 3}', %s)", (wid,))
        db.execute("SELECT workflow.step_put(%s, 1, 'reserve', '{\"reserved\": \"from before the crash\"}')", (wid,))
    out = run_example(wid)
    assert "from before the crash" in out, "step 1 came from its checkpoint"
    with connect() as db:
        assert db.execute("SELECT last_step FROM workflow.runs WHERE workflow_id = %s", (wid,)).fetchone()[0] == 3
