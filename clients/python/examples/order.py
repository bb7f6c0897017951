"""A complete example: run it with CRASH=1 (the process dies after the reservation), then
without: the restarted process resumes from the checkpoint and reserves the stock once."""
import os

import pg_workflow as pw

app = pw.App(os.environ.get("DSN", "postgresql:///postgres?host=/tmp/pg_workflow_demo&port=5499"),
             executor_id="shop-1", app_version="v1")


@app.transaction()                     # the UPDATE and its checkpoint commit together
def reserve(conn, sku: str) -> dict:
    conn.execute("UPDATE stock SET reserved = reserved + 1 WHERE sku = %s", (sku,))
    return {"sku": sku}


@app.step(retries=3, backoff=0.5)      # at least once, retried with backoff
def charge(amount: int) -> str:
    return f"ch_{amount}"


@app.workflow()
def order(order_id: str) -> dict:
    r = reserve("A-1")
    if os.environ.get("CRASH"):
        os._exit(9)                    # the process dies here, after step 1 committed
    return {"order": order_id, "reserved": r, "charge": charge(5)}


if __name__ == "__main__":
    print(app.start(order, "o-42", workflow_id="order-42").result(timeout=30))
