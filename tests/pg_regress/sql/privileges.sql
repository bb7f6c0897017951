-- Nothing is granted to PUBLIC: a role without grants can call nothing and read nothing.
CREATE ROLE wf_nobody;
SET ROLE wf_nobody;
SELECT try($$SELECT * FROM workflow.start('x')$$);
SELECT try($$SELECT * FROM workflow.runs$$);
RESET ROLE;
GRANT USAGE ON SCHEMA workflow TO wf_nobody;
SET ROLE wf_nobody;
SELECT try($$SELECT * FROM workflow.start('x')$$);
SELECT try($$SELECT * FROM workflow.runs$$);
RESET ROLE;
REVOKE USAGE ON SCHEMA workflow FROM wf_nobody;
SELECT count(*) AS public_grants
FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.pronamespace = 'workflow'::regnamespace AND a.grantee = 0;
SELECT count(*) AS security_definer FROM pg_proc
WHERE pronamespace = 'workflow'::regnamespace AND prosecdef;
DROP ROLE wf_nobody;

-- The three roles from the README, granted exactly as it shows.
CREATE ROLE wf_executor;
CREATE ROLE wf_reader;
CREATE ROLE wf_admin;
GRANT USAGE ON SCHEMA workflow TO wf_executor, wf_reader, wf_admin;
GRANT EXECUTE ON FUNCTION
    workflow.register_executor(text, text), workflow.heartbeat(text),
    workflow.start(text, jsonb, text, text, interval), workflow.step_get(text, int, text),
    workflow.step_put(text, int, text, jsonb, jsonb), workflow.finish(text, jsonb),
    workflow.fail(text, jsonb), workflow.wait(text, interval),
    workflow.enqueue(text, text, jsonb, text, int, text, text, interval, interval),
    workflow.dequeue(text, text, int, interval),
    workflow.send(text, jsonb, text, text), workflow.recv(text, int, text, interval),
    workflow.set_event(text, int, text, jsonb), workflow.get_event(text, text, interval),
    workflow.sleep(text, int, interval)
  TO wf_executor;
GRANT SELECT, INSERT, UPDATE ON workflow.message, workflow.event TO wf_executor;
GRANT SELECT, INSERT ON workflow.event_history TO wf_executor;
GRANT SELECT, INSERT, UPDATE ON workflow.run, workflow.executor TO wf_executor;
GRANT SELECT, INSERT ON workflow.checkpoint TO wf_executor;
GRANT SELECT ON workflow.queue TO wf_executor;
GRANT SELECT, INSERT, UPDATE, DELETE ON workflow.ready TO wf_executor;  -- FOR UPDATE needs UPDATE
GRANT SELECT, INSERT, DELETE ON workflow.queue_start TO wf_executor;
GRANT SELECT ON workflow.runs, workflow.steps, workflow.executors, workflow.queues, workflow.queue_stats,
    workflow.schedules
  TO wf_reader;
GRANT wf_executor, wf_reader TO wf_admin;
GRANT EXECUTE ON FUNCTION workflow.cancel(text),
    workflow.create_queue(text, int, int, int, interval, int),
    workflow.alter_queue(text, int, int, int, interval, int), workflow.drop_queue(text),
    workflow.schedule(text, text, text, jsonb, text, text), workflow.unschedule(text),
    workflow.pause_schedule(text), workflow.resume_schedule(text), workflow.trigger_schedule(text),
    workflow.tick()
  TO wf_admin;
GRANT UPDATE ON workflow.run TO wf_admin;
GRANT INSERT, UPDATE, DELETE ON workflow.queue TO wf_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON workflow.schedule TO wf_admin;

SET ROLE wf_executor;
SELECT workflow.register_executor('exec-role') IS NOT NULL AS registered;
SELECT status, claimed FROM workflow.start('granted', NULL, 'role-1', 'exec-role');
SELECT workflow.step_put('role-1', 1, 'one', '1');
SELECT found FROM workflow.step_get('role-1', 1, 'one');
SELECT try($$SELECT workflow.cancel('role-1')$$);
RESET ROLE;

SET ROLE wf_reader;
SELECT workflow_id, status, last_step FROM workflow.runs WHERE workflow_id = 'role-1';
SELECT try($$SELECT * FROM workflow.start('nope')$$);
SELECT try($$SELECT * FROM workflow.run$$);
RESET ROLE;

SET ROLE wf_admin;
SELECT workflow.cancel('role-1');
SELECT workflow.create_queue('role_q', rate_limit => 10, rate_period => '1 min');
RESET ROLE;

SET ROLE wf_executor;
SELECT workflow.enqueue('role_q', 'queued', NULL, 'role-2');
SELECT workflow_id, attempt FROM workflow.dequeue('role_q', 'exec-role');
SELECT workflow.send('role-2', '"hi"');
SELECT workflow.recv('role-2', 1);
SELECT workflow.finish('role-2');
SELECT try($$SELECT workflow.drop_queue('role_q')$$);
RESET ROLE;

SET ROLE wf_reader;
SELECT queue, enqueued, pending, starts_in_rate_window FROM workflow.queue_stats WHERE queue = 'role_q';
RESET ROLE;

SET ROLE wf_admin;
SELECT workflow.drop_queue('role_q');
SELECT workflow.schedule('role_cron', '0 * * * *', 'hourly') IS NOT NULL AS scheduled;
SELECT workflow.tick() ? 'fired' AS ticked;
SELECT workflow.unschedule('role_cron');
RESET ROLE;

SET ROLE wf_reader;
SELECT count(*) AS schedules_visible FROM workflow.schedules;
SELECT try($$SELECT workflow.tick()$$);
RESET ROLE;
SELECT status FROM workflow.runs WHERE workflow_id = 'role-1';

DROP OWNED BY wf_executor, wf_reader, wf_admin;
DROP ROLE wf_executor, wf_reader, wf_admin;

-- An error inside a waiting dequeue's subtransaction leaves the caller's own EXCEPTION block
-- (here: try()) and its transaction in order.
CREATE ROLE wf_halfway;
GRANT USAGE ON SCHEMA workflow TO wf_halfway;
GRANT EXECUTE ON FUNCTION workflow.dequeue(text, text, int, interval) TO wf_halfway;
GRANT SELECT ON workflow.queue TO wf_halfway;
SET ROLE wf_halfway;
BEGIN;
SELECT try($$SELECT * FROM workflow.dequeue('default', 'exec-role', 1, '1 s')$$);
SELECT 'the transaction goes on' AS after;
COMMIT;
RESET ROLE;
DROP OWNED BY wf_halfway;
DROP ROLE wf_halfway;
