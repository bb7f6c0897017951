"""A 3-step durable workflow from Python, with nothing but psycopg and pg_workflow."""
import os, sys, psycopg
from psycopg.types.json import Jsonb

def run(conn, wid, order):
    status, output, last_step, claimed = conn.execute(
        "SELECT status, output, last_step, claimed FROM workflow.start('fulfil_order', %s, %s)",
        (Jsonb(order), wid)).fetchone()
    if not claimed:                     # finished already, or another executor owns it
        return conn.execute("SELECT output FROM workflow.wait(%s)", (wid,)).fetchone()[0]
    results = []
    for n, (name, body) in enumerate(STEPS, start=1):
        if n <= last_step:              # replay: the checkpoint, not the side effect
            results.append(conn.execute("SELECT output FROM workflow.step_get(%s, %s, %s)",
                                        (wid, n, name)).fetchone()[0])
            continue
        with conn.transaction():        # the step's SQL and its checkpoint commit together
            results.append(body(conn, order))
            conn.execute("SELECT workflow.step_put(%s, %s, %s, %s)", (wid, n, name, Jsonb(results[-1])))
    conn.execute("SELECT workflow.finish(%s, %s)", (wid, Jsonb(results)))
    return results

STEPS = [("reserve", lambda c, o: {"reserved": o["qty"]}),
         ("charge", lambda c, o: {"charged": o["qty"] * 5}),
         ("ship", lambda c, o: {"tracking": "TRK-" + str(o["qty"])})]

if __name__ == "__main__":
    with psycopg.connect(os.environ.get("DATABASE_URL", ""), autocommit=True) as conn:
        print(run(conn, sys.argv[1] if len(sys.argv) > 1 else "order-1", {"qty": 3}))
