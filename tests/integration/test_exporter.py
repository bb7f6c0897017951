"""contrib/postgres_exporter.yaml: Debian's prometheus-postgres-exporter, run against the test
server with the queries file, serves workflow_* series with the values of workflow.stats."""
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import DATA_DIR, PORT, ROOT, connect, recreate_database, wait_until

EXPORTER = "prometheus-postgres-exporter"
DB = "stats_exporter"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def series(text):
    """{(name, frozenset(labels)): value} and {name: type} of a Prometheus text exposition."""
    values, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
            if m:
                labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
                values[(m.group(1), labels)] = float(m.group(3))
    return values, types


def value(values, name, **labels):
    found = [v for (n, ls), v in values.items() if n == name and set(labels.items()) <= ls]
    assert len(found) == 1, f"{name} {labels}: {found}"
    return found[0]


@pytest.fixture
def exporter():
    binary = shutil.which(EXPORTER)
    assert binary, f"{EXPORTER} is not installed (scripts/install-deps.sh installs it)"
    port = free_port()
    env = dict(os.environ, DATA_SOURCE_NAME=f"host={DATA_DIR} port={PORT} user=postgres dbname={DB} sslmode=disable")
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}",
         f"--extend.query-path={os.path.join(ROOT, 'contrib', 'postgres_exporter.yaml')}",
         "--disable-default-metrics", "--disable-settings-metrics", "--log.level=warn"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/metrics"

    def up():
        try:
            return scrape(url)
        except OSError:
            assert proc.poll() is None, f"the exporter exited: {proc.stdout.read()}"
            return None

    wait_until(up, timeout=30, what="the exporter to serve /metrics")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_exporter_serves_workflow_series(exporter):
    recreate_database(DB, "default")
    with connect(DB) as c:
        c.execute("SELECT workflow.stats_reset()")
        c.execute("SELECT workflow.register_executor('exp-1')")
        c.execute("SELECT workflow.create_queue('mail')")
        for i in range(3):
            c.execute("SELECT * FROM workflow.start('w', NULL, %s, 'exp-1')", (f"run-{i}",))
            c.execute("SELECT workflow.step_put(%s, 1, 'one', '1')", (f"run-{i}",))
        c.execute("SELECT workflow.finish('run-0', '1')")
        c.execute("""SELECT workflow.fail('run-1', '{"m": 1}')""")
        for i in range(2):
            c.execute("SELECT workflow.enqueue('mail', 'send', NULL, %s)", (f"mail-{i}",))
        expected = dict(c.execute("SELECT name, value FROM workflow.stats WHERE kind = 'counter'").fetchall())
    assert expected["runs_started"] == 5 and expected["steps_recorded"] == 3

    # The exporter caches nothing in 0.11; a scrape runs the queries.
    values, types = series(scrape(exporter))
    for name in ("runs_started", "runs_succeeded", "runs_failed", "steps_recorded", "messages_sent"):
        metric = f"workflow_{name}_total"
        assert types.get(metric) == "counter", (metric, types.get(metric))
        assert value(values, metric, database=DB) == expected[name]
    assert value(values, "workflow_runs_started_total", database=DB) == 5
    assert value(values, "workflow_runs_succeeded_total", database=DB) == 1
    assert value(values, "workflow_runs_failed_total", database=DB) == 1
    assert value(values, "workflow_steps_recorded_total", database=DB) == 3
    assert types["workflow_executors_live"] == "gauge"
    assert value(values, "workflow_executors_live", database=DB) == 1
    assert value(values, "workflow_stats_reset_timestamp_seconds", database=DB) == pytest.approx(time.time(), abs=300)
    assert types["workflow_queue_runs_enqueued"] == "gauge"
    assert value(values, "workflow_queue_runs_enqueued", database=DB, queue="mail") == 2
    assert value(values, "workflow_queue_runs_enqueued", database=DB, queue="default") == 0
    assert value(values, "workflow_queue_runs_pending", database=DB, queue="") == 1  # run-2
    assert value(values, "workflow_queue_oldest_enqueued_age_seconds", database=DB, queue="mail") >= 0
