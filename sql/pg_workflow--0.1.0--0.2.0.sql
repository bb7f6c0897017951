-- pg_workflow 0.1.0 -> 0.2.0. Every schema change since 0.1.0 lands here in the same commit as
-- the change itself; tests/integration/test_upgrade.py shows upgraded = fresh (pg_dump -s).
\echo Use "ALTER EXTENSION pg_workflow UPDATE TO '0.2.0'" to load this file. \quit

-- schema.sql: a failed fire is recorded on its schedule.
ALTER TABLE workflow.schedule ADD COLUMN last_error text, ADD COLUMN last_error_at timestamptz;

-- schema.sql: delete() and gc() reach consumed messages through an index.
CREATE INDEX message_destination ON workflow.message (destination_id);

-- schema.sql: pg_dump keeps the message id sequence, and every queue (the default one too).
SELECT pg_catalog.pg_extension_config_dump('workflow.message_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.queue', '');

CREATE FUNCTION workflow.queue_keep_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE workflow.queue
     SET concurrency = NEW.concurrency, worker_concurrency = NEW.worker_concurrency,
         rate_limit = NEW.rate_limit, rate_period = NEW.rate_period,
         partition_concurrency = NEW.partition_concurrency
   WHERE name = NEW.name;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER queue_keep_default BEFORE INSERT ON workflow.queue
  FOR EACH ROW WHEN (NEW.name = 'default') EXECUTE FUNCTION workflow.queue_keep_default();

-- views.sql
CREATE OR REPLACE VIEW workflow.schedules AS
SELECT name, cron, timezone, workflow_name, queue, paused, next_fire_at, last_fired_at,
       last_workflow_id, input, created_at, updated_at, last_error, last_error_at
FROM workflow.schedule;
COMMENT ON VIEW workflow.schedules IS
  'Cron schedules, their next fire time, the last run they fired, and the last fire that failed.';

