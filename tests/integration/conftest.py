"""Integration tests against a real, preloaded server that scripts/test.sh starts.

They use several connections, threads and processes, kill backends with SIGKILL and crash
the server with `pg_ctl stop -m immediate`. They wait for conditions with generous deadlines
and never assert a latency.
"""
import contextlib
import multiprocessing
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA_DIR = os.environ.get("PGWF_DATA_DIR", "/tmp/pg_workflow_test/server")
PORT = int(os.environ.get("PGWF_PORT", "5498"))
DB = "integration"


def connect(dbname=DB, autocommit=True, **kw):
    return psycopg.connect(host=DATA_DIR, port=PORT, user="postgres", dbname=dbname,
                           autocommit=autocommit, **kw)


def wait_until(condition, timeout=60.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except psycopg.OperationalError:
            value = None  # the server may be restarting
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def own_server(location, port, **env):
    """A fresh server of a test module's own, beside the shared one, in `location`; `env` adds
    scripts/server.sh's first-start settings (PGWF_CONF, PGWF_PRELOAD). Stopped at the end."""
    script = os.path.join(ROOT, "scripts", "server.sh")
    subprocess.run([script, "stop", location, "immediate"], check=False, capture_output=True)
    shutil.rmtree(location, ignore_errors=True)
    subprocess.run([script, "start", location, str(port)], check=True, env=dict(os.environ, **env))
    try:
        yield location
    finally:
        subprocess.run([script, "stop", location], check=True)


def server_accepts():
    with connect() as c:
        return c.execute("SELECT 1").fetchone()[0] == 1


def show(setting):
    with connect() as c:
        return c.execute(f"SHOW {setting}").fetchone()[0]


def kill_backend(pid):
    """SIGKILL one backend. The postmaster then resets every session and recovers from WAL."""
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    wait_until(server_accepts, what="the server to accept connections after a backend crash")


def crash_server():
    """Stop the server the way a power cut would, then start it again."""
    script = os.path.join(ROOT, "scripts", "server.sh")
    subprocess.run([script, "stop", DATA_DIR, "immediate"], check=True)
    subprocess.run([script, "start", DATA_DIR, str(PORT)], check=True)
    wait_until(server_accepts, what="the server to come back")


class Background:
    """One query on its own connection, in a thread: for sessions that block or sleep."""

    def __init__(self, sql, params=(), connect_fn=None):
        self.conn = (connect_fn or connect)()
        self.pid = self.conn.info.backend_pid
        self.rows, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(sql, params))
        self.thread.start()

    def _run(self, sql, params):
        try:
            self.rows = self.conn.execute(sql, params).fetchall()
        except psycopg.Error as e:
            self.error = e

    def wait_until_blocked(self, wait_event_type="Extension", connect_fn=None):
        """Returns once the session waits on `wait_event_type` (Extension: our sleep)."""
        def blocked():
            with (connect_fn or connect)() as c:
                return c.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                 (self.pid,)).fetchone()[0] == wait_event_type
        wait_until(blocked, what=f"session {self.pid} to wait on {wait_event_type}")
        return self

    def join(self):
        self.thread.join(120)
        assert not self.thread.is_alive(), "the background query did not return"
        self.conn.close()
        return self.rows


def run_processes(target, arg_lists, timeout=600):
    """Runs target(*args) in one OS process per entry, concurrently; each must succeed."""
    procs = [multiprocessing.Process(target=target, args=args) for args in arg_lists]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0, f"a {target.__name__} process failed"


def one(db, sql, params=()):
    """The first column of the first row."""
    return db.execute(sql, params or None).fetchone()[0]


# Every table that holds pg_workflow's state.
TABLES = ["executor", "run", "checkpoint", "ready", "queue", "schedule", "message", "event", "event_history"]


def counts(db):
    return {t: one(db, f"SELECT count(*) FROM workflow.{t}") for t in TABLES}


def recreate_database(name, extension_version=None):
    """A new, empty database; with the extension, at a given version, when one is given."""
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    if extension_version:
        with connect(name) as c:
            version = "" if extension_version == "default" else f" VERSION '{extension_version}'"
            c.execute("CREATE EXTENSION pg_workflow" + version)


def new_id(prefix):
    return f"{prefix}-{uuid.uuid4()}"


@pytest.fixture(scope="session", autouse=True)
def database():
    with connect("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB}")
        c.execute(f"CREATE DATABASE {DB}")
    with connect() as c:
        c.execute("CREATE EXTENSION pg_workflow")
        c.execute("CREATE TABLE app_ledger (workflow_id text, step int, note text)")
    yield


@pytest.fixture
def db():
    with connect() as c:
        yield c


@pytest.fixture
def short_lease():
    """workflow.executor_timeout = 1s for one test, through ALTER SYSTEM and a reload."""
    with connect() as c:
        c.execute("ALTER SYSTEM SET workflow.executor_timeout = '1s'")
        c.execute("SELECT pg_reload_conf()")
    wait_until(lambda: show("workflow.executor_timeout") == "1s", what="the reload")
    yield
    with connect() as c:
        c.execute("ALTER SYSTEM RESET workflow.executor_timeout")
        c.execute("SELECT pg_reload_conf()")
