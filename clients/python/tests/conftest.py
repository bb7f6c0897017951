"""The SDK's tests run against a real preloaded server: PGWF_HOST (socket directory, default
/tmp/pgwf_sdk) and PGWF_PORT (5490). Each test gets a scratch database (pgwf_dsn) unless it
needs the scheduler worker, which serves the database `postgres` (served_dsn)."""
import os
import sys

import psycopg
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdk_support import SRC, one, wait_until  # noqa: E402

sys.path.insert(0, SRC)  # test this source tree, installed or not

from pg_workflow.testing import pgwf_dsn, server_dsn  # noqa: E402,F401  (the fixture)


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
