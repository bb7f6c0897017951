"""One run across three languages: a run enqueued from SQL is executed by a Node worker
(clients/node); inside it, it starts a child that a Python worker runs (clients/python); a Rust
program (clients/rust) waits for its event and sends it the message it waits for. The whole
run reads in workflow.runs and workflow.steps as one story."""
import os
import signal
import subprocess
import sys

import psycopg
import pytest

from conftest import DATA_DIR, PORT, ROOT, one, recreate_database, wait_until

DB = "three_languages"
NODE_DIST = os.path.join(ROOT, "clients", "node", "dist")
PY_SRC = os.path.join(ROOT, "clients", "python", "src")
RUST_DIR = os.path.join(ROOT, "clients", "rust")

NODE_WORKER = r"""
const { App } = require(process.argv[1]);
const app = new App({ connectionString: process.argv[2], executorId: "node-1" });
const ship = app.workflow("ship", async () => { throw new Error("ship runs in Python"); });
const look = app.step("look", async (orderId) => `node saw ${orderId}`);
app.workflow("order", async (orderId) => {
  const seen = await look(orderId);
  const child = await app.enqueue("python", ship, [orderId]);   // a child: <id>-2, parent_id set
  await app.setEvent("stage", "waiting for approval");
  const approval = await app.recv("approval", { timeout: 120 });
  const shipped = await child.result({ timeout: 120 });
  return { seen, approval, shipped };
});
const worker = app.worker({ queues: ["node"], concurrency: 2 });
worker.run().then(() => app.close()).then(() => process.exit(0));
"""

PYTHON_WORKER = r"""
import sys
import pg_workflow as pw
app = pw.App(sys.argv[1], executor_id="python-1")

@app.workflow(name="ship")
def ship(order_id):
    return {"shipped": order_id, "by": "python"}

app.worker(queues=["python"], concurrency=2).run()
"""


def dsn_url():
    return f"postgresql://postgres@/{DB}?host={DATA_DIR}&port={PORT}"


@pytest.fixture
def workers():
    if not os.path.isdir(NODE_DIST):
        pytest.fail("clients/node/dist is missing: scripts/install-deps.sh builds it")
    subprocess.run(["cargo", "build", "--locked", "-q", "--bin", "pgwf-interop"], cwd=RUST_DIR, check=True)
    recreate_database(DB, "default")
    with psycopg.connect(host=DATA_DIR, port=PORT, user="postgres", dbname=DB, autocommit=True) as c:
        c.execute("SELECT workflow.create_queue('node')")
        c.execute("SELECT workflow.create_queue('python')")
    node = subprocess.Popen(["node", "-e", NODE_WORKER, NODE_DIST, dsn_url()])
    python = subprocess.Popen([sys.executable, "-c", PYTHON_WORKER, f"host={DATA_DIR} port={PORT} user=postgres dbname={DB}"],
                              env=dict(os.environ, PYTHONPATH=PY_SRC))
    yield
    for p in (node, python):
        p.send_signal(signal.SIGTERM)
    for p in (node, python):
        p.wait(timeout=60)


def test_one_run_crosses_sql_node_python_and_rust(workers):
    with psycopg.connect(host=DATA_DIR, port=PORT, user="postgres", dbname=DB, autocommit=True) as db:
        db.execute("""SELECT workflow.enqueue('node', 'order', '["o-7"]', 'story-1')""")
        rust = subprocess.run([os.path.join(RUST_DIR, "target", "debug", "pgwf-interop"), dsn_url(), "story-1"],
                              capture_output=True, text=True, timeout=180)
        assert rust.returncode == 0, rust.stderr
        assert rust.stdout.strip() == '"waiting for approval"'
        wait_until(lambda: one(db, "SELECT status FROM workflow.runs WHERE workflow_id = 'story-1'") == "SUCCESS",
                   timeout=120, what="the run to succeed")
        assert one(db, "SELECT output FROM workflow.runs WHERE workflow_id = 'story-1'") == {
            "seen": "node saw o-7",
            "approval": {"approved_by": "rust", "after": "waiting for approval"},
            "shipped": {"shipped": "o-7", "by": "python"},
        }
        runs = db.execute("""SELECT workflow_id, name, status, executor_id, parent_id FROM workflow.runs
                              ORDER BY workflow_id""").fetchall()
        assert runs == [("story-1", "order", "SUCCESS", "node-1", None),
                        ("story-1-2", "ship", "SUCCESS", "python-1", "story-1")]
        steps = [s for (s,) in db.execute("SELECT step_name FROM workflow.steps WHERE workflow_id = 'story-1' ORDER BY step")]
        assert steps[0] == "look" and len(steps) >= 3, steps
