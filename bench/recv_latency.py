"""recv wake-up latency: from just before send() is sent until a waiting recv returns it.
Prints p50, p90 and max in milliseconds."""
import os
import statistics
import sys
import threading
import time

import psycopg

SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 200
dsn = os.environ.get("DATABASE_URL", "")
wid = f"recv-latency-{time.time_ns()}"
with psycopg.connect(dsn, autocommit=True) as c:
    c.execute("SELECT * FROM workflow.start('recv_latency', NULL, %s)", (wid,))

ready, got = threading.Event(), {}


def receiver():
    with psycopg.connect(dsn, autocommit=True) as c:
        for step in range(1, SAMPLES + 1):
            ready.set()
            msg = c.execute("SELECT workflow.recv(%s, %s, NULL, '10 s')", (wid, step)).fetchone()[0]
            got[msg] = time.perf_counter()


t = threading.Thread(target=receiver)
t.start()
lat = []
with psycopg.connect(dsn, autocommit=True) as c:
    for i in range(SAMPLES):
        ready.wait()
        ready.clear()
        time.sleep(0.005)
        sent = time.perf_counter()
        c.execute("SELECT workflow.send(%s, %s)", (wid, psycopg.types.json.Jsonb(i)))
        while i not in got:
            time.sleep(0.0002)
        lat.append((got[i] - sent) * 1000)
t.join()
lat.sort()
print(f"{statistics.median(lat):.2f} {lat[int(len(lat) * 0.9)]:.2f} {lat[-1]:.2f}")
