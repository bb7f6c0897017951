"""SQL workflows run by the server itself, on a server of their own: its SQL workers serve its
`postgres` database, with no outside executor anywhere. Steps write into `effects`, so a test
can count how often each step's work happened (exactly once), whatever failed or crashed."""
import os
import signal
import time

import psycopg
import pytest

from conftest import DATA_DIR, PORT, own_server, wait_until

DIR = os.path.join(os.path.dirname(DATA_DIR), "sql_workflows")
SPORT = PORT + 21
CONF = "workflow.tick_interval = '200ms'\nworkflow.executor_timeout = '10s'"


def connect(autocommit=True, **kw):
    return psycopg.connect(host=DIR, port=SPORT, user="postgres", dbname="postgres", autocommit=autocommit, **kw)


def one(sql, params=()):
    with connect() as c:
        row = c.execute(sql, params).fetchone()
        return row[0] if row else None


def sql_workers():
    return one("SELECT array_agg(pid ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'pg_workflow sql worker'") or []


@pytest.fixture(scope="module", autouse=True)
def server():
    with own_server(DIR, SPORT, PGWF_CONF=CONF):
        yield from prepared()


def prepared():
    with connect() as c:
        c.execute("CREATE EXTENSION pg_workflow")
        c.execute("CREATE ROLE etl LOGIN")
        c.execute("CREATE TABLE effects (run text, step text, who text, at timestamptz DEFAULT clock_timestamp())")
        c.execute("GRANT SELECT, INSERT ON effects TO etl")
        c.execute("CREATE SEQUENCE tries")
        c.execute("GRANT USAGE ON SEQUENCE tries TO etl")
    wait_until(lambda: len(sql_workers()) == 2, what="2 SQL workers")
    yield


def run_state(workflow_id):
    with connect() as c:
        return c.execute("SELECT status, output, error, recovery_attempts FROM workflow.runs WHERE workflow_id = %s",
                         (workflow_id,)).fetchone()


def wait_ended(workflow_id, timeout=60):
    return wait_until(lambda: (lambda s: s if s and s[0] in ("SUCCESS", "ERROR", "CANCELLED") else None)(
        run_state(workflow_id)), timeout=timeout, what=f"run {workflow_id} to end")


def effects(run):
    with connect() as c:
        return [tuple(r) for r in c.execute("SELECT step, count(*) FROM effects WHERE run = %s GROUP BY step ORDER BY step",
                                             (run,)).fetchall()]


def test_a_cron_fired_three_step_sql_workflow_runs_with_no_outside_executor():
    with connect() as c:
        c.execute("""SELECT workflow.define('rollup', ARRAY[
            $$INSERT INTO effects (run, step, who) VALUES ($1->>'tag', 'one', current_user) RETURNING 10$$,
            $$WITH e AS (INSERT INTO effects (run, step, who) VALUES ($1->>'tag', 'two', current_user) RETURNING who)
              SELECT who, ($2->>0)::int + 5 AS total FROM e$$,
            $$SELECT jsonb_build_object('first', $2->0, 'second', $2->1, 'tag', $1->>'tag')$$],
            run_as => 'etl')""")
        c.execute("SELECT workflow.schedule('rollup-every-second', '* * * * * *', 'rollup', '{\"tag\": \"cron\"}')")
    fired = wait_until(lambda: one("SELECT min(workflow_id) FROM workflow.runs WHERE name = 'rollup' AND status = 'SUCCESS'"),
                       what="a fired rollup to succeed")
    with connect() as c:
        c.execute("SELECT workflow.unschedule('rollup-every-second')")
    status, output, error, _ = run_state(fired)
    assert fired.startswith("cron:rollup-every-second:")
    assert output == {"first": 10, "second": {"who": "etl", "total": 15}, "tag": "cron"}
    assert error is None
    with connect() as c:
        steps = c.execute("SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = %s ORDER BY step",
                          (fired,)).fetchall()
        executor = c.execute("SELECT executor_id, app_version FROM workflow.runs WHERE workflow_id = %s", (fired,)).fetchone()
    assert [s[0] for s in steps] == [1, 2, 3] and steps[0][2] == 10
    assert executor[0].startswith("pg_workflow:sql:") and executor[1] == "pg_workflow:sql"


