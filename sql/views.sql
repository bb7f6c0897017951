-- The psql-facing surface. Column names here are part of the contract (SPEC.md).

CREATE VIEW workflow.runs AS
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

CREATE VIEW workflow.steps AS
SELECT c.workflow_id, c.step, c.step_name, c.output, c.error, c.recorded_at,
       (c.error IS NULL) AS succeeded
FROM workflow.checkpoint c;
COMMENT ON VIEW workflow.steps IS 'Every checkpointed step outcome.';

CREATE VIEW workflow.executors AS
SELECT e.executor_id, e.app_version, e.registered_at, e.last_heartbeat,
       l.lease_expires_at, l.lease_expires_at > now() AS alive,
       (SELECT count(*) FROM workflow.run r
         WHERE r.executor_id = e.executor_id AND r.status = 'PENDING') AS pending_runs
FROM workflow.executor e,
     LATERAL (SELECT e.last_heartbeat
                     + coalesce(current_setting('workflow.executor_timeout', true), '30s')::interval
                     AS lease_expires_at) l;
COMMENT ON VIEW workflow.executors IS 'Registered executors and the state of their leases.';

CREATE VIEW workflow.queues AS
SELECT name, concurrency, worker_concurrency, rate_limit, rate_period, partition_concurrency, created_at
FROM workflow.queue;
COMMENT ON VIEW workflow.queues IS 'Queues and their flow-control limits (NULL: no limit).';

CREATE VIEW workflow.queue_stats AS
SELECT q.name AS queue,
       count(r.*) FILTER (WHERE r.status = 'ENQUEUED') AS enqueued,
       count(r.*) FILTER (WHERE r.status = 'DELAYED') AS delayed,
       count(r.*) FILTER (WHERE r.status = 'PENDING') AS pending,
       now() - min(r.created_at) FILTER (WHERE r.status = 'ENQUEUED') AS oldest_enqueued_age,
       (SELECT coalesce(jsonb_object_agg(x.executor_id, x.n), '{}')
          FROM (SELECT executor_id, count(*) AS n FROM workflow.run
                 WHERE queue = q.name AND status = 'PENDING' GROUP BY executor_id) x) AS pending_per_executor,
       (SELECT count(*) FROM workflow.queue_start s
         WHERE s.queue = q.name AND s.started_at > now() - q.rate_period) AS starts_in_rate_window
FROM workflow.queue q
LEFT JOIN workflow.run r ON r.queue = q.name AND r.status IN ('ENQUEUED', 'DELAYED', 'PENDING')
GROUP BY q.name, q.rate_period;
COMMENT ON VIEW workflow.queue_stats IS
  'Per queue: active runs by status, the age of the oldest ENQUEUED run, PENDING runs per executor, starts in the current rate window.';

CREATE VIEW workflow.schedules AS
SELECT name, cron, timezone, workflow_name, queue, paused, next_fire_at, last_fired_at,
       last_workflow_id, input, created_at, updated_at, last_error, last_error_at,
       overlap, catch_up, catch_up_limit, buffered_fire_at, skipped_fires, last_skipped_at
FROM workflow.schedule;
COMMENT ON VIEW workflow.schedules IS
  'Cron schedules, their next fire time, the last run they fired, the last fire that failed, their overlap and catch_up options, a buffered fire, and the fires that overlap skipped.';

CREATE VIEW workflow.pending_messages AS
SELECT destination_id AS workflow_id, nullif(topic, '') AS topic, count(*) AS messages,
       min(created_at) AS oldest
FROM workflow.message WHERE consumed_at IS NULL
GROUP BY destination_id, topic;
COMMENT ON VIEW workflow.pending_messages IS 'Messages sent but not yet received, per workflow and topic.';

CREATE VIEW workflow.sql_workflows AS
SELECT name, steps, pg_catalog.array_length(steps, 1) AS step_count, max_attempts, backoff, timeout,
       run_as, defined_by, defined_at
FROM workflow.sql_workflow;
COMMENT ON VIEW workflow.sql_workflows IS 'SQL workflows: the steps the server''s SQL workers run, and as whom.';

-- pgwf (issue 12): a run's events, for readers and the dashboard.
CREATE VIEW workflow.events AS
SELECT workflow_id, key, value, updated_at
FROM workflow.event;
COMMENT ON VIEW workflow.events IS 'The latest value of every event key that a workflow has set.';

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
