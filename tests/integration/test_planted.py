"""The planted operator attack. Anyone with CREATE on a schema that a superuser's search_path
puts first can plant a lookalike of an operator or function that pg_workflow's SQL uses: an
exact-signature copy (it wins when the schema comes before pg_catalog), or a better match than
pg_catalog's (bigint * interval has no exact pg_catalog operator). The extension runs its SQL as
its owner, a superuser, so a planted call would run attacker code with superuser rights.

Here every such name is planted in public, each lookalike logging its calls; a superuser session
with search_path = public, pg_catalog calls every API function, and the scheduler worker, whose
database has that search_path too, fires a schedule and recovers an expired executor's run. The
log must stay empty. Not plantable from SQL: row_number() (a window function, C only) and
coalesce/extract/casts (grammar or catalogs, not name lookup)."""
import time

import psycopg
import pytest
from psycopg import sql

from conftest import connect, one, show, wait_until

WORKER_DB = "postgres"  # the scratch servers' workflow.database
PLANTED_PATH = "public, pg_catalog"

# (operator, left, right, result, body computing the real result from a and b)
OPERATORS = [
    ("*", "bigint", "interval", "interval", None),
    ("*", "double precision", "interval", "interval", None),
    ("*", "numeric", "integer", "numeric", None),
    ("+", "timestamptz", "interval", "timestamptz", None),
    ("+", "integer", "integer", "integer", None),
    ("+", "bigint", "bigint", "bigint", None),
    ("-", "timestamptz", "interval", "timestamptz", None),
    ("-", "timestamptz", "timestamptz", "interval", None),
    ("#>>", "jsonb", "text[]", "text", None),
    ("#>>", "jsonb", "text", "text", "a OPERATOR(pg_catalog.->>) b"),
    ("=", "text", "text", "boolean", None),
    ("=", "integer", "integer", "boolean", None),
    ("=", "bigint", "bigint", "boolean", None),
    ("<=", "timestamptz", "timestamptz", "boolean", None),
    ("<=", "bigint", "integer", "boolean", None),
    (">", "timestamptz", "timestamptz", "boolean", None),
    (">", "interval", "interval", "boolean", None),
    (">", "integer", "integer", "boolean", None),
    ("<", "timestamptz", "timestamptz", "boolean", None),
    ("<", "integer", "integer", "boolean", None),
]

# (function, argument types, result, body): each returns what pg_catalog's would.
FUNCTIONS = [
    ("now", "", "timestamptz", "pg_catalog.now()"),
    ("clock_timestamp", "", "timestamptz", "pg_catalog.clock_timestamp()"),
    ("hashtext", "text", "integer", "pg_catalog.hashtext($1)"),
    ("pg_advisory_xact_lock", "integer, integer", "void", "pg_catalog.pg_advisory_xact_lock($1, $2)"),
    ("pg_advisory_xact_lock", "bigint", "void", "pg_catalog.pg_advisory_xact_lock($1)"),
    ("to_jsonb", "timestamptz", "jsonb", "pg_catalog.to_jsonb($1)"),
    ("to_regclass", "text", "regclass", "pg_catalog.to_regclass($1)"),
    ("generate_series", "integer, integer", "SETOF integer", "pg_catalog.generate_series($1, $2)"),
    ("current_setting", "text, boolean", "text", "pg_catalog.current_setting($1, $2)"),
]

# (aggregate, arguments, state type, initial state, step body): plpgsql, logging in the step and
# in the final function (which runs for zero rows too).
AGGREGATES = [
    ("count", "*", "bigint", "0", "RETURN s OPERATOR(pg_catalog.+) 1;"),
    ("max", "v integer", "integer", None,
     "IF v IS NULL THEN RETURN s; END IF; IF s IS NULL OR v OPERATOR(pg_catalog.>) s THEN RETURN v; END IF; RETURN s;"),
    ("min", "v timestamptz", "timestamptz", None,
     "IF v IS NULL THEN RETURN s; END IF; IF s IS NULL OR v OPERATOR(pg_catalog.<) s THEN RETURN v; END IF; RETURN s;"),
    ("array_agg", "v text", "text[]", None, "RETURN pg_catalog.array_append(s, v);"),
    ("jsonb_object_agg", "k text, v bigint", "jsonb", None,
     "RETURN coalesce(s, '{}') OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(k, v);"),
]


