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
    workflow.queue_stats, workflow.schedules, workflow.pending_messages, workflow.events
  TO workflow_reader;

-- Admins do both, and operate: cancel, resume, fork, delete, gc, queues, schedules, tick.
GRANT workflow_executor, workflow_reader TO workflow_admin;
GRANT EXECUTE ON FUNCTION
    workflow.cancel(text), workflow.resume(text), workflow.fork(text, int, text, text),
    workflow.delete(text), workflow.gc_batch(interval),
    workflow.create_queue(text, int, int, int, interval, int),
    workflow.alter_queue(text, int, int, int, interval, int), workflow.drop_queue(text),
    workflow.schedule(text, text, text, jsonb, text, text, text, text, int), workflow.unschedule(text),
    workflow.pause_schedule(text), workflow.resume_schedule(text), workflow.trigger_schedule(text),
    workflow.tick()
  TO workflow_admin;
GRANT EXECUTE ON PROCEDURE workflow.gc(interval, bigint) TO workflow_admin;

-- SQL workflows: admins define them, readers see them.
GRANT SELECT ON workflow.sql_workflows TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.define(text, text[], int, interval, interval, text),
    workflow.undefine(text)
  TO workflow_admin;

-- Metrics: readers read them, admins reset the counters.
GRANT SELECT ON workflow.stats TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.stats_counters() TO workflow_reader;
GRANT EXECUTE ON FUNCTION workflow.stats_reset() TO workflow_admin;
