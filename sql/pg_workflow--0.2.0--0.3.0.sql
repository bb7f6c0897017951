-- pg_workflow 0.2.0 -> 0.3.0. Every schema change since 0.2.0 lands here in the same commit as
-- the change itself; tests/integration/test_upgrade.py shows upgraded = fresh (pg_dump -s).
\echo Use "ALTER EXTENSION pg_workflow UPDATE TO '0.3.0'" to load this file. \quit

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
