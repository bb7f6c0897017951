-- The SQL surface of pg_workflow (SPEC.md). Each function is a C entry point in the Rust
-- module named beside it. All are VOLATILE and SECURITY DEFINER: roles get EXECUTE on the
-- functions of their job (privileges.sql) and no privilege on the tables, so they write only
-- through these functions. There is no SET search_path clause, on purpose: it would cost a
-- configuration save and restore on every call of the hot path; instead every statement the
-- functions run resolves names in pg_catalog only (an override search path pushed around each
-- SPI connection, src/spi.rs) and names our own objects with their schema.

-- executor.rs ---------------------------------------------------------------------------

CREATE FUNCTION workflow.register_executor(executor_id text, app_version text DEFAULT NULL)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_register_executor';
COMMENT ON FUNCTION workflow.register_executor(text, text) IS
  'Registers an executor (or renews it) and returns when its lease expires.';

CREATE FUNCTION workflow.heartbeat(executor_id text)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_heartbeat';
COMMENT ON FUNCTION workflow.heartbeat(text) IS
  'Renews an executor''s lease and returns when it now expires.';

-- workflow.rs ---------------------------------------------------------------------------

CREATE FUNCTION workflow.start(name text, input jsonb DEFAULT NULL,
                               INOUT workflow_id text DEFAULT NULL,
                               executor_id text DEFAULT NULL, timeout interval DEFAULT NULL,
                               parent_id text DEFAULT NULL,
                               OUT status text, OUT output jsonb, OUT error jsonb,
                               OUT last_step int, OUT claimed bool, OUT run_input jsonb)
RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_start';
COMMENT ON FUNCTION workflow.start(text, jsonb, text, text, interval, text) IS
  'Starts a run (of the executor''s app_version; a child of parent_id), or returns the existing one with that id; claimed = true means: execute the body now, with run_input (the first start''s input wins).';

