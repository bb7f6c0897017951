"""ALTER EXTENSION pg_workflow UPDATE from the frozen 0.1.0: the data stays and works, and the
upgraded schema is exactly a fresh install's (pg_dump, init privileges, config dump tables)."""
import difflib
import os
import re
import subprocess

import psycopg
import pytest

from conftest import DATA_DIR, PORT, connect, counts, one, recreate_database

OLD, FRESH = "upgrade_old", "upgrade_fresh"
PG_DUMP = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin") + "/pg_dump"  # the server's own version
def fill_through_the_0_1_0_api(db):
    """0.1.0 declarations served by the new .so, except start and enqueue: the new library's
    statements for those write 0.2.0's columns (app_version, parent_id), so their rows are
    inserted here as 0.1.0 wrote them. (The README says: run ALTER EXTENSION UPDATE right
    after installing a new build.)"""
    db.execute("SELECT workflow.register_executor('ex-1', 'v0.1.0')")
    started = ("INSERT INTO workflow.run (workflow_id, name, status, executor_id, input, started_at) "
               "VALUES (%s, 'checkout', 'PENDING', 'ex-1', %s, now())")
    db.execute(started, ("done", '{"cart": 1}'))
    db.execute("SELECT workflow.step_put('done', 1, 'reserve', '{\"ok\": true}')")
    db.execute("SELECT workflow.finish('done', '\"paid\"')")
    db.execute(started, ("open", '{"cart": 2}'))
    db.execute("SELECT workflow.step_put('open', 1, 'reserve', '{\"ok\": true}')")
    db.execute("SELECT workflow.step_put('open', 2, 'charge', NULL, '{\"message\": \"declined\"}')")
    db.execute("SELECT workflow.set_event('open', 3, 'progress', '\"half\"')")
    db.execute("SELECT workflow.create_queue('limited', 2, 1, 10, '1 minute', 1)")
    db.execute("SELECT workflow.alter_queue('default', 5, 2)")
    db.execute("""WITH r AS (INSERT INTO workflow.run (workflow_id, name, status, queue, input)
                             VALUES ('job-now', 'job', 'ENQUEUED', 'limited', '{"n": 1}')
                             RETURNING workflow_id, queue, priority, created_at)
                  INSERT INTO workflow.ready (workflow_id, queue, priority, created_at) SELECT * FROM r""")
    db.execute("INSERT INTO workflow.run (workflow_id, name, status, queue, available_at) "
               "VALUES ('job-later', 'job', 'DELAYED', 'default', now() + interval '1 hour')")
    db.execute("SELECT workflow.send('open', '{\"n\": 1}')")
    for _ in range(2):  # the second send is a duplicate: the key delivers once
        db.execute("SELECT workflow.send('open', '{\"n\": 2}', 'topic', 'idem-1')")
    db.execute("SELECT workflow.schedule('nightly', '0 3 * * *', 'report', '{\"k\": 1}')")
    assert one(db, "SELECT workflow.gc('100 years')") == 0  # 0.1.0's gc, a function (symbol wf_gc)