def test_a_step_failing_twice_then_succeeding_does_its_work_once():
    with connect() as c:
        c.execute("SELECT setval('tries', 1, false)")
        c.execute("""SELECT workflow.define('flaky', ARRAY[
            $$INSERT INTO effects (run, step) VALUES ('flaky', 'before')$$,
            $$INSERT INTO effects (run, step) VALUES ('flaky', 'flaky');
              SELECT 1 / greatest(nextval('tries') - 2, 0) AS ok$$],
            max_attempts => 3, backoff => '100 ms', run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'flaky', NULL, 'flaky-1')")
    status, output, error, _ = wait_ended("flaky-1")
    assert (status, output, error) == ("SUCCESS", 1, None)
    assert effects("flaky") == [("before", 1), ("flaky", 1)]  # the two failed attempts rolled back
    assert one("SELECT last_value FROM tries") == 3


def test_a_run_ends_error_with_its_sqlstate_and_resumes_at_the_failed_step_after_the_fix():
    with connect() as c:
        c.execute("""SELECT workflow.define('needs_table', ARRAY[
            $$INSERT INTO effects (run, step) VALUES ('needs_table', 'one') RETURNING 1$$,
            $$SELECT count(*) FROM not_there_yet$$],
            max_attempts => 2, backoff => '50 ms', run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'needs_table', NULL, 'needs-1')")
    status, _, error, _ = wait_ended("needs-1")
    assert status == "ERROR"
    assert error["sqlstate"] == "42P01" and error["step"] == 2 and error["attempts"] == 2
    assert "not_there_yet" in error["message"] and error["type"] == "SQLError"
    with connect() as c:
        c.execute("CREATE TABLE not_there_yet (x int)")
        c.execute("INSERT INTO not_there_yet VALUES (1), (2)")
        c.execute("GRANT SELECT ON not_there_yet TO etl")
        assert c.execute("SELECT workflow.resume('needs-1')").fetchone()[0] == "ENQUEUED"
    status, output, error, _ = wait_ended("needs-1")
    assert (status, output, error) == ("SUCCESS", 2, None)
    assert effects("needs_table") == [("one", 1)]  # step 1 did not run again


def test_steps_run_as_run_as_with_its_search_path_and_cannot_climb_back():
    with connect() as c:
        c.execute("CREATE SCHEMA etl_space AUTHORIZATION etl")
        c.execute("CREATE TABLE etl_space.mine (x int)")
        c.execute("ALTER TABLE etl_space.mine OWNER TO etl")
        c.execute("ALTER ROLE etl SET search_path = etl_space, public")
        c.execute("""SELECT workflow.define('whoami', ARRAY[
            $$SET work_mem = '77MB'; INSERT INTO mine VALUES (1);
              SELECT current_user AS who, session_user <> current_user AS switched,
                     current_setting('search_path') AS path$$,
            $$SELECT current_setting('work_mem') AS work_mem, (SELECT count(*) FROM etl_space.mine) AS n$$],
            run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'whoami', NULL, 'who-1')")
        c.execute("SELECT workflow.define('climb', ARRAY[$$SET ROLE postgres; SELECT 1$$], max_attempts => 1, run_as => 'etl')")
        c.execute("SELECT workflow.enqueue('default', 'climb', NULL, 'climb-1')")
        c.execute("SELECT workflow.define('reset', ARRAY[$$RESET ROLE; SELECT 1$$], max_attempts => 1, run_as => 'etl')")
        c.execute("SELECT workflow.enqueue('default', 'reset', NULL, 'reset-1')")
    status, output, _, _ = wait_ended("who-1")
    assert status == "SUCCESS"
    with connect() as c:
        first = c.execute("SELECT output FROM workflow.steps WHERE workflow_id = 'who-1' AND step = 1").fetchone()[0]
    assert first == {"who": "etl", "switched": True, "path": "etl_space, public, pg_temp"}
    assert output["n"] == 1 and output["work_mem"] != "77MB"  # the step's SET did not outlive it
    for run in ("climb-1", "reset-1"):
        status, _, error, _ = wait_ended(run)
        assert status == "ERROR" and error["sqlstate"] == "42501", error


def test_application_executors_and_sql_workers_never_claim_each_others_runs():
    with connect() as c:
        c.execute("SELECT workflow.create_queue('mixed')")
        c.execute("SELECT workflow.register_executor('app-1')")
        c.execute("SELECT workflow.enqueue('mixed', 'an_app_workflow', NULL, 'app-run')")
        c.execute("SELECT workflow.define('sql_one', ARRAY[$$SELECT 1$$], run_as => 'etl')")
        c.execute("SELECT workflow.enqueue('mixed', 'sql_one', NULL, 'sql-run')")
    assert wait_ended("sql-run")[0] == "SUCCESS"
    assert run_state("app-run")[0] == "ENQUEUED"  # the SQL workers passed it by
    with connect() as c:
        claimed = c.execute("SELECT workflow_id FROM workflow.dequeue('mixed', 'app-1', 10)").fetchall()
    assert claimed == [("app-run",)]


def test_a_sql_worker_killed_mid_step_comes_back_and_the_run_finishes_each_step_once():
    # Step 2 waits until the test lets it go on: the worker is killed while it waits. (A
    # sequence could not tell attempts apart: a crash may lose an uncommitted nextval.)
    with connect() as c:
        c.execute("CREATE TABLE go_on (x int)")
        c.execute("GRANT SELECT ON go_on TO etl")
        c.execute("""SELECT workflow.define('crashy', ARRAY[
            $$INSERT INTO effects (run, step) VALUES ('crashy', 'one')$$,
            $$INSERT INTO effects (run, step) VALUES ('crashy', 'two');
              DO 'BEGIN WHILE NOT EXISTS (SELECT FROM go_on) LOOP PERFORM pg_sleep(0.05); END LOOP; END'$$,
            $$INSERT INTO effects (run, step) VALUES ('crashy', 'three') RETURNING 3$$],
            run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'crashy', NULL, 'crashy-1')")
    pid = wait_until(lambda: one("""SELECT pid FROM pg_stat_activity
                                     WHERE backend_type = 'pg_workflow sql worker' AND wait_event = 'PgSleep'"""),
                     what="a SQL worker inside step 2")
    os.kill(pid, signal.SIGKILL)  # the postmaster resets every process and recovers
    time.sleep(0.5)
    wait_until(lambda: one("SELECT 1"), what="the server back")
    with connect() as c:
        c.execute("INSERT INTO go_on VALUES (1)")
    status, output, _, recovered = wait_ended("crashy-1")
    assert (status, output) == ("SUCCESS", 3)
    assert recovered == 1  # taken back once, by the restarted worker
    assert effects("crashy") == [("one", 1), ("three", 1), ("two", 1)]
    wait_until(lambda: len(sql_workers()) == 2, what="both SQL workers back")


def test_cancel_stops_a_long_step_now_and_its_work_rolls_back():
    with connect() as c:
        c.execute("""SELECT workflow.define('long', ARRAY[
            $$INSERT INTO effects (run, step) VALUES ('long', 'one'); SELECT pg_sleep(600)$$],
            run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'long', NULL, 'long-1')")
    wait_until(lambda: one("""SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_workflow sql worker'
                               AND wait_event = 'PgSleep' AND query LIKE 'pg_workflow: step %%, workflow long-1'"""),
               what="the long step to run")
    with connect() as c:  # a cancel that rolls back interrupts nothing
        with c.transaction():
            c.execute("SELECT workflow.cancel('long-1')")
            raise psycopg.Rollback()
    time.sleep(0.5)
    assert run_state("long-1")[0] == "PENDING"
    assert one("""SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_workflow sql worker'
                   AND wait_event = 'PgSleep'""") == 1
    assert one("SELECT workflow.cancel('long-1')") is True
    wait_until(lambda: one("""SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_workflow sql worker'
                               AND wait_event = 'PgSleep'"""), what="the step to stop")
    assert run_state("long-1")[0] == "CANCELLED"
    assert effects("long") == []
    assert one("SELECT count(*) FROM workflow.steps WHERE workflow_id = 'long-1'") == 0


def test_a_started_run_keeps_its_steps_when_the_workflow_is_redefined():
    with connect() as c:
        c.execute("CREATE TABLE go_on_2 (x int)")
        c.execute("GRANT SELECT ON go_on_2 TO etl")
        c.execute("""SELECT workflow.define('versioned', ARRAY[
            $$DO 'BEGIN WHILE NOT EXISTS (SELECT FROM go_on_2) LOOP PERFORM pg_sleep(0.05); END LOOP; END'$$,
            $$SELECT 'old'$$], run_as => 'etl')""")
        c.execute("SELECT workflow.enqueue('default', 'versioned', NULL, 'versioned-1')")
    wait_until(lambda: one("""SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_workflow sql worker'
                               AND query LIKE 'pg_workflow: step %%, workflow versioned-1'"""),
               what="step 1 to run")
    with connect() as c:
        c.execute("SELECT workflow.define('versioned', ARRAY[$$SELECT 'new 1'$$, $$SELECT 'new'$$], run_as => 'etl')")
        c.execute("INSERT INTO go_on_2 VALUES (1)")
        c.execute("SELECT workflow.enqueue('default', 'versioned', NULL, 'versioned-2')")
    assert wait_ended("versioned-1")[:2] == ("SUCCESS", "old")
    assert wait_ended("versioned-2")[:2] == ("SUCCESS", "new")


def test_a_step_cannot_leave_code_to_run_as_the_worker_after_it():
    """What would run at COMMIT, after the worker's own user is back (a deferred trigger, a
    cursor WITH HOLD), and temporary objects, are refused inside a step: it fails with 42501."""
    with connect() as c:
        c.execute("CREATE SCHEMA IF NOT EXISTS etl_space AUTHORIZATION etl")
    with psycopg.connect(host=DIR, port=SPORT, user="etl", dbname="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE etl_space.trap (x int)")
        c.execute("""CREATE FUNCTION etl_space.climb() RETURNS trigger LANGUAGE plpgsql AS
                     'BEGIN ALTER ROLE etl SUPERUSER; RETURN NULL; END'""")
        c.execute("""CREATE CONSTRAINT TRIGGER climb AFTER INSERT ON etl_space.trap
                     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION etl_space.climb()""")
    with connect() as c:
        for name, step in [("deferred", "INSERT INTO etl_space.trap VALUES (1)"),
                           ("held", "DECLARE held CURSOR WITH HOLD FOR SELECT 1"),
                           ("temp", "CREATE TEMP TABLE scratch (x int)")]:
            c.execute("SELECT workflow.define(%s, ARRAY[%s], max_attempts => 1, run_as => 'etl')", (name, step))
            c.execute("SELECT workflow.enqueue('default', %s, NULL, %s)", (name, name + "-1"))
    for name in ("deferred", "held", "temp"):
        status, _, error, _ = wait_ended(name + "-1")
        assert status == "ERROR" and error["sqlstate"] == "42501", (name, error)
    assert one("SELECT rolsuper FROM pg_roles WHERE rolname = 'etl'") is False
    assert one("SELECT count(*) FROM etl_space.trap") == 0