-- schema.sql: version routing (a run records the app_version that started it; executors
-- claim only their own version's runs, or runs of none) and child runs (parent_id).
ALTER TABLE workflow.run ADD COLUMN app_version text, ADD COLUMN parent_id text COLLATE "C";
CREATE INDEX run_children ON workflow.run (parent_id) WHERE parent_id IS NOT NULL;
ALTER TABLE workflow.ready ADD COLUMN app_version text;

-- views.sql
CREATE OR REPLACE VIEW workflow.runs AS
SELECT r.workflow_id, r.name, r.status, r.queue, r.executor_id,
       r.input, r.output, r.error, r.priority, r.recovery_attempts,
       r.created_at, r.started_at, r.finished_at, r.deadline,
       r.deduplication_id, r.partition_key, r.available_at, r.attempt, r.timeout, r.forked_from,
       coalesce((SELECT max(c.step) FROM workflow.checkpoint c WHERE c.workflow_id = r.workflow_id), 0)
           AS last_step,
       coalesce(r.finished_at, now()) - r.started_at AS duration,
       r.app_version, r.parent_id
FROM workflow.run r;
COMMENT ON VIEW workflow.runs IS 'Every workflow run, one row each, with its latest checkpointed step.';

-- api.sql: start takes parent_id, enqueue takes app_version and parent_id.
DROP FUNCTION workflow.start(text, jsonb, text, text, interval);
DROP FUNCTION workflow.enqueue(text, text, jsonb, text, int, text, text, interval, interval);
CREATE FUNCTION workflow.start(name text, input jsonb DEFAULT NULL,
                               INOUT workflow_id text DEFAULT NULL,
                               executor_id text DEFAULT NULL, timeout interval DEFAULT NULL,
                               parent_id text DEFAULT NULL,
                               OUT status text, OUT output jsonb, OUT error jsonb,
                               OUT last_step int, OUT claimed bool)
RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_start';
COMMENT ON FUNCTION workflow.start(text, jsonb, text, text, interval, text) IS
  'Starts a run (of the executor''s app_version; a child of parent_id), or returns the existing one with that id; claimed = true means: execute the body now.';

CREATE FUNCTION workflow.enqueue(queue text, name text, input jsonb DEFAULT NULL,
                                 workflow_id text DEFAULT NULL, priority int DEFAULT 0,
                                 deduplication_id text DEFAULT NULL, partition_key text DEFAULT NULL,
                                 delay interval DEFAULT NULL, timeout interval DEFAULT NULL,
                                 app_version text DEFAULT NULL, parent_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_enqueue';
COMMENT ON FUNCTION workflow.enqueue(text, text, jsonb, text, int, text, text, interval, interval, text, text) IS
  'Enqueues a run (DELAYED first when delay > 0) and returns its id; idempotent on workflow_id. Only executors of app_version (any, when NULL) dequeue it.';

-- api.sql: step calls take executor_id (fencing, WF007); gc becomes a procedure that commits
-- between batches. A new argument is a new signature: the old one goes first.
DROP FUNCTION workflow.step_put(text, int, text, jsonb, jsonb);
DROP FUNCTION workflow.finish(text, jsonb);
DROP FUNCTION workflow.fail(text, jsonb);
DROP FUNCTION workflow.recv(text, int, text, interval);
DROP FUNCTION workflow.set_event(text, int, text, jsonb);
DROP FUNCTION workflow.sleep(text, int, interval);
DROP FUNCTION workflow.gc(interval);

CREATE FUNCTION workflow.finish(workflow_id text, output jsonb DEFAULT NULL, executor_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_finish';
COMMENT ON FUNCTION workflow.finish(text, jsonb, text) IS
  'Ends a PENDING run with SUCCESS. With executor_id: WF007 if another executor owns the run.';

CREATE FUNCTION workflow.fail(workflow_id text, error jsonb, executor_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_fail';
COMMENT ON FUNCTION workflow.fail(text, jsonb, text) IS
  'Ends a PENDING run with ERROR. With executor_id: WF007 if another executor owns the run.';

CREATE FUNCTION workflow.step_put(workflow_id text, step int, step_name text,
                                  output jsonb DEFAULT NULL, error jsonb DEFAULT NULL,
                                  executor_id text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_step_put';
COMMENT ON FUNCTION workflow.step_put(text, int, text, jsonb, jsonb, text) IS
  'Checkpoints a step of a PENDING run. The first write wins; a second raises 23505. With executor_id: WF007 if another executor owns the run.';

CREATE FUNCTION workflow.recv(workflow_id text, step int, topic text DEFAULT NULL,
                              timeout interval DEFAULT '60 s', executor_id text DEFAULT NULL)
RETURNS jsonb LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_recv';
COMMENT ON FUNCTION workflow.recv(text, int, text, interval, text) IS
  'A checkpointed step: waits for and consumes one message (NULL after the timeout); a replay returns the same.';

CREATE FUNCTION workflow.set_event(workflow_id text, step int, key text, value jsonb,
                                   executor_id text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_set_event';
COMMENT ON FUNCTION workflow.set_event(text, int, text, jsonb, text) IS
  'A checkpointed step: sets the latest value of key and records it in the event history.';

CREATE FUNCTION workflow.sleep(workflow_id text, step int, duration interval, executor_id text DEFAULT NULL)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_sleep';
COMMENT ON FUNCTION workflow.sleep(text, int, interval, text) IS
  'A checkpointed step: the durable wake-up time (recorded once). Sleep until it, e.g. SELECT pg_sleep_until(workflow.sleep(...)).';

CREATE FUNCTION workflow.gc_batch(older_than interval)
RETURNS bigint LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_gc_batch';
COMMENT ON FUNCTION workflow.gc_batch(interval) IS
  'Deletes one batch (up to 1000) of runs that finished before now() - older_than, with all their rows; returns how many runs (0: none left).';

-- SECURITY INVOKER on purpose: a SECURITY DEFINER procedure may not COMMIT. It only calls
-- gc_batch (which is), so its caller needs EXECUTE on both and no table privilege.
CREATE PROCEDURE workflow.gc(older_than interval, INOUT deleted bigint DEFAULT NULL)
LANGUAGE c AS 'MODULE_PATHNAME', 'wf_gc_procedure';
COMMENT ON PROCEDURE workflow.gc(interval, bigint) IS
  'CALL workflow.gc(''30 days''): deletes finished runs older than older_than in batches of 1000, committing after each; returns how many runs.';

-- api.sql: every function is SECURITY DEFINER now (roles hold no table privileges).
ALTER FUNCTION workflow.register_executor(text, text) SECURITY DEFINER;
ALTER FUNCTION workflow.heartbeat(text) SECURITY DEFINER;
ALTER FUNCTION workflow.cancel(text) SECURITY DEFINER;
ALTER FUNCTION workflow.wait(text, interval) SECURITY DEFINER;
ALTER FUNCTION workflow.step_get(text, int, text) SECURITY DEFINER;
ALTER FUNCTION workflow.create_queue(text, int, int, int, interval, int) SECURITY DEFINER;
ALTER FUNCTION workflow.alter_queue(text, int, int, int, interval, int) SECURITY DEFINER;
ALTER FUNCTION workflow.drop_queue(text) SECURITY DEFINER;
ALTER FUNCTION workflow.dequeue(text, text, int, interval) SECURITY DEFINER;
ALTER FUNCTION workflow.schedule(text, text, text, jsonb, text, text) SECURITY DEFINER;
ALTER FUNCTION workflow.unschedule(text) SECURITY DEFINER;
ALTER FUNCTION workflow.pause_schedule(text) SECURITY DEFINER;
ALTER FUNCTION workflow.resume_schedule(text) SECURITY DEFINER;
ALTER FUNCTION workflow.trigger_schedule(text) SECURITY DEFINER;
ALTER FUNCTION workflow.tick() SECURITY DEFINER;
ALTER FUNCTION workflow.send(text, jsonb, text, text) SECURITY DEFINER;
ALTER FUNCTION workflow.get_event(text, text, interval) SECURITY DEFINER;
ALTER FUNCTION workflow.resume(text) SECURITY DEFINER;
ALTER FUNCTION workflow.fork(text, int, text, text) SECURITY DEFINER;
ALTER FUNCTION workflow.delete(text) SECURITY DEFINER;

COMMENT ON FUNCTION workflow.schedule(text, text, text, jsonb, text, text) IS
  'Creates or replaces a cron schedule (5 fields, 6 with leading seconds, or @hourly/@daily/...; IANA time zone); returns its next fire time.';
COMMENT ON FUNCTION workflow.unschedule(text) IS 'Deletes a schedule; runs it fired stay.';
COMMENT ON FUNCTION workflow.pause_schedule(text) IS 'Stops a schedule from firing until resume_schedule.';
COMMENT ON FUNCTION workflow.trigger_schedule(text) IS
  'Fires a schedule now, off its cron; returns the new run''s id (cron:<name>:manual:<uuid>).';

-- privileges.sql, as a whole: the three roles and their grants.
-- Roles and grants. Nothing is granted to PUBLIC. Three NOLOGIN roles, made here if they do
-- not exist yet, each get exactly their job; grant them to your login roles
-- (GRANT workflow_executor TO my_app). No role gets a privilege on a table: the functions are
-- SECURITY DEFINER, so they are the only way to write, and the views the only way to read.
DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['workflow_executor', 'workflow_reader', 'workflow_admin'] LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
    END IF;
  END LOOP;
END $$;

REVOKE ALL ON ALL ROUTINES IN SCHEMA workflow FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA workflow FROM PUBLIC;
GRANT USAGE ON SCHEMA workflow TO workflow_executor, workflow_reader, workflow_admin;

-- Executors run workflows: the protocol, queues, messages, events, sleep.
GRANT EXECUTE ON FUNCTION
    workflow.register_executor(text, text), workflow.heartbeat(text),
    workflow.start(text, jsonb, text, text, interval, text), workflow.step_get(text, int, text),
    workflow.step_put(text, int, text, jsonb, jsonb, text), workflow.finish(text, jsonb, text),
    workflow.fail(text, jsonb, text), workflow.wait(text, interval),
    workflow.enqueue(text, text, jsonb, text, int, text, text, interval, interval, text, text),
    workflow.dequeue(text, text, int, interval),
    workflow.send(text, jsonb, text, text), workflow.recv(text, int, text, interval, text),
    workflow.set_event(text, int, text, jsonb, text), workflow.get_event(text, text, interval),
    workflow.sleep(text, int, interval, text)
  TO workflow_executor;

-- Readers read the views.
GRANT SELECT ON workflow.runs, workflow.steps, workflow.executors, workflow.queues,
    workflow.queue_stats, workflow.schedules, workflow.pending_messages
  TO workflow_reader;

-- Admins do both, and operate: cancel, resume, fork, delete, gc, queues, schedules, tick.
GRANT workflow_executor, workflow_reader TO workflow_admin;
GRANT EXECUTE ON FUNCTION
    workflow.cancel(text), workflow.resume(text), workflow.fork(text, int, text, text),
    workflow.delete(text), workflow.gc_batch(interval),
    workflow.create_queue(text, int, int, int, interval, int),
    workflow.alter_queue(text, int, int, int, interval, int), workflow.drop_queue(text),
    workflow.schedule(text, text, text, jsonb, text, text), workflow.unschedule(text),
    workflow.pause_schedule(text), workflow.resume_schedule(text), workflow.trigger_schedule(text),
    workflow.tick()
  TO workflow_admin;
GRANT EXECUTE ON PROCEDURE workflow.gc(interval, bigint) TO workflow_admin;
