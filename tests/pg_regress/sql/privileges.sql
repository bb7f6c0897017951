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
DROP ROLE wf_nobody;
SELECT count(*) AS public_grants
FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.pronamespace = 'workflow'::regnamespace AND a.grantee = 0;
-- Every function but these runs as the extension's owner (SECURITY DEFINER): it is how roles
-- without table privileges write. gc may COMMIT, which a definer procedure may not; define
-- judges its caller, the current user, and writes as the owner itself.
SELECT proname, prokind FROM pg_proc
WHERE pronamespace = 'workflow'::regnamespace AND NOT prosecdef ORDER BY proname;

-- The extension made three NOLOGIN roles. Their grants, as the catalog has them:
SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'workflow\_%' ORDER BY rolname;
SELECT r.rolname AS role, string_agg(p.proname, ', ' ORDER BY p.proname) AS may_execute
FROM pg_proc p, aclexplode(p.proacl) a, pg_roles r
WHERE p.pronamespace = 'workflow'::regnamespace AND a.grantee = r.oid AND a.privilege_type = 'EXECUTE'
  AND r.rolname LIKE 'workflow\_%'
GROUP BY r.rolname ORDER BY r.rolname;
SELECT r.rolname AS role, string_agg(c.relname || ':' || a.privilege_type, ', ' ORDER BY c.relname) AS privileges
FROM pg_class c, aclexplode(c.relacl) a, pg_roles r
WHERE c.relnamespace = 'workflow'::regnamespace AND a.grantee = r.oid AND r.rolname LIKE 'workflow\_%'
GROUP BY r.rolname ORDER BY r.rolname;
SELECT m.rolname AS member_of, r.rolname AS role FROM pg_auth_members am
  JOIN pg_roles r ON r.oid = am.member JOIN pg_roles m ON m.oid = am.roleid
 WHERE r.rolname LIKE 'workflow\_%' ORDER BY 1, 2;

-- Each role does its job, as the README grants it to a login role.
CREATE ROLE app_exec;  GRANT workflow_executor TO app_exec;
CREATE ROLE app_read;  GRANT workflow_reader TO app_read;
CREATE ROLE app_admin; GRANT workflow_admin TO app_admin;

SET ROLE app_exec;
SELECT workflow.register_executor('exec-role') IS NOT NULL AS registered;
SELECT status, claimed FROM workflow.start('granted', NULL, 'role-1', 'exec-role');
SELECT workflow.step_put('role-1', 1, 'one', '1', NULL, 'exec-role');
SELECT found FROM workflow.step_get('role-1', 1, 'one');
SELECT workflow.enqueue('default', 'queued', NULL, 'role-2');
SELECT workflow_id FROM workflow.dequeue('default', 'exec-role') WHERE workflow_id = 'role-2';
SELECT workflow.send('role-2', '"hi"');
SELECT workflow.recv('role-2', 1, NULL, '0 s', 'exec-role');
SELECT workflow.set_event('role-2', 2, 'k', '1', 'exec-role');
SELECT workflow.get_event('role-2', 'k', '0 s');
SELECT workflow.sleep('role-2', 3, '0 s', 'exec-role') IS NOT NULL AS slept;
SELECT workflow.finish('role-2', NULL, 'exec-role');
SELECT status FROM workflow.wait('role-2', '0 s');
-- ... and is refused the rest: operations, the views, and any direct write to the tables.
SELECT try($$SELECT workflow.cancel('role-1')$$);
SELECT try($$SELECT workflow.create_queue('mine')$$);
SELECT try($$SELECT workflow.tick()$$);
SELECT try($$CALL workflow.gc('1 day')$$);
SELECT try($$SELECT * FROM workflow.runs$$);
SELECT try($$UPDATE workflow.run SET status = 'SUCCESS' WHERE workflow_id = 'role-1'$$);
SELECT try($$INSERT INTO workflow.checkpoint (workflow_id, step, step_name) VALUES ('role-1', 9, 'forged')$$);
SELECT try($$DELETE FROM workflow.ready$$);
SELECT try($$SELECT * FROM workflow.run$$);
RESET ROLE;

SET ROLE app_read;
SELECT workflow_id, status, last_step FROM workflow.runs WHERE workflow_id LIKE 'role-%' ORDER BY 1;
SELECT count(*) >= 0 AS reads_every_view FROM workflow.steps, workflow.executors, workflow.queues,
       workflow.queue_stats, workflow.schedules, workflow.pending_messages;
SELECT try($$SELECT * FROM workflow.start('nope')$$);
SELECT try($$SELECT * FROM workflow.run$$);
SELECT try($$UPDATE workflow.run SET status = 'SUCCESS'$$);
RESET ROLE;

SET ROLE app_admin;
SELECT workflow.cancel('role-1');
SELECT workflow.resume('role-1');
SELECT workflow.fork('role-2', 1, 'role-3') AS forked;
SELECT workflow.create_queue('role_q', rate_limit => 10, rate_period => '1 min');
SELECT workflow.alter_queue('role_q', concurrency => 2);
SELECT workflow.drop_queue('role_q');
SELECT workflow.schedule('role_cron', '@hourly', 'hourly') IS NOT NULL AS scheduled;
SELECT workflow.pause_schedule('role_cron'), workflow.resume_schedule('role_cron');
SELECT workflow.trigger_schedule('role_cron') LIKE 'cron:role_cron:manual:%' AS triggered;
SELECT workflow.unschedule('role_cron');
SELECT workflow.tick() ? 'fired' AS ticked;
SELECT workflow.cancel('role-3'), workflow.delete('role-3');
SELECT workflow.gc_batch('1 day') >= 0 AS batch;
CALL workflow.gc('1 day');
SELECT count(*) AS runs_visible FROM workflow.runs WHERE workflow_id LIKE 'role-%';
SELECT try($$UPDATE workflow.run SET status = 'SUCCESS'$$);
RESET ROLE;

DROP ROLE app_exec, app_read, app_admin;

-- An error inside a waiting dequeue's subtransaction leaves the caller's own EXCEPTION block
-- (here: try()) and its transaction in order.
CREATE ROLE wf_halfway;
GRANT workflow_executor TO wf_halfway;
SET ROLE wf_halfway;
BEGIN;
SELECT try($$SELECT * FROM workflow.dequeue('default', 'not-registered', 1, '1 s')$$);
SELECT 'the transaction goes on' AS after;
COMMIT;
RESET ROLE;
DROP ROLE wf_halfway;