@pytest.fixture(scope="module")
def upgraded():
    """upgrade_old: created at 0.1.0, filled, then updated in the same session, as a user would."""
    recreate_database(OLD, "0.1.0")
    with connect(OLD) as db:
        fill_through_the_0_1_0_api(db)
        before = counts(db)
        assert before["message"] == 2 and before["ready"] == 1
        db.execute("ALTER EXTENSION pg_workflow UPDATE")
        assert one(db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_workflow'") == \
            one(db, "SELECT default_version FROM pg_available_extensions WHERE name = 'pg_workflow'")
        assert counts(db) == before
    yield
    with connect("postgres") as c:
        for name in [OLD, FRESH]:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_data_survives_the_upgrade_and_works(upgraded):
    with connect(OLD) as db:
        assert db.execute("SELECT name, concurrency, worker_concurrency, rate_limit, rate_period::text, "
                          "partition_concurrency FROM workflow.queues ORDER BY name").fetchall() == [
            ("default", 5, 2, None, None, None), ("limited", 2, 1, 10, "00:01:00", 1)]
        # step_put's new executor_id argument fences a run that 0.1.0 started.
        db.execute("SELECT workflow.step_put('open', 4, 'ship', '{}', NULL, 'ex-1')")
        db.execute("SELECT workflow.register_executor('ex-2')")
        with pytest.raises(psycopg.Error) as fenced:
            db.execute("SELECT workflow.step_put('open', 5, 'ship', '{}', NULL, 'ex-2')")
        assert fenced.value.sqlstate == "WF007"
        assert db.execute("SELECT workflow_id FROM workflow.dequeue('limited', 'ex-1')").fetchall() == [("job-now",)]
        assert one(db, "SELECT status FROM workflow.runs WHERE workflow_id = 'job-later'") == "DELAYED"
        # Messages sent before the upgrade are received after it, in order, per topic.
        db.execute("SELECT workflow.send('open', '{\"n\": 3}')")
        assert one(db, "SELECT workflow.recv('open', 5, NULL, '60 s', 'ex-1')") == {"n": 1}
        assert one(db, "SELECT workflow.recv('open', 6, 'topic', '60 s', 'ex-1')") == {"n": 2}
        assert one(db, "SELECT workflow.recv('open', 7, NULL, '60 s', 'ex-1')") == {"n": 3}
        assert one(db, "SELECT workflow.get_event('open', 'progress', '60 s')") == "half"
        assert one(db, "SELECT workflow.finish('open', '\"shipped\"', 'ex-1')") == "SUCCESS"
        # gc is a procedure now: it removes both finished runs and everything they own.
        assert one(db, "CALL workflow.gc('0 s')") == 2
        assert one(db, "SELECT count(*) FROM workflow.checkpoint WHERE workflow_id IN ('done', 'open')") == 0
        assert one(db, "SELECT count(*) FROM workflow.message") == 0
        # The roles exist and hold their grants; a role without table privileges works through
        # the functions, which are SECURITY DEFINER now.
        assert one(db, "SELECT count(*) FROM pg_roles WHERE rolname IN "
                       "('workflow_executor', 'workflow_reader', 'workflow_admin')") == 3
        step_put = "workflow.step_put(text, int, text, jsonb, jsonb, text)"
        assert db.execute(
            "SELECT has_function_privilege('workflow_executor', %s, 'EXECUTE'),"
            "       has_function_privilege('workflow_reader', %s, 'EXECUTE'),"
            "       has_function_privilege('public', %s, 'EXECUTE'),"
            "       has_function_privilege('workflow_admin', 'workflow.gc(interval, bigint)', 'EXECUTE'),"
            "       has_function_privilege('workflow_admin', 'workflow.gc_batch(interval)', 'EXECUTE'),"
            "       has_table_privilege('workflow_reader', 'workflow.schedules', 'SELECT'),"
            "       has_table_privilege('workflow_reader', 'workflow.schedule', 'SELECT'),"
            "       pg_has_role('workflow_admin', 'workflow_executor', 'MEMBER')",
            (step_put, step_put, step_put)).fetchone() == (True, False, False, True, True, True, False, True)
        db.execute("SET ROLE workflow_executor")
        db.execute("SELECT workflow.heartbeat('ex-1')")
        db.execute("RESET ROLE")


# pg_dump lines that name where and when an object was made, not what it is. Each rule rewrites
# only that part, so a line that also says something real still takes part in the comparison.
NORMALIZE = [
    # The \restrict key is random per dump (psql's guard against injected meta-commands).
    (r"^\\(un)?restrict \S+$", r"\\\1restrict KEY"),
    # binary_upgrade_set_next_{pg_type,array_pg_type,heap_pg_class,toast_pg_class,index_pg_class}_oid,
    # *_relfilenode and attribute_versions pass OIDs, file numbers and LSNs of the next object.
    # (binary_upgrade_set_record_init_privs stays: it marks which GRANTs are initial privileges.)
    (r"^SELECT pg_catalog\.binary_upgrade_set_next_\w+\(.*\);\n", ""),
    # Each table's frozen transaction ids, and its toast table's OID.
    (r"relfrozenxid = '\d+', relminmxid = '\d+'", "relfrozenxid = 'XID', relminmxid = 'MXID'"),
    (r"WHERE oid = '\d+';", "WHERE oid = 'OID';"),
    # A sequence's position is data (upgrade_old has sent messages); binary upgrade dumps it anyway.
    (r"setval\('([\w.]+)', \d+, (true|false)\)", r"setval('\1', N, B)"),
    # The config dump tables' OIDs and conditions, as arrays in registration order: compared
    # by name, as a set, in CATALOG below.
    (r"(binary_upgrade_create_empty_extension\(.*?, )'\{[\d,]*\}', '\{.*?\}'", r"\1'{OIDS}', '{CONDITIONS}'"),
]


def schema_dump(dbname):
    dump = subprocess.run([PG_DUMP, "-h", DATA_DIR, "-p", str(PORT), "-U", "postgres", "--schema-only",
                           "--binary-upgrade", dbname], check=True, capture_output=True, text=True).stdout
    for pattern, replacement in NORMALIZE:
        dump = re.sub(pattern, replacement, dump, flags=re.M)
    return dump.splitlines(keepends=True)


# Every member of the extension with its ACL, the schema's ACL (it is not a member), every
# initial privilege that the scripts recorded, and the config dump registrations as a set:
# their array order is only the order of registration, which pg_dump does not use.
CATALOG = {
    "members": """
        SELECT pg_describe_object(d.classid, d.objid, 0), coalesce(c.relacl, p.proacl)::text
          FROM pg_depend d
          LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
          LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_workflow')
         ORDER BY 1""",
    "schema_acl": "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'workflow'",
    "init_privs": """
        SELECT pg_describe_object(classoid, objoid, objsubid), initprivs::text
          FROM pg_init_privs WHERE privtype = 'e' ORDER BY 1, 2""",
    "config_dump": """
        SELECT c.config::regclass::text, c.condition
          FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(config, condition)
         WHERE e.extname = 'pg_workflow' ORDER BY 1""",
}


def catalog_lines(dbname):
    with connect(dbname) as db:
        return [f"{name}: {row}\n" for name, sql in CATALOG.items() for row in db.execute(sql).fetchall()]


def test_the_upgraded_schema_is_a_fresh_install(upgraded):
    recreate_database(FRESH, "default")
    for what, read in [("pg_dump --schema-only --binary-upgrade", schema_dump), ("catalogs", catalog_lines)]:
        old, fresh = read(OLD), read(FRESH)
        if old != fresh:
            diff = "".join(difflib.unified_diff(old, fresh, f"{OLD} (0.1.0 + UPDATE)", f"{FRESH} (default version)"))
            pytest.fail(f"{what} differ:\n{diff}")
