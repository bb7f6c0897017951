"""async def workflows, steps and transactions (psycopg's AsyncConnection)."""
import asyncio

import psycopg

import pg_workflow as pw
from pg_workflow.testing import bound

app = pw.App()


@app.step(retries=2, backoff=0.01)
async def fetch(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@app.transaction()
async def record(conn, note: str) -> str:
    await conn.execute("INSERT INTO async_ledger VALUES (%s)", (note,))
    return note


@app.workflow()
async def handler(x: int) -> dict:
    a = await fetch(x)
    b = await record(f"n{a}")
    await pw.set_event_async("stage", "recorded")
    await pw.sleep_async(0.01)
    return {"a": a, "b": b, "id": pw.workflow_id()}


def test_async_workflows_awaited_started_and_dequeued(pgwf_dsn):
    with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE async_ledger (note text)")
    with bound(app, pgwf_dsn):
        out = asyncio.run(handler(1))  # awaited in the caller's event loop
        assert out["a"] == 2 and out["b"] == "n2"
        assert app.start(handler, 5, workflow_id="a-5").result(timeout=60)["b"] == "n6"
        assert app.get_event("a-5", "stage", timeout=5) == "recorded"
        queued = app.enqueue("default", handler, 7)
        worker = app.worker(queues=["default"]).start()
        try:
            assert queued.result(timeout=60)["a"] == 8
        finally:
            worker.stop()
    with psycopg.connect(pgwf_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM async_ledger").fetchone()[0] == 3
