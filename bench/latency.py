"""Wake-up latency: from just before a writer's statement is sent until a waiting reader in
another session returns what it wrote. Prints p50, p90 and max in milliseconds.

    python3 bench/latency.py queue [N]   # enqueue -> waiting dequeue
    python3 bench/latency.py recv [N]    # send -> waiting recv
"""
import os
import statistics
import sys
import threading
import time

import psycopg
from psycopg.types.json import Jsonb

MODE = sys.argv[1] if len(sys.argv) > 1 else "queue"
SAMPLES = int(sys.argv[2]) if len(sys.argv) > 2 else 200
DSN = os.environ.get("DATABASE_URL", "")
WID = f"latency-{time.time_ns()}"


def setup(c):
    if MODE == "queue":
        c.execute("SELECT workflow.create_queue('latency') WHERE NOT EXISTS "
                  "(SELECT 1 FROM workflow.queues WHERE name = 'latency')")
        c.execute("SELECT workflow.register_executor('latency-exec')")
    else:
        c.execute("SELECT * FROM workflow.start('latency', NULL, %s)", (WID,))


def read(c, i):
    """Blocks until sample i arrives; returns its key."""
    if MODE == "queue":
        wid = c.execute("SELECT workflow_id FROM workflow.dequeue('latency', 'latency-exec', 1, '10 s')").fetchone()[0]
        c.execute("SELECT workflow.finish(%s)", (wid,))
        return wid
    return c.execute("SELECT workflow.recv(%s, %s, NULL, '10 s')", (WID, i + 1)).fetchone()[0]


def write(c, i):
    """Writes sample i; returns the key the reader will see."""
    if MODE == "queue":
        key = f"{WID}-{i}"
        c.execute("SELECT workflow.enqueue('latency', 'ping', NULL, %s)", (key,))
        return key
    c.execute("SELECT workflow.send(%s, %s)", (WID, Jsonb(i)))
    return i


with psycopg.connect(DSN, autocommit=True) as admin:
    setup(admin)

ready, got = threading.Event(), {}


def reader():
    with psycopg.connect(DSN, autocommit=True) as c:
        for i in range(SAMPLES):
            ready.set()
            key = read(c, i)  # first: Python evaluates the right side of d[k] = v before k
            got[key] = time.perf_counter()


t = threading.Thread(target=reader)
t.start()
lat = []
with psycopg.connect(DSN, autocommit=True) as c:
    for i in range(SAMPLES):
        ready.wait()
        ready.clear()
        time.sleep(0.005)  # let the reader go to sleep
        sent = time.perf_counter()
        key = write(c, i)
        while key not in got:
            time.sleep(0.0002)
        lat.append((got[key] - sent) * 1000)
t.join()
lat.sort()
print(f"{statistics.median(lat):.2f} {lat[int(len(lat) * 0.9)]:.2f} {lat[-1]:.2f}")
