-- SQL workflows: define() checks everything before it stores anything, and their runs are
-- marked for the server's SQL workers. (No SQL worker serves this database: the runs here
-- stay ENQUEUED, which shows what an application executor may claim.)
\set VERBOSITY default
CREATE ROLE wf_etl;
CREATE ROLE wf_other;
CREATE ROLE wf_definer;
GRANT workflow_admin, wf_etl TO wf_definer;

SELECT workflow.define('nightly', ARRAY[
  $$SELECT count(*) FROM pg_class WHERE relname = $1->>'table'$$,
  $$SELECT jsonb_build_object('seen', $2->0)$$],
  max_attempts => 5, backoff => '10 s', timeout => '1 hour', run_as => 'wf_etl');
SELECT name, steps, step_count, max_attempts, backoff, timeout, run_as, defined_by FROM workflow.sql_workflows;

-- Every rejection names the problem, with its SQLSTATE, and stores nothing.
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'])$$);                        -- a superuser caller: 42501
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], run_as => 'postgres')$$);  -- a superuser run_as: 42501
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], run_as => 'nobody')$$);    -- 42704
SELECT try($$SELECT workflow.define('bad', ARRAY[]::text[], run_as => 'wf_etl')$$);      -- 22023
SELECT try($$SELECT workflow.define('bad', NULL, run_as => 'wf_etl')$$);                 -- 22004
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1', NULL], run_as => 'wf_etl')$$);
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1', '  -- a comment'], run_as => 'wf_etl')$$);
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1', 'SELEC 2'], run_as => 'wf_etl')$$);  -- 42601
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1; COMMIT'], run_as => 'wf_etl')$$);    -- 0A000
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], max_attempts => 0, run_as => 'wf_etl')$$);
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], backoff => '-1 s', run_as => 'wf_etl')$$);
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], timeout => '0 s', run_as => 'wf_etl')$$);
SELECT try($$SELECT workflow.define('', ARRAY['SELECT 1'], run_as => 'wf_etl')$$);
SET ROLE wf_definer;
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], run_as => 'wf_other')$$);  -- cannot SET ROLE: 42501
SELECT try($$SELECT workflow.define('mine', ARRAY['SELECT 1'])$$);                       -- run_as: the caller
SELECT try($$SELECT workflow.define('etl_job', ARRAY['SELECT 2'], run_as => 'wf_etl')$$);
RESET ROLE;
SELECT name, run_as, defined_by FROM workflow.sql_workflows ORDER BY name;

-- define() judges the current user, not the session's: a SECURITY DEFINER function of
-- wf_definer's, called by a superuser, may only pick what wf_definer could. Nor may a run_as
-- reach the server's files or programs.
CREATE FUNCTION wf_definers_job(role text) RETURNS text LANGUAGE sql SECURITY DEFINER
  AS $f$ SELECT try(format('SELECT workflow.define(%L, ARRAY[''SELECT 1''], run_as => %L)', 'via_' || role, role)) $f$;
ALTER FUNCTION wf_definers_job(text) OWNER TO wf_definer;
SELECT wf_definers_job('wf_other'), wf_definers_job('wf_etl');
CREATE ROLE wf_shell;
GRANT pg_execute_server_program TO wf_shell;
SELECT try($$SELECT workflow.define('bad', ARRAY['SELECT 1'], run_as => 'wf_shell')$$);
DROP FUNCTION wf_definers_job(text);
SELECT workflow.undefine('via_wf_etl');

-- Only admins define.
CREATE ROLE wf_plain;
GRANT workflow_executor, wf_etl TO wf_plain;
SET ROLE wf_plain;
SELECT try($$SELECT workflow.define('nope', ARRAY['SELECT 1'], run_as => 'wf_etl')$$);
RESET ROLE;

-- define() replaces a definition.
SELECT workflow.define('mine', ARRAY['SELECT 10', 'SELECT 20'], max_attempts => 1, run_as => 'wf_definer');
SELECT name, steps, max_attempts FROM workflow.sql_workflows WHERE name = 'mine';

-- Their runs: marked for the SQL workers (whatever app_version is asked), with the
-- definition's timeout unless enqueue gives one.
SELECT workflow.create_queue('sqlq');
SELECT workflow.enqueue('sqlq', 'nightly', '{"table": "pg_class"}', 'sql-1');
SELECT workflow.enqueue('sqlq', 'nightly', NULL, 'sql-2', timeout => '5 min', app_version => 'v9');
SELECT workflow.enqueue('sqlq', 'an_app_job', NULL, 'app-1');
SELECT workflow_id, status, app_version, timeout FROM workflow.runs WHERE queue = 'sqlq' ORDER BY workflow_id;

-- An application executor never claims them, and no executor may pose as a SQL worker.
SELECT workflow.register_executor('app-exec') IS NOT NULL AS registered;
SELECT workflow_id FROM workflow.dequeue('sqlq', 'app-exec', 10);
SELECT try($$SELECT workflow.register_executor('fake', 'pg_workflow:sql')$$);
SELECT try($$SELECT workflow.enqueue('sqlq', 'an_app_job', NULL, 'app-2', app_version => 'pg_workflow:sql')$$);

-- No start() takes a SQL run: it is the SQL workers' alone.
SELECT status, claimed FROM workflow.start('nightly', NULL, 'sql-1');

-- undefine: true once, then false. A queued run of it stays; a SQL worker would end it ERROR.
SELECT workflow.undefine('etl_job'), workflow.undefine('etl_job');
SELECT workflow.cancel('sql-1'), workflow.cancel('sql-2');

-- Roles are cluster-wide: leave none behind. (A definition whose role is dropped fails its
-- runs with 42704 at their next step.)
SELECT workflow.undefine('mine'), workflow.undefine('nightly');
DROP ROLE wf_plain, wf_definer, wf_other, wf_etl, wf_shell;