def plant(db):
    db.execute("CREATE TABLE public.planted_calls (name text)")
    log = "INSERT INTO public.planted_calls VALUES ({})"
    for n, (op, left, right, result, body) in enumerate(OPERATORS):
        label = sql.quote(f"{op}({left}, {right})")
        db.execute(f"""CREATE FUNCTION public.planted_op_{n}(a {left}, b {right}) RETURNS {result}
                       LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
                         {log.format(label)};
                         SELECT {body or f'a OPERATOR(pg_catalog.{op}) b'};
                       $$""")
        db.execute(f"CREATE OPERATOR public.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                   f"FUNCTION = public.planted_op_{n})")
    for name, args, result, body in FUNCTIONS:
        label = sql.quote(f"{name}({args})")
        db.execute(f"""CREATE FUNCTION public.{name}({args}) RETURNS {result}
                       LANGUAGE sql VOLATILE SECURITY INVOKER AS $$
                         {log.format(label)};
                         SELECT {body};
                       $$""")
    for name, args, stype, init, step in AGGREGATES:
        types = "*" if args == "*" else ", ".join(a.split(" ", 1)[1] for a in args.split(", "))
        label = sql.quote(f"{name}({types})")
        inputs = "" if args == "*" else ", " + args
        db.execute(f"""CREATE FUNCTION public.planted_{name}_step(s {stype}{inputs}) RETURNS {stype}
                       LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
                       BEGIN {log.format(label)}; {step} END $$""")
        db.execute(f"""CREATE FUNCTION public.planted_{name}_final(s {stype}) RETURNS {stype}
                       LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
                       BEGIN {log.format(label)}; RETURN s; END $$""")
        db.execute(f"CREATE AGGREGATE public.{name}({types}) (SFUNC = public.planted_{name}_step, STYPE = {stype}, "
                   f"FINALFUNC = public.planted_{name}_final{f', INITCOND = {init!r}' if init else ''})")


def unplant(db):
    """Every function whose body logs into planted_calls; CASCADE takes their operators and aggregates."""
    for (fn,) in db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = "
                            "'public'::regnamespace AND p.prosrc LIKE '%planted_calls%'").fetchall():
        db.execute(f"DROP FUNCTION IF EXISTS {fn} CASCADE")
    db.execute("DROP TABLE IF EXISTS public.planted_calls")


def clean():
    """A session that resolves names in pg_catalog only, for setup, polling and checks."""
    return connect(WORKER_DB, options="-c search_path=pg_catalog")


def planted():
    db = connect(WORKER_DB)
    db.execute(f"SET search_path = {PLANTED_PATH}")  # planted first
    return db


def schedulers(db):
    return [pid for (pid,) in db.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                                         "'pg_workflow scheduler' AND datname = current_database()").fetchall()]


def restart_schedulers():
    """Database settings reach a worker when it connects: terminate them; they come back in 1 s."""
    with clean() as db:
        # After CREATE EXTENSION, the launcher starts them within a second or so.
        old = wait_until(lambda: schedulers(db), what="a scheduler worker to serve this database")
        for pid in old:
            db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: len(schedulers(db)) == len(old) and not set(schedulers(db)) & set(old),
                   what="the scheduler workers to restart")


def reset(db):
    db.execute("ALTER SYSTEM RESET workflow.executor_timeout")
    db.execute("SELECT pg_reload_conf()")
    db.execute(f"ALTER DATABASE {WORKER_DB} RESET search_path")
    db.execute("DROP EXTENSION IF EXISTS pg_workflow")
    unplant(db)


