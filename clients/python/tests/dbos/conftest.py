"""A DBOS app on a real pg_workflow server: PGWF_HOST (socket directory) and PGWF_PORT, as for
the core's tests. Each test gets a freshly launched DBOS and destroys it after, as DBOS's own
tests do, so launching again in one process is exercised all the time."""
import os
import uuid

import psycopg
import pytest

from pg_workflow.dbos import DBOS, DBOSConfig

HOST = os.environ.get("PGWF_HOST", "/tmp/pgwf_sdk")
PORT = int(os.environ.get("PGWF_PORT", "5490"))
DB = "pgwf_dbos_test"


def url(db: str = DB) -> str:
    return f"postgresql://postgres@/{db}?host={HOST}&port={PORT}"


@pytest.fixture(scope="session")
def database():
    with psycopg.connect(url("postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(url(), autocommit=True) as c:
        c.execute("CREATE EXTENSION pg_workflow")
    return url()


@pytest.fixture()
def sql(database):
    """Plain SQL on the test database, for checks behind the API's back."""
    with psycopg.connect(database, autocommit=True) as c:
        def run(q, *a):
            cur = c.execute(q, a or None)
            return cur.fetchall() if cur.description else None
        yield run


@pytest.fixture()
def config(database) -> DBOSConfig:
    return {"name": "dbos-compat-test", "system_database_url": database,
            "executor_id": f"test-{uuid.uuid4().hex[:8]}"}


@pytest.fixture()
def dbos(config):
    DBOS.destroy(destroy_registry=True)
    instance = DBOS(config=config)
    DBOS.launch()
    yield instance
    DBOS.destroy(destroy_registry=True)
