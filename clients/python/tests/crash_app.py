"""An application for the crash tests, run as its own process:
    python crash_app.py DSN EXECUTOR_ID QUEUE GATE_DIR
It serves QUEUE until killed. Its `order` workflow writes a ledger row in a transactional
step, starts a child, then waits in a step until GATE_DIR/open exists."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import pg_workflow as pw  # noqa: E402

app = pw.App(app_version="crash-v1")


@app.transaction()
def reserve(conn, order_id: str) -> dict:
    conn.execute("INSERT INTO sdk_ledger (workflow_id, note) VALUES (%s, %s)", (pw.workflow_id(), order_id))
    return {"reserved": order_id}


@app.workflow()
def ship(order_id: str) -> str:
    return f"shipped {order_id}"


@app.step()
def gate(gate_dir: str) -> int:
    """Blocks until the test opens the gate; counts its executions in a file."""
    with open(os.path.join(gate_dir, "reached"), "a") as f:
        f.write(f"{os.getpid()}\n")
    while not os.path.exists(os.path.join(gate_dir, "open")):
        time.sleep(0.02)
    return os.getpid()


@app.workflow()
def order(order_id: str, gate_dir: str) -> dict:
    r = reserve(order_id)
    child = app.start(ship, order_id)
    gate(gate_dir)
    return {"r": r, "shipped": child.result(timeout=120)}


if __name__ == "__main__":
    dsn, executor_id, queue = sys.argv[1], sys.argv[2], sys.argv[3]
    app.dsn, app.executor_id = dsn, executor_id
    app.worker(queues=[queue], concurrency=4).run()
