-- Schedule options: overlap (what a fire does while the run of the previous fire is still
-- active) and catch_up (which missed fire times fire after downtime), driven by tick(). As
-- after downtime, a schedule's next_fire_at is moved into the past. The crons are @yearly, so
-- the outcome is the same whenever this runs (except across New Year, UTC).
-- miss(s, n): schedule s has not fired since January 1st, n years ago.
CREATE FUNCTION miss(s text, n int) RETURNS void LANGUAGE sql AS $$
  UPDATE workflow.schedule
     SET next_fire_at = (date_trunc('year', now() AT TIME ZONE 'UTC') - make_interval(years => n)) AT TIME ZONE 'UTC'
   WHERE name = s $$;
-- The year of a fire id or fire time, from this one: 0 is this year, -1 the last.
CREATE FUNCTION year_of(id text) RETURNS int LANGUAGE sql AS $$
  SELECT (regexp_match(id, ':(\d{4})-01-01T00:00:00Z$'))[1]::int - extract(year FROM now() AT TIME ZONE 'UTC')::int $$;
CREATE FUNCTION year_of(t timestamptz) RETURNS int LANGUAGE sql AS $$
  SELECT extract(year FROM t AT TIME ZONE 'UTC')::int - extract(year FROM now() AT TIME ZONE 'UTC')::int $$;
-- active(s): the runs of schedule s's cron fires (not manual ones) that are ENQUEUED, DELAYED
-- or PENDING.
CREATE FUNCTION active(s text) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM workflow.runs
   WHERE workflow_id LIKE 'cron:' || s || ':%' AND workflow_id NOT LIKE '%:manual:%'
     AND status IN ('ENQUEUED', 'DELAYED', 'PENDING') $$;
SELECT workflow.create_queue(q) FROM unnest(ARRAY['opt_q', 'opt_skip_q', 'opt_buffer_q']) q;

-- The defaults are today's behaviour: overlap 'allow', catch_up 'latest', catch_up_limit 100.
-- The view shows the options, the buffered fire and the skipped fires.
SELECT workflow.schedule('opt_default', '@yearly', 'w', NULL, 'opt_q') IS NOT NULL AS scheduled;
SELECT name, overlap, catch_up, catch_up_limit, buffered_fire_at, skipped_fires, last_skipped_at
  FROM workflow.schedules WHERE name = 'opt_default';

-- Bad options: 22023 (22004 for NULL), and nothing changes.
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', overlap => 'Skip')$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', overlap => 'queue')$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', overlap => '')$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', overlap => NULL)$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', catch_up => 'every')$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', catch_up => NULL)$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', catch_up_limit => 0)$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', catch_up_limit => 1001)$$);
SELECT try($$SELECT workflow.schedule('opt_bad', '@yearly', 'w', catch_up_limit => NULL)$$);
SELECT try($$SELECT workflow.schedule('opt_default', '@daily', 'w2', NULL, 'opt_q', 'UTC', 'bogus')$$);
SELECT name, cron, workflow_name, overlap FROM workflow.schedules WHERE name LIKE 'opt%' ORDER BY name;

-- catch_up 'latest': after three missed years, only this year's fire time fires.
SELECT miss('opt_default', 3);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(workflow_id) AS fire_year, status FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_default:%';

-- catch_up 'all': every missed fire time fires, each with its own fire id, oldest first.
SELECT workflow.schedule('opt_all', '@yearly', 'w', NULL, 'opt_q', catch_up => 'all') IS NOT NULL AS scheduled;
SELECT miss('opt_all', 3);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(workflow_id) AS fire_year, status FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_all:%' ORDER BY 1;
SELECT year_of(last_fired_at) AS last_fired, year_of(last_workflow_id) AS last_run, next_fire_at > now() AS next_in_future
  FROM workflow.schedules WHERE name = 'opt_all';
-- ... but only the latest catch_up_limit of them; the earlier ones are dropped (and logged).
SELECT workflow.schedule('opt_limit', '@yearly', 'w', NULL, 'opt_q', catch_up => 'all', catch_up_limit => 2) IS NOT NULL AS scheduled;
SELECT miss('opt_limit', 5);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(workflow_id) AS fire_year FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_limit:%' ORDER BY 1;
-- One pass fires at most 100 fire times of a schedule; the next pass goes on.
SELECT workflow.schedule('opt_pace', '@yearly', 'w', NULL, 'opt_q', catch_up => 'all', catch_up_limit => 150) IS NOT NULL AS scheduled;
SELECT miss('opt_pace', 149);
SELECT workflow.tick() ->> 'fired' AS first_pass;
SELECT year_of(next_fire_at) AS goes_on_from FROM workflow.schedules WHERE name = 'opt_pace';
SELECT workflow.tick() ->> 'fired' AS second_pass;
SELECT count(*) AS runs, min(year_of(workflow_id)) AS oldest, max(year_of(workflow_id)) AS latest,
       bool_and(next_fire_at > now()) AS next_in_future
  FROM workflow.runs, workflow.schedules s WHERE workflow_id LIKE 'cron:opt_pace:%' AND s.name = 'opt_pace';

