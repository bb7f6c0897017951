"""SQL workflows run by the server's SQL workers (2 per database by default), no client in
the loop. Prints: runs/s draining N one-step `SELECT 1` runs, then the fire-to-first-step
latency of a schedule firing every second (p50 and max in ms, and how many fires).

    python3 bench/sql_workflows.py [RUNS] [SECONDS]
"""
import datetime
import os
import statistics
import sys
import time

import psycopg

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
DSN = os.environ.get("DATABASE_URL", "")


def main():
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute("DO $$ BEGIN CREATE ROLE bench_sql; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        c.execute("SELECT workflow.define('bench_one', ARRAY['SELECT 1'], run_as => 'bench_sql')")
        c.execute("SELECT workflow.define('bench_stamp', ARRAY['SELECT clock_timestamp()'], run_as => 'bench_sql')")
        c.execute("VACUUM ANALYZE workflow.run, workflow.ready")

        # Throughput: the whole backlog is committed at once, then the workers drain it.
        with c.transaction():
            c.execute("SELECT count(workflow.enqueue('default', 'bench_one')) FROM generate_series(1, %s)", (RUNS,))
        began = time.monotonic()
        while c.execute("SELECT count(*) FROM workflow.run WHERE name = 'bench_one' AND status <> 'SUCCESS'").fetchone()[0]:
            time.sleep(0.01)
        runs_per_s = RUNS / (time.monotonic() - began)

        # Latency: from each nominal fire time (in the run's id) to its step's clock.
        c.execute("SELECT workflow.schedule('bench_stamp', '* * * * * *', 'bench_stamp')")
        time.sleep(SECONDS)
        c.execute("SELECT workflow.unschedule('bench_stamp')")
        time.sleep(1)
        rows = c.execute("""SELECT workflow_id, (output #>> '{}')::timestamptz FROM workflow.runs
                             WHERE name = 'bench_stamp' AND status = 'SUCCESS'""").fetchall()
    late = []
    for workflow_id, stepped in rows:
        fired = datetime.datetime.strptime(workflow_id.rsplit("stamp:", 1)[1], "%Y-%m-%dT%H:%M:%SZ")
        late.append((stepped - fired.replace(tzinfo=datetime.timezone.utc)).total_seconds() * 1000)
    print(f"{runs_per_s:.0f} {statistics.median(late):.1f} {max(late):.1f} {len(late)}")


if __name__ == "__main__":
    main()
