"""Enqueue-to-dequeue latency with a waiting dequeuer: from just before the enqueue is sent
until the waiting dequeue returns it. Prints p50, p90 and max in milliseconds."""
import os
import statistics
import sys
import threading
import time

import psycopg

SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 200
dsn = os.environ.get("DATABASE_URL", "")

with psycopg.connect(dsn, autocommit=True) as admin:
    admin.execute("SELECT workflow.create_queue('latency') WHERE NOT EXISTS "
                  "(SELECT 1 FROM workflow.queues WHERE name = 'latency')")
    admin.execute("SELECT workflow.register_executor('latency-exec')")

ready, got = threading.Event(), {}


def dequeuer(n):
    with psycopg.connect(dsn, autocommit=True) as c:
        for _ in range(n):
            ready.set()
            row = c.execute("SELECT workflow_id FROM workflow.dequeue('latency', 'latency-exec', 1, '10 s')").fetchone()
            got[row[0]] = time.perf_counter()
            c.execute("SELECT workflow.finish(%s)", (row[0],))


t = threading.Thread(target=dequeuer, args=(SAMPLES,))
t.start()
lat = []
with psycopg.connect(dsn, autocommit=True) as c:
    for i in range(SAMPLES):
        ready.wait()
        ready.clear()
        time.sleep(0.005)  # let the dequeuer go to sleep
        wid = f"lat-{time.time_ns()}-{i}"
        sent = time.perf_counter()
        c.execute("SELECT workflow.enqueue('latency', 'ping', NULL, %s)", (wid,))
        while wid not in got:
            time.sleep(0.0002)
        lat.append((got[wid] - sent) * 1000)
t.join()
lat.sort()
print(f"{statistics.median(lat):.2f} {lat[int(len(lat) * 0.9)]:.2f} {lat[-1]:.2f}")