-- overlap 'skip': a fire while the previous fire's run is active enqueues nothing; the
-- schedule moves on, and counts it. With catch_up 'all', the catch-up fires after the first
-- are skipped too: never two active runs.
SELECT workflow.schedule('opt_skip', '@yearly', 'w', NULL, 'opt_skip_q', 'UTC', 'skip', 'all') IS NOT NULL AS scheduled;
SELECT miss('opt_skip', 2);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(workflow_id) AS fire_year, status FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_skip:%';
SELECT skipped_fires, year_of(last_skipped_at) AS last_skipped, next_fire_at > now() AS next_in_future
  FROM workflow.schedules WHERE name = 'opt_skip';
SELECT miss('opt_skip', 0);  -- this year's fire time comes again while the run is still ENQUEUED
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT active('opt_skip') AS active, skipped_fires FROM workflow.schedules WHERE name = 'opt_skip';
-- trigger_schedule is not subject to overlap, and is not the "previous fire".
SELECT workflow.trigger_schedule('opt_skip') LIKE 'cron:opt_skip:manual:%' AS triggered;
SELECT year_of(last_workflow_id) AS last_run FROM workflow.schedules WHERE name = 'opt_skip';
-- Once the run has ended, the next fire enqueues again.
SELECT workflow.cancel(workflow_id) FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_skip:%' AND workflow_id NOT LIKE '%manual%';
SELECT miss('opt_skip', 0);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(workflow_id) AS fire_year, status FROM workflow.runs
 WHERE workflow_id LIKE 'cron:opt_skip:%' AND workflow_id NOT LIKE '%manual%' ORDER BY 1;
SELECT active('opt_skip') AS active, skipped_fires FROM workflow.schedules WHERE name = 'opt_skip';

-- overlap 'buffer_one': a fire while the previous fire's run is active is remembered (one at
-- most: further ones are skipped) and enqueued, with its own fire id, by the first pass after
-- that run has ended.
SELECT workflow.schedule('opt_buffer', '@yearly', 'w', NULL, 'opt_buffer_q', 'UTC', 'buffer_one', 'all') IS NOT NULL AS scheduled;
SELECT miss('opt_buffer', 2);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(last_workflow_id) AS last_run, year_of(buffered_fire_at) AS buffered, skipped_fires,
       year_of(last_skipped_at) AS last_skipped
  FROM workflow.schedules WHERE name = 'opt_buffer';
SELECT workflow.register_executor('opt-ex') IS NOT NULL AS registered;
SELECT year_of(workflow_id) AS claimed FROM workflow.dequeue('opt_buffer_q', 'opt-ex');
SELECT workflow.tick() ->> 'fired' AS fired_while_pending;
SELECT workflow.finish(workflow_id, '"done"', 'opt-ex') FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_buffer:%';
SELECT workflow.tick() ->> 'fired' AS fired_after_finish;
SELECT year_of(workflow_id) AS fire_year, status FROM workflow.runs WHERE workflow_id LIKE 'cron:opt_buffer:%' ORDER BY 1;
SELECT year_of(last_workflow_id) AS last_run, buffered_fire_at, skipped_fires, next_fire_at > now() AS next_in_future
  FROM workflow.schedules WHERE name = 'opt_buffer';
SELECT workflow.tick() ->> 'fired' AS nothing_more;
-- A buffered fire waits for cancel too; replacing the schedule with another overlap drops it.
SELECT miss('opt_buffer', 0);
SELECT workflow.tick() ->> 'fired' AS fired;
SELECT year_of(buffered_fire_at) AS buffered FROM workflow.schedules WHERE name = 'opt_buffer';
SELECT workflow.schedule('opt_buffer', '@yearly', 'w', NULL, 'opt_buffer_q', 'UTC', 'skip') IS NOT NULL AS replaced;
SELECT overlap, buffered_fire_at FROM workflow.schedules WHERE name = 'opt_buffer';

-- Clean up: schedules, runs and queues.
SELECT count(*) AS unscheduled FROM (SELECT workflow.unschedule(name) FROM workflow.schedules WHERE name LIKE 'opt%') u;
SELECT count(workflow.cancel(workflow_id)) AS cancelled FROM workflow.runs
 WHERE queue LIKE 'opt%' AND status IN ('ENQUEUED', 'DELAYED', 'PENDING');
SELECT count(workflow.delete(workflow_id)) AS deleted FROM workflow.runs WHERE queue LIKE 'opt%';
SELECT workflow.drop_queue(q) FROM unnest(ARRAY['opt_q', 'opt_skip_q', 'opt_buffer_q']) q;
DROP FUNCTION miss, year_of(text), year_of(timestamptz), active;