CREATE FUNCTION workflow.finish(workflow_id text, output jsonb DEFAULT NULL, executor_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_finish';
COMMENT ON FUNCTION workflow.finish(text, jsonb, text) IS
  'Ends a PENDING run with SUCCESS. With executor_id: WF007 if another executor owns the run.';

CREATE FUNCTION workflow.fail(workflow_id text, error jsonb, executor_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_fail';
COMMENT ON FUNCTION workflow.fail(text, jsonb, text) IS
  'Ends a PENDING run with ERROR. With executor_id: WF007 if another executor owns the run.';

CREATE FUNCTION workflow.cancel(workflow_id text)
RETURNS bool LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_cancel';
COMMENT ON FUNCTION workflow.cancel(text) IS
  'Cancels a run that has not ended; its body stops at its next step call. False if it had already ended.';

CREATE FUNCTION workflow.wait(INOUT workflow_id text, timeout interval DEFAULT NULL,
                              OUT status text, OUT output jsonb, OUT error jsonb)
RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_wait';
COMMENT ON FUNCTION workflow.wait(text, interval) IS
  'Blocks until the run ends or the timeout passes (NULL: no timeout), then returns its state.';

-- step.rs -------------------------------------------------------------------------------

CREATE FUNCTION workflow.step_get(workflow_id text, step int, step_name text,
                                  OUT found bool, OUT output jsonb, OUT error jsonb)
RETURNS record LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_step_get';
COMMENT ON FUNCTION workflow.step_get(text, int, text) IS
  'Returns the checkpoint of a step, if recorded. Raises WF003 if the run is cancelled, WF002 on another step name.';

CREATE FUNCTION workflow.step_put(workflow_id text, step int, step_name text,
                                  output jsonb DEFAULT NULL, error jsonb DEFAULT NULL,
                                  executor_id text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_step_put';
COMMENT ON FUNCTION workflow.step_put(text, int, text, jsonb, jsonb, text) IS
  'Checkpoints a step of a PENDING run. The first write wins; a second raises 23505. With executor_id: WF007 if another executor owns the run.';

-- queue.rs ------------------------------------------------------------------------------

CREATE FUNCTION workflow.create_queue(name text, concurrency int DEFAULT NULL,
                                      worker_concurrency int DEFAULT NULL, rate_limit int DEFAULT NULL,
                                      rate_period interval DEFAULT NULL, partition_concurrency int DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_create_queue';
COMMENT ON FUNCTION workflow.create_queue(text, int, int, int, interval, int) IS
  'Creates a queue. NULL limits mean no limit; rate_limit starts per rate_period.';

CREATE FUNCTION workflow.alter_queue(name text, concurrency int DEFAULT NULL,
                                     worker_concurrency int DEFAULT NULL, rate_limit int DEFAULT NULL,
                                     rate_period interval DEFAULT NULL, partition_concurrency int DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_alter_queue';
COMMENT ON FUNCTION workflow.alter_queue(text, int, int, int, interval, int) IS
  'Replaces all of a queue''s limits (an omitted one becomes NULL: no limit).';

CREATE FUNCTION workflow.drop_queue(name text)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_drop_queue';
COMMENT ON FUNCTION workflow.drop_queue(text) IS
  'Drops a queue that holds no ENQUEUED, DELAYED or PENDING run. The default queue stays.';

CREATE FUNCTION workflow.enqueue(queue text, name text, input jsonb DEFAULT NULL,
                                 workflow_id text DEFAULT NULL, priority int DEFAULT 0,
                                 deduplication_id text DEFAULT NULL, partition_key text DEFAULT NULL,
                                 delay interval DEFAULT NULL, timeout interval DEFAULT NULL,
                                 app_version text DEFAULT NULL, parent_id text DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_enqueue';
COMMENT ON FUNCTION workflow.enqueue(text, text, jsonb, text, int, text, text, interval, interval, text, text) IS
  'Enqueues a run (DELAYED first when delay > 0) and returns its id; idempotent on workflow_id. Only executors of app_version (any, when NULL) dequeue it.';

-- dequeue.rs ----------------------------------------------------------------------------

CREATE FUNCTION workflow.dequeue(queue text, executor_id text, max_count int DEFAULT 1,
                                 wait interval DEFAULT '0')
RETURNS TABLE (workflow_id text, name text, input jsonb, attempt int, last_step int)
LANGUAGE c VOLATILE SECURITY DEFINER ROWS 1 AS 'MODULE_PATHNAME', 'wf_dequeue';
COMMENT ON FUNCTION workflow.dequeue(text, text, int, interval) IS
  'Claims up to max_count runs for executor_id within every limit of the queue; with wait > 0, sleeps until work arrives.';

-- schedule.rs ---------------------------------------------------------------------------

CREATE FUNCTION workflow.schedule(name text, cron text, workflow_name text, input jsonb DEFAULT NULL,
                                  queue text DEFAULT 'default', timezone text DEFAULT 'UTC',
                                  overlap text DEFAULT 'allow', catch_up text DEFAULT 'latest',
                                  catch_up_limit int DEFAULT 100)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_schedule';
COMMENT ON FUNCTION workflow.schedule(text, text, text, jsonb, text, text, text, text, int) IS
  'Creates or replaces a cron schedule (5 fields, 6 with leading seconds, or @hourly/@daily/...; IANA time zone); overlap: allow, skip or buffer_one; catch_up: latest or all (at most catch_up_limit, 1 to 1000); returns its next fire time.';

CREATE FUNCTION workflow.unschedule(name text)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_unschedule';
COMMENT ON FUNCTION workflow.unschedule(text) IS 'Deletes a schedule; runs it fired stay.';

CREATE FUNCTION workflow.pause_schedule(name text)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_pause_schedule';
COMMENT ON FUNCTION workflow.pause_schedule(text) IS 'Stops a schedule from firing until resume_schedule.';

CREATE FUNCTION workflow.resume_schedule(name text)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_resume_schedule';
COMMENT ON FUNCTION workflow.resume_schedule(text) IS
  'Resumes a paused schedule from now on: times missed while paused do not fire.';

CREATE FUNCTION workflow.trigger_schedule(name text)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_trigger_schedule';
COMMENT ON FUNCTION workflow.trigger_schedule(text) IS
  'Fires a schedule now, off its cron; returns the new run''s id (cron:<name>:manual:<uuid>).';

-- tick.rs -------------------------------------------------------------------------------

CREATE FUNCTION workflow.tick()
RETURNS jsonb LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_tick';
COMMENT ON FUNCTION workflow.tick() IS
  'One housekeeping pass: fires due schedules, promotes DELAYED runs, cancels runs past their deadline, recovers expired executors'' runs, dead-letters. Safe to call concurrently.';

-- messaging.rs --------------------------------------------------------------------------

CREATE FUNCTION workflow.send(destination_id text, message jsonb, topic text DEFAULT NULL,
                              idempotency_key text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_send';
COMMENT ON FUNCTION workflow.send(text, jsonb, text, text) IS
  'Sends a message to a workflow; the same idempotency_key delivers once.';

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

CREATE FUNCTION workflow.get_event(workflow_id text, key text, timeout interval DEFAULT '60 s')
RETURNS jsonb LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_get_event';
COMMENT ON FUNCTION workflow.get_event(text, text, interval) IS
  'Waits until the workflow has set the key, then returns its latest value (NULL after the timeout).';

CREATE FUNCTION workflow.sleep(workflow_id text, step int, duration interval, executor_id text DEFAULT NULL)
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_sleep';
COMMENT ON FUNCTION workflow.sleep(text, int, interval, text) IS
  'A checkpointed step: the durable wake-up time (recorded once). Sleep until it, e.g. SELECT pg_sleep_until(workflow.sleep(...)).';

-- operations.rs -------------------------------------------------------------------------

CREATE FUNCTION workflow.resume(workflow_id text)
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_resume';
COMMENT ON FUNCTION workflow.resume(text) IS
  'Moves a CANCELLED, ERROR or dead-lettered run back to ENQUEUED (its queue, or default), with a fresh recovery budget.';

CREATE FUNCTION workflow.fork(workflow_id text, from_step int, new_workflow_id text DEFAULT NULL,
                              queue text DEFAULT 'default')
RETURNS text LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_fork';
COMMENT ON FUNCTION workflow.fork(text, int, text, text) IS
  'Enqueues a new run with the input, the checkpoints and the event history of the steps before from_step; returns its id.';

CREATE FUNCTION workflow.delete(workflow_id text)
RETURNS bool LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_delete';
COMMENT ON FUNCTION workflow.delete(text) IS 'Deletes one ended run and all its rows.';

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

-- stats.rs ------------------------------------------------------------------------------

CREATE FUNCTION workflow.stats_counters(OUT name text, OUT value bigint, OUT stats_reset timestamptz)
RETURNS SETOF record LANGUAGE c VOLATILE SECURITY DEFINER ROWS 10 AS 'MODULE_PATHNAME', 'wf_stats_counters';
COMMENT ON FUNCTION workflow.stats_counters() IS
  'This database''s counters of committed events since the server started or stats_reset(); NULL without shared_preload_libraries. Read them in workflow.stats.';

CREATE FUNCTION workflow.stats_reset()
RETURNS timestamptz LANGUAGE c VOLATILE SECURITY DEFINER AS 'MODULE_PATHNAME', 'wf_stats_reset';
COMMENT ON FUNCTION workflow.stats_reset() IS
  'Zeroes this database''s workflow.stats counters (not the gauges) and returns the reset time; NULL without shared_preload_libraries.';
