"""Helpers of the SDK's tests (a plain module: `conftest` is ambiguous across test folders)."""
import os
import time

import psycopg

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
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