@pytest.fixture
def planted_database():
    try:
        with clean() as db:
            assert db.execute("SHOW workflow.database").fetchone()[0] == WORKER_DB
            reset(db)  # leftovers of an interrupted run
            db.execute("CREATE EXTENSION pg_workflow")
            plant(db)
            # The worker gets the planted search path too, at its next connection.
            db.execute(f"ALTER DATABASE {WORKER_DB} SET search_path = {PLANTED_PATH}")
        restart_schedulers()
        yield
    finally:
        with clean() as db:
            reset(db)  # drops the extension: the schedulers leave, and come back with it


def calls():
    with clean() as db:
        return [name for (name,) in db.execute("SELECT name FROM public.planted_calls").fetchall()]


def expect_error(db, statement):
    with pytest.raises(psycopg.Error):
        db.execute(statement)


def call_every_api_function(db):
    """Each function with valid arguments, through its main paths; a few refusals too, since
    finding out why a call failed runs statements of its own."""
    db.execute("SELECT workflow.register_executor('pl-exec', 'v1')")
    db.execute("SELECT workflow.register_executor('pl-other')")
    db.execute("SELECT workflow.heartbeat('pl-exec')")
    # start, steps, replay, a refused takeover, a start without id.
    assert one(db, "SELECT claimed FROM workflow.start('pl', '{\"a\": 1}', 'pl-1', 'pl-exec')") is True
    db.execute("SELECT workflow.step_put('pl-1', 1, 's1', '{\"x\": 1}', NULL, 'pl-exec')")
    assert one(db, "SELECT found FROM workflow.step_get('pl-1', 1, 's1')") is True
    assert one(db, "SELECT last_step FROM workflow.start('pl', NULL, 'pl-1', 'pl-exec')") == 1
    assert one(db, "SELECT claimed FROM workflow.start('pl', NULL, 'pl-1', 'pl-other')") is False
    db.execute("SELECT * FROM workflow.start('pl')")
    expect_error(db, "SELECT workflow.step_put('pl-1', 2, 's2', NULL, NULL, 'pl-other')")
    # Messages, events, sleep: first calls, replays and timeouts.
    db.execute("SELECT workflow.send('pl-1', '\"m1\"')")
    db.execute("SELECT workflow.send('pl-1', '\"m2\"', 'tp', 'key-1')")
    db.execute("SELECT workflow.send('pl-1', '\"m2\"', 'tp', 'key-1')")
    expect_error(db, "SELECT workflow.send('pl-nobody', '1')")
    assert one(db, "SELECT workflow.recv('pl-1', 2, NULL, '0 s', 'pl-exec')") == "m1"
    assert one(db, "SELECT workflow.recv('pl-1', 3, 'tp', '5 s')") == "m2"
    assert one(db, "SELECT workflow.recv('pl-1', 2, NULL, '0 s', 'pl-exec')") == "m1"
    assert one(db, "SELECT workflow.recv('pl-1', 4, 'none', '100 ms')") is None
    db.execute("SELECT workflow.set_event('pl-1', 5, 'k', '1', 'pl-exec')")
    db.execute("SELECT workflow.set_event('pl-1', 5, 'k', '1', 'pl-exec')")
    assert one(db, "SELECT workflow.get_event('pl-1', 'k', '0 s')") == 1
    assert one(db, "SELECT workflow.get_event('pl-1', 'missing', '100 ms')") is None
    first = one(db, "SELECT workflow.sleep('pl-1', 6, '1 ms', 'pl-exec')")
    assert one(db, "SELECT workflow.sleep('pl-1', 6, '1 ms', 'pl-exec')") == first
    # wait on a running and on an ended run; finish, fail, cancel, and their refusals.
    assert one(db, "SELECT status FROM workflow.wait('pl-1', '100 ms')") == "PENDING"
    assert one(db, "SELECT workflow.finish('pl-1', '\"ok\"', 'pl-exec')") == "SUCCESS"
    assert one(db, "SELECT status FROM workflow.wait('pl-1')") == "SUCCESS"
    expect_error(db, "SELECT workflow.finish('pl-1', '\"again\"')")
    db.execute("SELECT * FROM workflow.start('pl', NULL, 'pl-2')")
    assert one(db, "SELECT workflow.fail('pl-2', '{\"e\": 1}')") == "ERROR"
    db.execute("SELECT * FROM workflow.start('pl', NULL, 'pl-3', 'pl-exec')")
    assert one(db, "SELECT workflow.cancel('pl-3')") is True
    assert one(db, "SELECT workflow.cancel('pl-3')") is False
    expect_error(db, "SELECT workflow.step_put('pl-3', 1, 's1')")
    expect_error(db, "SELECT * FROM workflow.step_get('pl-3', 1, 's1')")
    # resume, then start takes the resumed run back; fork; a run past its deadline.
    assert one(db, "SELECT workflow.resume('pl-3')") == "ENQUEUED"
    expect_error(db, "SELECT workflow.resume('pl-1')")
    assert one(db, "SELECT claimed FROM workflow.start('pl', NULL, 'pl-3', 'pl-exec')") is True
    assert one(db, "SELECT workflow.fork('pl-1', 3, 'pl-fork')") == "pl-fork"
    expect_error(db, "SELECT workflow.fork('pl-1', 99)")
    db.execute("SELECT * FROM workflow.start('pl', NULL, 'pl-timeout', NULL, '10 ms')")
    time.sleep(0.2)
    expect_error(db, "SELECT workflow.step_put('pl-timeout', 1, 's1')")
    one(db, "SELECT workflow.tick()")
    # Queues: create, alter, drop, the default queue, and one of each kind of limit.
    db.execute("SELECT workflow.create_queue('pl_limited', concurrency => 2, worker_concurrency => 1)")
    db.execute("SELECT workflow.create_queue('pl_rate', rate_limit => 5, rate_period => '1 min')")
    db.execute("SELECT workflow.create_queue('pl_part', partition_concurrency => 1)")
    db.execute("SELECT workflow.create_queue('pl_plain')")
    db.execute("SELECT workflow.create_queue('pl_empty')")
    db.execute("SELECT workflow.create_queue('pl_doomed')")
    db.execute("SELECT workflow.alter_queue('pl_doomed', concurrency => 1)")
    db.execute("SELECT workflow.drop_queue('pl_doomed')")
    expect_error(db, "SELECT workflow.create_queue('default')")
    db.execute("SELECT workflow.alter_queue('default', concurrency => 50)")
    db.execute("SELECT workflow.alter_queue('default')")
    for queue, n in [("pl_limited", 3), ("pl_rate", 3)]:
        for i in range(n):
            db.execute(f"SELECT workflow.enqueue('{queue}', 'job', '{{\"i\": {i}}}', '{queue}-{i}', priority => {i})")
    for i, key in enumerate(["p1", "p1", "p2"]):
        db.execute(f"SELECT workflow.enqueue('pl_part', 'job', NULL, 'pl_part-{i}', partition_key => '{key}')")
    db.execute("SELECT workflow.enqueue('pl_plain', 'job', NULL, 'pl-dedup', deduplication_id => 'd1', "
               "timeout => '1 h')")
    assert one(db, "SELECT workflow.enqueue('pl_plain', 'job', NULL, 'pl-dedup')") == "pl-dedup"
    expect_error(db, "SELECT workflow.enqueue('pl_plain', 'job', NULL, 'pl-dedup-2', deduplication_id => 'd1')")
    expect_error(db, "SELECT workflow.enqueue('pl_nowhere', 'job')")
    assert len(db.execute("SELECT * FROM workflow.dequeue('pl_limited', 'pl-exec', 5)").fetchall()) == 1
    assert len(db.execute("SELECT * FROM workflow.dequeue('pl_rate', 'pl-exec', 2, '200 ms')").fetchall()) == 2
    assert len(db.execute("SELECT * FROM workflow.dequeue('pl_part', 'pl-exec', 5)").fetchall()) == 2
    assert db.execute("SELECT workflow_id FROM workflow.dequeue('pl_plain', 'pl-exec')").fetchall() == [("pl-dedup",)]
    assert db.execute("SELECT * FROM workflow.dequeue('pl_empty', 'pl-exec', 1, '200 ms')").fetchall() == []
    expect_error(db, "SELECT * FROM workflow.dequeue('pl_empty', 'pl-nobody')")
    # A delayed run: a waiting dequeue promotes it when it is due.
    db.execute("SELECT workflow.enqueue('pl_plain', 'job', NULL, 'pl-delayed', delay => '300 ms')")
    assert db.execute("SELECT workflow_id FROM workflow.dequeue('pl_plain', 'pl-exec', 1, '60 s')").fetchall() == [
        ("pl-delayed",)]
    # Schedules.
    db.execute("SELECT workflow.schedule('pl_paused', '0 3 * * *', 'report', '{\"k\": 1}', 'pl_plain', 'Europe/Berlin')")
    db.execute("SELECT workflow.pause_schedule('pl_paused')")
    db.execute("SELECT workflow.resume_schedule('pl_paused')")
    assert one(db, "SELECT workflow.trigger_schedule('pl_paused')").startswith("cron:pl_paused:manual:")
    expect_error(db, "SELECT workflow.drop_queue('pl_plain')")
    db.execute("SELECT workflow.unschedule('pl_paused')")
    one(db, "SELECT workflow.tick()")
    # delete, gc_batch, gc.
    assert one(db, "SELECT workflow.delete('pl-2')") is True
    assert one(db, "SELECT workflow.delete('pl-2')") is False
    expect_error(db, "SELECT workflow.delete('pl-3')")
    db.execute("SELECT workflow.gc_batch('1 h')")
    db.execute("CALL workflow.gc('0 s')")


