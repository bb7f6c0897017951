"""The SDK's tests run against a real preloaded server: PGWF_HOST (socket directory, default
/tmp/pgwf_sdk) and PGWF_PORT (5490). Each test gets a scratch database (pgwf_dsn) unless it
needs the scheduler worker, which serves the database `postgres` (served_dsn)."""
import os
import sys
import time

import psycopg
import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
sys.path.insert(0, SRC)  # test this source tree, installed or not

from pg_workflow.testing import pgwf_dsn, server_dsn  # noqa: E402,F401  (the fixture)

HOST = os.environ.get("PGWF_HOST", "/tmp/pgwf_sdk")
PORT = os.environ.get("PGWF_PORT", "5490")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(SRC)))


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


def one(dsn, query, params=None):
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


@pytest.fixture
def served_dsn():
    """The database the scheduler worker serves (recovery and cron happen by themselves)."""
    dsn = server_dsn("postgres")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_workflow")
    return dsn


@pytest.fixture
def short_lease():
    """workflow.executor_timeout = 1s for one test (ALTER SYSTEM and a reload), reset after."""
    dsn = server_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET workflow.executor_timeout = '1s'")
        conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: one(dsn, "SHOW workflow.executor_timeout") == "1s", what="the reload")
    yield
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET workflow.executor_timeout")
        conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: one(dsn, "SHOW workflow.executor_timeout") == "30s", what="the reset")
