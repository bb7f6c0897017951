"""One set of workers per database, on a server of its own with `workflow.database = ''`: the
launcher serves every database that has the extension, picks up databases created while it
runs, leaves those without the extension alone, and gets out of the way of DROP DATABASE,
ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE (no FORCE)."""
import os
import shutil
import time

import psycopg
import pytest

from conftest import DATA_DIR, own_server, wait_until

DIR = os.path.join(os.path.dirname(DATA_DIR), "launcher")
# Not the shared test server's port (CI runs that on 5498).
LPORT = int(os.environ.get("PGWF_LAUNCHER_PORT", "5497"))
CONF = "workflow.database = ''\nworkflow.tick_interval = '200ms'"


def connect(dbname="postgres", **kw):
    return psycopg.connect(host=DIR, port=LPORT, user="postgres", dbname=dbname, autocommit=True, **kw)


def query(sql, params=(), dbname="postgres"):
    with connect(dbname) as c:
        return c.execute(sql, params or None).fetchall()


def workers(datname, kind="pg_workflow scheduler"):
    return [pid for (pid,) in query("SELECT pid FROM pg_stat_activity WHERE backend_type = %s AND datname = %s",
                                    (kind, datname))]


def workers_in(datid):
    return query("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_workflow%%' AND datid = %s",
                 (datid,))[0][0]


def fires(dbname, schedule="tick"):
    return query("SELECT count(*) FROM workflow.runs WHERE workflow_id LIKE %s", (f"cron:{schedule}:%",), dbname)[0][0]


def served_database(name):
    """A new database with the extension and a schedule that fires every second."""
    with connect() as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    with connect(name) as c:
        c.execute("CREATE EXTENSION pg_workflow")
        c.execute("SELECT workflow.schedule('tick', '* * * * * *', 'ping')")
    wait_until(lambda: workers(name), what=f"a scheduler in {name}")
    return query("SELECT oid FROM pg_database WHERE datname = %s", (name,))[0][0]


def timed(dbname, statement):
    """Runs a statement under a 20 s deadline; returns how long it took."""
    with connect(dbname) as c:
        c.execute("SET statement_timeout = '20s'")
        began = time.monotonic()
        c.execute(statement)
        return time.monotonic() - began


@pytest.fixture(scope="module", autouse=True)
def launcher_server():
    with own_server(DIR, LPORT, PGWF_CONF=CONF):
        wait_until(lambda: query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_workflow launcher'"
                                 )[0][0] == 1, what="the launcher")
        yield