def test_planted_lookalikes_are_never_called(planted_database):
    # The plants work: an ordinary query with this search path calls them.
    with planted() as db:
        db.execute("SELECT 2::bigint * interval '1 s', now(), 'a'::text = 'b'::text")
        db.execute("SELECT count(*) FROM (VALUES (1)) v(x)")
    assert {"*(bigint, interval)", "now()", "=(text, text)", "count(*)"} <= set(calls())
    with clean() as db:
        db.execute("TRUNCATE public.planted_calls")

    with planted() as db:
        call_every_api_function(db)
        db.execute("SELECT workflow.schedule('pl_cron', '* * * * * *', 'every_second')")
    with clean() as db:
        # The worker fires it twice (fire ids are cron:<name>:<time>; manual ones say manual).
        wait_until(lambda: one(db, "SELECT count(*) FROM workflow.run "
                                   "WHERE workflow_id LIKE 'cron:pl\\_cron:2%'") >= 2,
                   what="the worker to fire the schedule twice")
        # The worker recovers the run of an executor whose lease expired.
        db.execute("ALTER SYSTEM SET workflow.executor_timeout = '1s'")
        db.execute("SELECT pg_reload_conf()")
    wait_until(lambda: show("workflow.executor_timeout") == "1s", what="the reload")
    with planted() as db:
        db.execute("SELECT workflow.register_executor('pl-doomed')")
        db.execute("SELECT * FROM workflow.start('pl', NULL, 'pl-leased', 'pl-doomed')")
        db.execute("SELECT workflow.unschedule('pl_cron')")
    with clean() as db:
        wait_until(lambda: one(db, "SELECT status FROM workflow.run WHERE workflow_id = 'pl-leased'") == "ENQUEUED",
                   what="the worker to recover the expired executor's run")
        db.execute("ALTER SYSTEM RESET workflow.executor_timeout")
        db.execute("SELECT pg_reload_conf()")

    called = calls()
    assert called == [], f"planted lookalikes were called: {sorted(set(called))}"
