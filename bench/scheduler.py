"""The scheduler worker: cron fire lateness (fire time -> run enqueued) for a schedule that
fires every second, and the worker's CPU while idle. Prints: p50_ms max_ms idle_cpu_ms_per_s."""
import datetime
import os
import statistics
import sys
import time

import psycopg

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
TICK = os.sysconf("SC_CLK_TCK")

with psycopg.connect(os.environ.get("DATABASE_URL", ""), autocommit=True) as c:
    c.execute("SELECT workflow.schedule('bench_lateness', '* * * * * *', 'ping')")
    time.sleep(SECONDS)
    c.execute("SELECT workflow.unschedule('bench_lateness')")
    rows = c.execute("SELECT workflow_id, created_at FROM workflow.runs "
                     "WHERE workflow_id LIKE 'cron:bench_lateness:%'").fetchall()
    late = []
    for wid, created in rows:
        fire = datetime.datetime.strptime(wid.split(":", 2)[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        late.append((created - fire).total_seconds() * 1000)
    late.sort()

    pids = [r[0] for r in c.execute(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_workflow scheduler'").fetchall()]

    def ticks():
        total = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    before = ticks()
    time.sleep(10)
    idle = (ticks() - before) * 1000 / TICK / 10

print(f"{statistics.median(late):.1f} {late[-1]:.1f} {idle:.1f} {len(late)}")
