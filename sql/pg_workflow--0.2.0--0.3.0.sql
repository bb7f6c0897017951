-- pg_workflow 0.2.0 -> 0.3.0. Every schema change since 0.2.0 lands here in the same commit as
-- the change itself; tests/integration/test_upgrade.py shows upgraded = fresh (pg_dump -s).
\echo Use "ALTER EXTENSION pg_workflow UPDATE TO '0.3.0'" to load this file. \quit

-- SQL workflows (define, the SQL workers) ----------------------------------------------
-- SQL workflows: workflows whose steps are SQL statements, run by the server's SQL workers
-- as a role that is never a superuser. define() replaces a definition; runs keep the one
-- they started with (sql_run).
CREATE TABLE workflow.sql_workflow (
    name         text COLLATE "C" PRIMARY KEY,
    steps        text[] NOT NULL,
    max_attempts int NOT NULL,        -- attempts per step
    backoff      interval NOT NULL,   -- before the 2nd attempt; doubles after each failure
    timeout      interval,            -- the runs' timeout when enqueue gives none
    run_as       regrole NOT NULL,    -- regrole: follows a rename, dumps as the role's name
    defined_by   regrole NOT NULL,    -- who defined it; must still be able to SET ROLE run_as
    defined_at   timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('workflow.sql_workflow', '');

-- The definition a SQL run executes, copied at its first claim, and the failures of the step
-- it is on. resume() drops the copy, so a resumed run takes the current definition.
CREATE TABLE workflow.sql_run (
    workflow_id  text COLLATE "C" PRIMARY KEY,
    steps        text[] NOT NULL,
    max_attempts int NOT NULL,
    backoff      interval NOT NULL,
    run_as       regrole NOT NULL,
    defined_by   regrole NOT NULL,
    failed_step  int,                 -- the step whose failed attempts `failures` counts
    failures     int NOT NULL DEFAULT 0
);
SELECT pg_catalog.pg_extension_config_dump('workflow.sql_run', '');

-- SQL runs are marked app_version = 'pg_workflow:sql' (only SQL workers claim them). The SQL
-- workers find the queues that hold some, and claim them in the queue's order, through this
-- index: a backlog of application runs ahead of them in ready_order is never walked.
CREATE INDEX ready_sql ON workflow.ready (queue, priority, created_at, workflow_id)
    WHERE app_version = 'pg_workflow:sql';

-- sql_workflow.rs -----------------------------------------------------------------------

CREATE FUNCTION workflow.define(name text, steps text[], max_attempts int DEFAULT 3,
                                backoff interval DEFAULT '10 s', timeout interval DEFAULT NULL,
                                run_as text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'wf_define';
-- SECURITY INVOKER on purpose: who may run steps as whom is the current user's to decide
-- (src/sql_workflow.rs); only its write runs as the extension's owner.
COMMENT ON FUNCTION workflow.define(text, text[], int, interval, interval, text) IS
  'Creates or replaces a SQL workflow: steps run by the server''s SQL workers as run_as (default: the caller; never a superuser), $1 = input, $2 = earlier outputs.';

CREATE FUNCTION workflow.undefine(name text)
RETURNS bool LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_undefine';
COMMENT ON FUNCTION workflow.undefine(text) IS
  'Removes a SQL workflow; false if there was none. Started runs finish with the steps they started with.';

CREATE VIEW workflow.sql_workflows AS
SELECT name, steps, pg_catalog.array_length(steps, 1) AS step_count, max_attempts, backoff, timeout,
       run_as, defined_by, defined_at
FROM workflow.sql_workflow;
COMMENT ON VIEW workflow.sql_workflows IS 'SQL workflows: the steps the server''s SQL workers run, and as whom.';

REVOKE ALL ON FUNCTION workflow.define(text, text[], int, interval, interval, text), workflow.undefine(text) FROM PUBLIC;
REVOKE ALL ON workflow.sql_workflow, workflow.sql_run, workflow.sql_workflows FROM PUBLIC;

-- SQL workflows: admins define them, readers see them.
GRANT SELECT ON workflow.sql_workflows TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.define(text, text[], int, interval, interval, text),
    workflow.undefine(text)
  TO workflow_admin;

-- schedule options (overlap, catch_up) ----------------------------------------------------
-- schema.sql: the options and what they remember. The columns are filled before their
-- defaults are set, so that no column keeps a "missing value" that a fresh install lacks.
ALTER TABLE workflow.schedule
    ADD COLUMN overlap text, ADD COLUMN catch_up text, ADD COLUMN catch_up_limit int,
    ADD COLUMN buffered_fire_at timestamptz, ADD COLUMN skipped_fires bigint,
    ADD COLUMN last_skipped_at timestamptz;
UPDATE workflow.schedule SET overlap = 'allow', catch_up = 'latest', catch_up_limit = 100, skipped_fires = 0;
ALTER TABLE workflow.schedule
    ALTER COLUMN overlap SET DEFAULT 'allow', ALTER COLUMN overlap SET NOT NULL,
    ALTER COLUMN catch_up SET DEFAULT 'latest', ALTER COLUMN catch_up SET NOT NULL,
    ALTER COLUMN catch_up_limit SET DEFAULT 100, ALTER COLUMN catch_up_limit SET NOT NULL,
    ALTER COLUMN skipped_fires SET DEFAULT 0, ALTER COLUMN skipped_fires SET NOT NULL;

-- views.sql
CREATE OR REPLACE VIEW workflow.schedules AS
SELECT name, cron, timezone, workflow_name, queue, paused, next_fire_at, last_fired_at,
       last_workflow_id, input, created_at, updated_at, last_error, last_error_at,
       overlap, catch_up, catch_up_limit, buffered_fire_at, skipped_fires, last_skipped_at
FROM workflow.schedule;
COMMENT ON VIEW workflow.schedules IS
  'Cron schedules, their next fire time, the last run they fired, the last fire that failed, their overlap and catch_up options, a buffered fire, and the fires that overlap skipped.';

-- api.sql: schedule takes overlap, catch_up and catch_up_limit. A new argument is a new
-- signature: the old one goes first. privileges.sql: the same grants as a fresh install.
DROP FUNCTION workflow.schedule(text, text, text, jsonb, text, text);
CREATE FUNCTION workflow.schedule(name text, cron text, workflow_name text, input jsonb DEFAULT NULL,
                                  queue text DEFAULT 'default', timezone text DEFAULT 'UTC',
                                  overlap text DEFAULT 'allow', catch_up text DEFAULT 'latest',
                                  catch_up_limit int DEFAULT 100)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_schedule';
COMMENT ON FUNCTION workflow.schedule(text, text, text, jsonb, text, text, text, text, int) IS
  'Creates or replaces a cron schedule (5 fields, 6 with leading seconds, or @hourly/@daily/...; IANA time zone); overlap: allow, skip or buffer_one; catch_up: latest or all (at most catch_up_limit, 1 to 1000); returns its next fire time.';
REVOKE ALL ON FUNCTION workflow.schedule(text, text, text, jsonb, text, text, text, text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION workflow.schedule(text, text, text, jsonb, text, text, text, text, int) TO workflow_admin;

-- start() returns the run's stored input (run_input): a run claimed again replays with the
-- input it was first started with, whatever this call passed.
DROP FUNCTION workflow.start(text, jsonb, text, text, interval, text);
CREATE FUNCTION workflow.start(name text, input jsonb DEFAULT NULL,
                               INOUT workflow_id text DEFAULT NULL,
                               executor_id text DEFAULT NULL, timeout interval DEFAULT NULL,
                               parent_id text DEFAULT NULL,
                               OUT status text, OUT output jsonb, OUT error jsonb,
                               OUT last_step int, OUT claimed bool, OUT run_input jsonb)
RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_start';
COMMENT ON FUNCTION workflow.start(text, jsonb, text, text, interval, text) IS
  'Starts a run (of the executor''s app_version; a child of parent_id), or returns the existing one with that id; claimed = true means: execute the body now, with run_input (the first start''s input wins).';
REVOKE ALL ON FUNCTION workflow.start(text, jsonb, text, text, interval, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION workflow.start(text, jsonb, text, text, interval, text) TO workflow_executor;

-- pgwf (issue 12) -------------------------------------------------------------------------
-- schema.sql: runs newest first, read a page at a time (pgwf runs, the dashboard's runs
-- page, filtered or not). One index only: every index on run costs every start and finish.
CREATE INDEX run_created ON workflow.run (created_at);

-- views.sql: a run's events, for readers and the dashboard.
CREATE VIEW workflow.events AS
SELECT workflow_id, key, value, updated_at
FROM workflow.event;
COMMENT ON VIEW workflow.events IS 'The latest value of every event key that a workflow has set.';

-- privileges.sql: readers read it.
REVOKE ALL ON workflow.events FROM PUBLIC;
GRANT SELECT ON workflow.events TO workflow_reader;

-- stats (issue 12) ------------------------------------------------------------------------
-- api.sql: the counters and their reset (src/stats.rs); views.sql: workflow.stats;
-- privileges.sql: the same grants as a fresh install. No table changes.

CREATE FUNCTION workflow.stats_counters(OUT name text, OUT value bigint, OUT stats_reset timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE SECURITY DEFINER ROWS 10 AS 'MODULE_PATHNAME', 'wf_stats_counters';
COMMENT ON FUNCTION workflow.stats_counters() IS
  'This database''s counters of committed events since the server started or stats_reset(); NULL without shared_preload_libraries. Read them in workflow.stats.';

CREATE FUNCTION workflow.stats_reset()
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_stats_reset';
COMMENT ON FUNCTION workflow.stats_reset() IS
  'Zeroes this database''s workflow.stats counters (not the gauges) and returns the reset time; NULL without shared_preload_libraries.';

-- views.sql
-- One row per figure: the counters of committed events (kind 'counter', since stats_reset),
-- then the gauges, read from the tables now (kind 'gauge', per queue where queue is set).
CREATE VIEW workflow.stats AS
WITH ready AS (SELECT queue, count(*) AS n, min(created_at) AS oldest FROM workflow.ready GROUP BY queue),
     delayed AS (SELECT queue, count(*) AS n FROM workflow.run WHERE status = 'DELAYED' GROUP BY queue),
     pending AS (SELECT queue, count(*) AS n FROM workflow.run WHERE status = 'PENDING' GROUP BY queue),
     queues AS (SELECT name::text AS queue FROM workflow.queue)
SELECT c.name, 'counter'::text AS kind, NULL::text AS queue, c.value::float8 AS value, c.stats_reset
  FROM workflow.stats_counters() c
UNION ALL
SELECT g.name, 'gauge', g.queue, g.value, NULL
  FROM (SELECT 'runs_enqueued' AS name, q.queue, coalesce(r.n, 0)::float8 AS value
          FROM queues q LEFT JOIN ready r ON r.queue = q.queue
        UNION ALL
        SELECT 'oldest_enqueued_age_seconds', q.queue,
               coalesce(extract(epoch FROM now() - r.oldest), 0)::float8
          FROM queues q LEFT JOIN ready r ON r.queue = q.queue
        UNION ALL
        SELECT 'runs_delayed', q.queue, coalesce(d.n, 0)::float8
          FROM queues q LEFT JOIN delayed d ON d.queue = q.queue
        UNION ALL  -- runs started without a queue (start()) are PENDING under queue NULL
        SELECT 'runs_pending', q.queue, coalesce(p.n, 0)::float8
          FROM (SELECT queue FROM queues UNION ALL SELECT NULL) q
          LEFT JOIN pending p ON p.queue IS NOT DISTINCT FROM q.queue
        UNION ALL
        SELECT 'executors_live', NULL, count(*) FILTER (WHERE e.last_heartbeat
                 + coalesce(current_setting('workflow.executor_timeout', true), '30s')::interval > now())::float8
          FROM workflow.executor e
        UNION ALL
        SELECT 'executors_registered', NULL, count(*)::float8 FROM workflow.executor) g;
COMMENT ON VIEW workflow.stats IS
  'Metrics: counters of committed events since stats_reset (NULL without shared_preload_libraries; reset at server restart) and gauges over the tables, one row each (README, "Metrics").';

REVOKE ALL ON FUNCTION workflow.stats_counters(), workflow.stats_reset() FROM PUBLIC;
REVOKE ALL ON workflow.stats FROM PUBLIC;
GRANT SELECT ON workflow.stats TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.stats_counters() TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.stats_reset() TO workflow_admin;