@pytest.fixture(autouse=True)
def leave_no_database():
    """Each test's databases go when it ends: their workers would use up max_worker_processes."""
    yield
    for (name,) in query(r"SELECT datname FROM pg_database WHERE datname LIKE 'lw\_%'"):
        with connect() as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_two_databases_are_served_at_once():
    with connect() as c:
        c.execute("DO $$ BEGIN CREATE ROLE lw_runner; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    for name in ("lw_one", "lw_two"):
        served_database(name)
        with connect(name) as c:  # and a SQL workflow that the database's own SQL workers run
            c.execute("SELECT workflow.define('where', ARRAY['SELECT current_database()'], run_as => 'lw_runner')")
            c.execute("SELECT workflow.enqueue('default', 'where', NULL, 'where-1')")
    for name in ("lw_one", "lw_two"):
        wait_until(lambda: fires(name) >= 2, what=f"fires in {name}")
        assert len(workers(name)) == 1
        wait_until(lambda: query("SELECT output FROM workflow.runs WHERE workflow_id = 'where-1' AND status = 'SUCCESS'",
                                 (), name) == [(name,)], what=f"the SQL workflow of {name}")


def test_a_database_without_the_extension_gets_no_resident_workers():
    with connect() as c:
        c.execute("DROP DATABASE IF EXISTS lw_plain")
        c.execute("CREATE DATABASE lw_plain")
    wait_until(lambda: not workers("lw_plain"), what="no scheduler in lw_plain")
    for _ in range(20):  # 2 s: nothing comes back
        assert query("SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_workflow%%' "
                     "AND datname = 'lw_plain'")[0][0] == 0
        time.sleep(0.1)
    with connect("lw_plain") as c:  # CREATE EXTENSION ends the dormancy
        c.execute("CREATE EXTENSION pg_workflow")
    wait_until(lambda: workers("lw_plain"), what="a scheduler once the extension exists")


def test_drop_database_of_a_served_database_needs_no_force():
    oid = served_database("lw_drop")
    wait_until(lambda: len(workers("lw_drop", "pg_workflow sql worker")) == 2, what="2 SQL workers")
    took = timed("postgres", "DROP DATABASE lw_drop")
    print(f"DROP DATABASE took {took:.2f} s")
    assert query("SELECT count(*) FROM pg_database WHERE datname = 'lw_drop'")[0][0] == 0
    wait_until(lambda: workers_in(oid) == 0, what="no workers of the dropped database")
    time.sleep(1.5)
    assert workers_in(oid) == 0


def test_who_may_not_drop_a_database_cannot_stop_its_workers():
    """The hook empties a database only for a statement that may succeed: its owner's, outside
    a transaction block. Anyone else's DROP fails without touching the workers."""
    served_database("lw_kept")
    wait_until(lambda: len(workers("lw_kept", "pg_workflow sql worker")) == 2, what="2 SQL workers")
    before = sorted(workers("lw_kept", "pg_workflow sql worker") + workers("lw_kept"))
    with connect() as c:
        c.execute("DO $$ BEGIN CREATE ROLE lw_stranger LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    stranger = psycopg.connect(host=DIR, port=LPORT, user="lw_stranger", dbname="postgres", autocommit=True)
    with stranger, pytest.raises(psycopg.errors.InsufficientPrivilege):
        stranger.execute("DROP DATABASE lw_kept")
    with connect() as c, pytest.raises(psycopg.errors.ActiveSqlTransaction):
        with c.transaction():
            c.execute("DROP DATABASE lw_kept")
    time.sleep(0.5)
    assert sorted(workers("lw_kept", "pg_workflow sql worker") + workers("lw_kept")) == before


def test_rename_of_a_served_database_and_service_resumes():
    with connect() as c:
        c.execute("DROP DATABASE IF EXISTS lw_renamed WITH (FORCE)")
    served_database("lw_old")
    took = timed("postgres", "ALTER DATABASE lw_old RENAME TO lw_renamed")
    print(f"ALTER DATABASE ... RENAME took {took:.2f} s")
    wait_until(lambda: workers("lw_renamed"), what="a scheduler under the new name")
    before = fires("lw_renamed")
    wait_until(lambda: fires("lw_renamed") >= before + 2, what="fires after the rename")


def test_create_database_from_a_served_template():
    with connect() as c:
        c.execute("DROP DATABASE IF EXISTS lw_copy WITH (FORCE)")
    served_database("lw_source")
    took = timed("postgres", "CREATE DATABASE lw_copy TEMPLATE lw_source")
    print(f"CREATE DATABASE ... TEMPLATE took {took:.2f} s")
    # The copy has the extension and its schedule: it is served too, and so is the source again.
    wait_until(lambda: workers("lw_copy") and workers("lw_source"), what="schedulers in both")
    before = fires("lw_copy")
    wait_until(lambda: fires("lw_copy") >= before + 2, what="fires in the copy")


def test_set_tablespace_of_a_served_database():
    location = os.path.join(DIR, "tablespace")
    shutil.rmtree(location, ignore_errors=True)
    os.makedirs(location)
    shutil.chown(location, "postgres", "postgres")
    with connect() as c:
        c.execute("DROP TABLESPACE IF EXISTS lw_space")
        c.execute(f"CREATE TABLESPACE lw_space LOCATION '{location}'")
    served_database("lw_moved")
    took = timed("postgres", "ALTER DATABASE lw_moved SET TABLESPACE lw_space")
    print(f"ALTER DATABASE ... SET TABLESPACE took {took:.2f} s")
    wait_until(lambda: workers("lw_moved"), what="a scheduler after the move")


def test_a_terminated_scheduler_comes_back():
    served_database("lw_term")
    old = workers("lw_term")
    query("SELECT pg_terminate_backend(%s)", (old[0],))
    wait_until(lambda: workers("lw_term") and not set(workers("lw_term")) & set(old), what="a new scheduler")


def test_a_restarted_launcher_runs_no_duplicates():
    served_database("lw_dup")
    wait_until(lambda: len(workers("lw_dup", "pg_workflow sql worker")) == 2, what="2 SQL workers")
    query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_workflow launcher'")
    wait_until(lambda: query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_workflow launcher'"
                             )[0][0] == 1, what="the launcher to restart")
    time.sleep(3)
    assert len(workers("lw_dup")) == 1
    assert len(workers("lw_dup", "pg_workflow sql worker")) == 2


def test_the_schedulers_keep_the_leases_of_live_sql_workers():
    """A SQL worker inside a long step cannot heartbeat: its database's scheduler renews its
    lease while its process lives, and only then."""
    served_database("lw_lease")
    wait_until(lambda: len(workers("lw_lease", "pg_workflow sql worker")) == 2, what="2 SQL workers")
    with connect("lw_lease") as c:
        c.execute("CREATE ROLE lw_sleeper")
        c.execute("SELECT workflow.define('nap', ARRAY['SELECT pg_sleep(600)'], run_as => 'lw_sleeper')")
        c.execute("SELECT workflow.enqueue('default', 'nap', NULL, 'nap-1')")
    busy = wait_until(lambda: query("SELECT executor_id FROM workflow.runs WHERE workflow_id = 'nap-1' AND status = 'PENDING'",
                                    (), "lw_lease"), what="a SQL worker in its step")[0][0]
    wait_until(lambda: query("SELECT 1 FROM pg_stat_activity WHERE datname = 'lw_lease' AND wait_event = 'PgSleep'"),
               what="the step to sleep")
    with connect("lw_lease") as c:
        c.execute("UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = %s", (busy,))
        c.execute("INSERT INTO workflow.executor (executor_id, last_heartbeat) VALUES "
                  "('pg_workflow:sql:7', now() - interval '1 hour')")

    def age(executor):
        return query("SELECT extract(epoch FROM clock_timestamp() - last_heartbeat) FROM workflow.executor "
                     "WHERE executor_id = %s", (executor,), "lw_lease")[0][0]

    try:
        wait_until(lambda: age(busy) < 5, what="the busy SQL worker's lease renewed")
        assert age("pg_workflow:sql:7") > 3000, "a lease of a slot with no live worker was renewed"
        assert query("SELECT status FROM workflow.runs WHERE workflow_id = 'nap-1'", (), "lw_lease")[0][0] == "PENDING"
    finally:
        with connect("lw_lease") as c:
            c.execute("SELECT workflow.cancel('nap-1')")
            c.execute("SELECT workflow.undefine('nap')")
        with connect() as c:
            c.execute("DROP DATABASE lw_lease WITH (FORCE)")
            c.execute("DROP ROLE lw_sleeper")


def test_sql_workers_follow_the_setting():
    served_database("lw_count")
    wait_until(lambda: len(workers("lw_count", "pg_workflow sql worker")) == 2, what="2 SQL workers")
    with connect() as c:
        c.execute("ALTER SYSTEM SET workflow.sql_workers = 1")
        c.execute("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: len(workers("lw_count", "pg_workflow sql worker")) == 1, what="1 SQL worker")
    finally:
        with connect() as c:
            c.execute("ALTER SYSTEM RESET workflow.sql_workers")
            c.execute("SELECT pg_reload_conf()")
    wait_until(lambda: len(workers("lw_count", "pg_workflow sql worker")) == 2, what="2 SQL workers again")
