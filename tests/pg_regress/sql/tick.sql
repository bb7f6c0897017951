-- Schedules and tick(): one housekeeping pass that any session may call.
-- The executors of earlier files renew their leases, so only this file's expire.
SELECT count(workflow.heartbeat(executor_id)) > 0 AS renewed FROM workflow.executors;
SELECT workflow.schedule('every_second', '* * * * * *', 'ping', '{"n": 1}') > now() AS next_in_future;
SELECT workflow.schedule('nightly', '0 3 * * *', 'report', NULL, 'default', 'Europe/Paris') IS NOT NULL AS scheduled;
SELECT name, cron, timezone, workflow_name, queue, paused, last_fired_at FROM workflow.schedules ORDER BY name;

-- Fire ids are cron:<name>:<UTC fire time>; a second tick in the same second fires nothing.
SELECT pg_sleep(1.1);
SELECT (workflow.tick() ->> 'fired')::int >= 1 AS fired;
SELECT workflow_id = 'cron:every_second:' || to_char(last_fired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS id_matches
FROM workflow.runs r JOIN workflow.schedules s ON r.workflow_id = s.last_workflow_id WHERE s.name = 'every_second';
SELECT name, status, input FROM workflow.runs WHERE workflow_id LIKE 'cron:every_second:%' LIMIT 1;

-- Upsert, pause (no fires), resume (from now on), trigger (fires at once), unschedule.
SELECT workflow.schedule('every_second', '*/2 * * * * *', 'ping') IS NOT NULL AS replaced;
SELECT cron FROM workflow.schedules WHERE name = 'every_second';
SELECT workflow.pause_schedule('every_second');
SELECT count(*) AS runs_before FROM workflow.run WHERE name = 'ping' \gset
SELECT pg_sleep(1.1);
SELECT workflow.tick() ->> 'fired' AS fired_while_paused;
SELECT count(*) - :runs_before AS new_runs FROM workflow.run WHERE name = 'ping';
SELECT paused, next_fire_at IS NULL AS no_next FROM workflow.schedules WHERE name = 'every_second';
SELECT workflow.resume_schedule('every_second');
SELECT paused, next_fire_at > now() AS next_in_future FROM workflow.schedules WHERE name = 'every_second';
SELECT workflow.trigger_schedule('nightly') LIKE 'cron:nightly:manual:%' AS manual_id;
-- Each trigger is a new run, even two in the same second (they used to share an id).
SELECT workflow.trigger_schedule('nightly') <> workflow.trigger_schedule('nightly') AS distinct_ids;
SELECT count(*) AS manual_runs FROM workflow.run WHERE workflow_id LIKE 'cron:nightly:manual:%';
SELECT workflow.unschedule('every_second');
SELECT name FROM workflow.schedules;

-- Schedule errors: 22023 for a bad cron or time zone, WF005 for an unknown queue, WF006 for
-- an unknown schedule, 22004/22023 for NULL or empty names. Nothing changes.
SELECT try($$SELECT workflow.schedule('bad', '* * *', 'w')$$);
SELECT try($$SELECT workflow.schedule('bad', '61 * * * *', 'w')$$);
SELECT try($$SELECT workflow.schedule('bad', '* * * * * * 2030', 'w')$$);
SELECT try($$SELECT workflow.schedule('bad', '0 0 31 2 *', 'w')$$);  -- February 31st: never fires
SELECT try($$SELECT workflow.schedule('bad', '@reboot', 'w')$$);
SELECT try($$SELECT workflow.schedule(repeat('s', 901), '* * * * *', 'w')$$);
SELECT try($$SELECT workflow.schedule('bad', '* * * * *', 'w', NULL, 'default', 'Mars/Olympus')$$);
SELECT try($$SELECT workflow.schedule('bad', '* * * * *', 'w', NULL, 'nope')$$);
SELECT try($$SELECT workflow.schedule(NULL, '* * * * *', 'w')$$);
SELECT try($$SELECT workflow.schedule('', '* * * * *', 'w')$$);
SELECT try($$SELECT workflow.schedule('bad', '* * * * *', '')$$);
SELECT try($$SELECT workflow.unschedule('nope')$$);
SELECT try($$SELECT workflow.pause_schedule('nope')$$);
SELECT try($$SELECT workflow.resume_schedule('nope')$$);
SELECT try($$SELECT workflow.trigger_schedule('nope')$$);
SELECT count(*) AS schedules FROM workflow.schedules;

-- The macros that pg_cron accepts.
SELECT m, workflow.schedule('macro' || m, m, 'w') IS NOT NULL AS accepted
  FROM unnest(ARRAY['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']) m;
SELECT count(*) AS unscheduled FROM (SELECT workflow.unschedule(name) FROM workflow.schedules WHERE name LIKE 'macro@%') u;

-- A fire that fails is recorded on its schedule, which moves on to its next time; the other
-- schedules of the same pass still fire. Here the fire id is taken by a run of another name,
-- and a schedule name too long for an id was stored before names had a limit.
SELECT workflow.schedule('clash', '* * * * * *', 'ping') IS NOT NULL AS scheduled;
SELECT workflow.schedule('fine', '* * * * * *', 'ping') IS NOT NULL AS scheduled;
CREATE TEMP TABLE long_name AS  -- hex does not compress: 2680 bytes stay 2680 in an index
  SELECT left(string_agg(md5(i::text), ''), 2680) AS name FROM generate_series(1, 90) i;
INSERT INTO workflow.schedule (name, cron, timezone, workflow_name, queue, next_fire_at)
SELECT name, '* * * * * *', 'UTC', 'ping', 'default', now() FROM long_name;
SELECT pg_sleep(1.1);
SELECT count(*) AS squatters FROM (  -- the next few fire ids of 'clash' are taken
  SELECT workflow.start('squatter', NULL, 'cron:clash:' || to_char(
           date_trunc('second', clock_timestamp() + i * interval '1 s') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    FROM generate_series(0, 3) i) s;
SET client_min_messages = error;  -- the failed fires are also logged as warnings
SELECT (workflow.tick() ->> 'fired')::int >= 1 AS fine_fired;
RESET client_min_messages;
SELECT left(s.name, 5) AS name, last_error IS NOT NULL AS has_error, left(last_error, 24) AS error,
       next_fire_at > now() AS moved_on, last_fired_at IS NOT NULL AS fired
  FROM workflow.schedules s WHERE s.name IN ('clash', 'fine') OR s.name IN (SELECT name FROM long_name)
 ORDER BY length(s.name), s.name;
-- A legacy name over today's limit can still be unscheduled.
SELECT count(*) AS unscheduled FROM (SELECT workflow.unschedule(s.name) FROM workflow.schedules s
 WHERE s.name IN ('clash', 'fine') OR s.name IN (SELECT name FROM long_name)) u;

-- drop_queue refuses a queue that a schedule fires into (55006), naming the schedule.
SELECT workflow.create_queue('scheduled_q');
SELECT workflow.schedule('into_q', '@daily', 'w', NULL, 'scheduled_q') IS NOT NULL AS scheduled;
SELECT try($$SELECT workflow.drop_queue('scheduled_q')$$);
SELECT workflow.unschedule('into_q');
SELECT workflow.drop_queue('scheduled_q');

-- Housekeeping. A DELAYED run whose time has come is promoted.
SELECT workflow.enqueue('default', 'later', NULL, 'tick-delayed', delay => '100 ms');
SELECT pg_sleep(0.2);
SELECT workflow.tick() ->> 'promoted' AS promoted;
SELECT status FROM workflow.runs WHERE workflow_id = 'tick-delayed';

-- A run past its deadline is cancelled.
SELECT status FROM workflow.start('short', NULL, 'tick-timeout', NULL, '50 ms');
SELECT pg_sleep(0.1);
SELECT workflow.tick() ->> 'timed_out' AS timed_out;
SELECT status FROM workflow.runs WHERE workflow_id = 'tick-timeout';

-- An executor whose lease expired loses its PENDING runs: back to ENQUEUED on their own queue,
-- or on default for a run a client started; one more recovery attempt each.
SELECT workflow.register_executor('tick-dead') IS NOT NULL AS registered;
SELECT status FROM workflow.start('orphan', NULL, 'tick-orphan', 'tick-dead');
SELECT workflow.step_put('tick-orphan', 1, 'done_before_death', '1');
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'tick-dead';
SELECT workflow.tick() ->> 'recovered' AS recovered;
SELECT status, queue, recovery_attempts FROM workflow.runs WHERE workflow_id = 'tick-orphan';
-- The next dequeuer resumes it after its last step.
SELECT workflow.register_executor('tick-heir') IS NOT NULL AS registered;
SELECT workflow_id, attempt, last_step FROM workflow.dequeue('default', 'tick-heir', 10) WHERE workflow_id = 'tick-orphan';

-- Past workflow.max_recovery_attempts a run is dead-lettered instead.
UPDATE workflow.run SET recovery_attempts = 100 WHERE workflow_id = 'tick-orphan';
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'tick-heir';
SELECT workflow.tick() ->> 'dead_lettered' AS dead_lettered;
SELECT status, recovery_attempts FROM workflow.runs WHERE workflow_id = 'tick-orphan';

-- tick() again finds nothing left to do.
SELECT workflow.tick() - 'fired' AS second_pass;
