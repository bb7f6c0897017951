"""The in-server scheduler workers, on a server of their own: 4 workers serve its `postgres`
database (workflow.database), leases last 2 s, and the tick interval is 200 ms."""
import datetime
import multiprocessing
import os
import signal
import subprocess
import time

import psycopg
import pytest

from conftest import DATA_DIR, PORT, ROOT, own_server, wait_until

DIR = os.path.join(os.path.dirname(DATA_DIR), "worker")
WPORT = int(os.environ.get("PGWF_WORKER_PORT", PORT + 20))
SCRIPT = os.path.join(ROOT, "scripts", "server.sh")
CONF = "workflow.scheduler_workers = 4\nworkflow.executor_timeout = '2s'\nworkflow.tick_interval = '200ms'"


def connect(autocommit=True, **kw):
    return psycopg.connect(host=DIR, port=WPORT, user="postgres", dbname="postgres", autocommit=autocommit, **kw)


def workers():
    with connect() as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_workflow scheduler'"
                         ).fetchone()[0]


@pytest.fixture(scope="module", autouse=True)
def worker_server():
    with own_server(DIR, WPORT, PGWF_CONF=CONF):
        with connect() as c:
            c.execute("CREATE EXTENSION pg_workflow")
            c.execute("CREATE TABLE ledger (workflow_id text, step int)")
        wait_until(lambda: workers() == 4, what="4 scheduler workers")
        yield


def fire_times(schedule):
    with connect() as c:
        ids = [r[0] for r in c.execute("SELECT workflow_id FROM workflow.runs WHERE workflow_id LIKE %s",
                                       (f"cron:{schedule}:%",)).fetchall()]
    return sorted(datetime.datetime.strptime(i.split(":", 2)[2], "%Y-%m-%dT%H:%M:%SZ") for i in ids)


def assert_one_run_per_second(times):
    assert len(times) >= 3
    assert len(set(times)) == len(times)
    assert all((b - a).total_seconds() == 1 for a, b in zip(times, times[1:])), "a second was missed"


def test_a_schedule_every_second_fires_once_a_second():
    with connect() as c:
        c.execute("SELECT workflow.schedule('each_second', '* * * * * *', 'ping')")
        time.sleep(4.5)
        c.execute("SELECT workflow.unschedule('each_second')")
    assert_one_run_per_second(fire_times("each_second"))


def client_ticks(seconds):
    with connect() as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            c.execute("SELECT workflow.tick()")


def test_four_workers_and_four_ticking_clients_fire_each_time_once():
    with connect() as c:
        c.execute("SELECT workflow.schedule('contended', '* * * * * *', 'ping')")
    clients = [multiprocessing.Process(target=client_ticks, args=(10,)) for _ in range(4)]
    for p in clients:
        p.start()
    for p in clients:
        p.join(60)
        assert p.exitcode == 0
    with connect() as c:
        c.execute("SELECT workflow.unschedule('contended')")
    times = fire_times("contended")
    assert len(times) >= 9
    assert_one_run_per_second(times)


def executor(name, ids, park):
    """Starts each run, does step 1 in a transaction with its ledger row, then parks."""
    with connect() as c:
        c.execute("SELECT workflow.register_executor(%s)", (name,))
        for wid in ids:
            c.execute("SELECT * FROM workflow.start('two_steps', NULL, %s, %s)", (wid, name))
            with c.transaction():
                c.execute("INSERT INTO ledger VALUES (%s, 1)", (wid,))
                c.execute("SELECT workflow.step_put(%s, 1, 'one', '1')", (wid,))
        park.set()
        while True:
            c.execute("SELECT workflow.heartbeat(%s)", (name,))
            time.sleep(0.3)


def survivor(name, total):
    """Heartbeats, dequeues recovered runs from `default`, replays, finishes them."""
    with connect() as c:
        c.execute("SELECT workflow.register_executor(%s)", (name,))
        done = 0
        while done < total:
            c.execute("SELECT workflow.heartbeat(%s)", (name,))
            for wid, last in c.execute("SELECT workflow_id, last_step FROM workflow.dequeue('default', %s, 20, '1 s')",
                                       (name,)).fetchall():
                for step in range(last + 1, 3):
                    with c.transaction():
                        c.execute("INSERT INTO ledger VALUES (%s, %s)", (wid, step))
                        c.execute("SELECT workflow.step_put(%s, %s, %s, 'null')", (wid, step, f"s{step}"))
                c.execute("SELECT workflow.finish(%s)", (wid,))
                done += 1


def test_runs_of_a_killed_executor_finish_on_the_survivor_without_rerunning_steps():
    ids = [f"crash-{i}" for i in range(100)]
    park = multiprocessing.Event()
    doomed = multiprocessing.Process(target=executor, args=("doomed", ids, park))
    doomed.start()
    assert park.wait(120)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join(10)
    killed_at = time.monotonic()
    rescuer = multiprocessing.Process(target=survivor, args=("rescuer", len(ids)))
    rescuer.start()
    rescuer.join(120)
    assert rescuer.exitcode == 0
    recovery_seconds = time.monotonic() - killed_at
    with connect() as c:
        statuses = c.execute("SELECT status, count(*) FROM workflow.runs WHERE workflow_id = ANY(%s) GROUP BY 1",
                             (ids,)).fetchall()
        twice = c.execute("SELECT count(*) FROM (SELECT workflow_id, step FROM ledger WHERE workflow_id = ANY(%s) "
                          "GROUP BY 1, 2 HAVING count(*) > 1) x", (ids,)).fetchone()[0]
        steps = c.execute("SELECT count(*) FROM ledger WHERE workflow_id = ANY(%s)", (ids,)).fetchone()[0]
    assert statuses == [("SUCCESS", 100)]
    assert twice == 0, "a transactional step ran twice"
    assert steps == 200
    print(f"recovered 100 runs {recovery_seconds:.1f} s after the kill (lease 2 s)")


