"""CPU used by 100 dequeuers waiting on an empty queue: the sum of their backends' CPU time
over a few seconds, from /proc. Prints CPU-milliseconds per second for all 100 together."""
import os
import sys
import threading
import time

import psycopg

N, SECONDS = 100, float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
dsn = os.environ.get("DATABASE_URL", "")
TICK = os.sysconf("SC_CLK_TCK")

with psycopg.connect(dsn, autocommit=True) as admin:
    admin.execute("SELECT workflow.create_queue('idle') WHERE NOT EXISTS (SELECT 1 FROM workflow.queues WHERE name = 'idle')")
    admin.execute("SELECT workflow.register_executor('idle-exec')")

conns = [psycopg.connect(dsn, autocommit=True) for _ in range(N)]
pids = [c.info.backend_pid for c in conns]
threads = [threading.Thread(target=lambda c=c: c.execute(
    "SELECT * FROM workflow.dequeue('idle', 'idle-exec', 1, %s)", (f"{SECONDS + 5} s",)).fetchall()) for c in conns]
for t in threads:
    t.start()
time.sleep(1.0)  # let every dequeuer reach its sleep


def cpu_ticks():
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


before = cpu_ticks()
time.sleep(SECONDS)
after = cpu_ticks()
print(f"{(after - before) * 1000 / TICK / SECONDS:.1f}")
for t in threads:
    t.join()
for c in conns:
    c.close()
