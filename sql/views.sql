-- The psql-facing surface. Column names here are part of the contract (SPEC.md).

CREATE VIEW workflow.runs AS
SELECT r.workflow_id, r.name, r.status, r.queue, r.executor_id,
       r.input, r.output, r.error, r.priority, r.recovery_attempts,
       r.created_at, r.started_at, r.finished_at, r.deadline,
       coalesce((SELECT max(c.step) FROM workflow.checkpoint c WHERE c.workflow_id = r.workflow_id), 0)
           AS last_step,
       coalesce(r.finished_at, now()) - r.started_at AS duration
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