def test_a_heartbeating_executor_keeps_its_long_running_run():
    with connect() as c:
        c.execute("SELECT workflow.register_executor('steady')")
        c.execute("SELECT * FROM workflow.start('long', NULL, 'long-1', 'steady')")
        deadline = time.monotonic() + 5  # more than twice the 2 s lease
        while time.monotonic() < deadline:
            c.execute("SELECT workflow.heartbeat('steady')")
            time.sleep(0.3)
        row = c.execute("SELECT status, executor_id, recovery_attempts FROM workflow.runs WHERE workflow_id = 'long-1'"
                        ).fetchone()
    assert row == ("PENDING", "steady", 0)


def worker_cpu_seconds():
    """CPU seconds used so far by all scheduler workers, from /proc."""
    with connect() as c:
        pids = [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_workflow scheduler'")]
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def log_lines_since(offset, text):
    with open(os.path.join(DIR, "server.log"), errors="replace") as f:
        f.seek(offset)
        return [line for line in f if text in line]


def log_size():
    return os.path.getsize(os.path.join(DIR, "server.log"))


def test_failing_and_locked_schedules_neither_spin_the_workers_nor_flood_the_log():
    """Issue 8, defect 3: a fire that fails (its id is taken by a run of another name) and a due
    schedule whose row another session holds used to make every worker loop without sleeping."""
    with connect() as c:
        c.execute("SELECT workflow.schedule('clash', '* * * * * *', 'ping')")
        c.execute("SELECT workflow.schedule('held', '* * * * * *', 'ping')")
        # The next 30 fire ids of 'clash' belong to runs of another workflow.
        c.execute("""SELECT count(*) FROM generate_series(0, 30) i, workflow.start('squatter', NULL,
                       'cron:clash:' || to_char(date_trunc('second', clock_timestamp() + i * interval '1 s')
                                                AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))""")
    with connect(autocommit=False) as holder:
        holder.execute("SELECT 1 FROM workflow.schedule WHERE name = 'held' FOR UPDATE")
        offset, cpu = log_size(), worker_cpu_seconds()
        time.sleep(4)
        used = worker_cpu_seconds() - cpu
        holder.rollback()
    warnings = log_lines_since(offset, "did not fire")
    with connect() as c:
        error, = c.execute("SELECT last_error FROM workflow.schedules WHERE name = 'clash'").fetchone()
    # Spinning, 4 workers burned about 4 CPU-seconds here; asleep they use a few milliseconds.
    assert used < 1.0, f"the workers used {used:.2f} CPU-seconds in 4 s"
    assert len(warnings) <= 4, f"{len(warnings)} warnings: at most one a minute per worker"
    assert "already used by a run of" in error
    wait_until(lambda: len(fire_times("held")) >= 1, what="the released schedule to fire")
    with connect() as c:
        c.execute("SELECT workflow.unschedule('clash'), workflow.unschedule('held')")


def test_the_workers_wait_quietly_while_the_server_is_read_only():
    """Issue 8, defect 16: pg_auto_failover keeps a promoted primary read-only for a while."""
    with connect() as c:
        c.execute("SELECT workflow.schedule('while_ro', '* * * * * *', 'ping')")
        wait_until(lambda: len(fire_times("while_ro")) >= 1, what="a first fire")
        c.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        c.execute("SELECT pg_reload_conf()")
    offset = log_size()
    time.sleep(1)
    fired = len(fire_times("while_ro"))
    time.sleep(2)
    assert len(fire_times("while_ro")) == fired, "a read-only server fired a schedule"
    assert log_lines_since(offset, "pass failed") == []
    with connect() as c:
        c.execute("SET default_transaction_read_only = off")
        c.execute("ALTER SYSTEM RESET default_transaction_read_only")
        c.execute("SELECT pg_reload_conf()")
    wait_until(lambda: len(fire_times("while_ro")) >= fired + 2, what="fires once writable again")
    with connect() as c:
        c.execute("SELECT workflow.unschedule('while_ro')")


def test_a_terminated_worker_comes_back():
    with connect() as c:
        pid = c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_workflow scheduler' LIMIT 1"
                        ).fetchone()[0]
        c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until(lambda: workers() == 4, what="the worker to restart")


def test_the_workers_leave_at_drop_extension_and_come_back_at_create_extension():
    with connect() as c:
        c.execute("DROP EXTENSION pg_workflow CASCADE")
        wait_until(lambda: workers() == 0, what="the workers to leave the database")
        time.sleep(1)
        assert workers() == 0, "a worker came back without the extension"
        c.execute("CREATE EXTENSION pg_workflow")
        wait_until(lambda: workers() == 4, what="the workers to come back")
        c.execute("SELECT workflow.schedule('reborn', '* * * * * *', 'ping')")
    wait_until(lambda: len(fire_times("reborn")) >= 2, what="the recreated schedule to fire")


def test_the_workers_come_back_after_a_server_crash():
    with connect() as c:
        c.execute("SELECT workflow.schedule('after_crash', '* * * * * *', 'ping')")
    subprocess.run([SCRIPT, "stop", DIR, "immediate"], check=True)
    subprocess.run([SCRIPT, "start", DIR, str(WPORT)], check=True)
    wait_until(lambda: workers() == 4, what="the workers after the crash")
    with connect() as c:
        first = c.execute("SELECT count(*) FROM workflow.runs WHERE workflow_id LIKE 'cron:after_crash:%'").fetchone()[0]
    wait_until(lambda: len(fire_times("after_crash")) >= first + 2, what="fires after the restart")
