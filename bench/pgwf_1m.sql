-- pgwf at 1 000 000 runs (issue 12): fills database pgwf1m with 1e6 runs (0.5 % ENQUEUED, 0.1 % PENDING,
-- 5 % ERROR, 2 % CANCELLED, 0.1 % dead-lettered, the rest SUCCESS; 3 checkpoints each) over 30 days,
-- by bulk INSERTs into workflow.run/checkpoint. Then bench/pgwf_1m.sh times pgwf against it.
-- psql -d postgres -f bench/pgwf_1m.sql   (about 20 s)
\timing on
DROP DATABASE IF EXISTS pgwf1m;
CREATE DATABASE pgwf1m;
\c pgwf1m
CREATE EXTENSION pg_workflow;
SELECT workflow.create_queue('emails', concurrency => 10);
SELECT workflow.create_queue('reports', rate_limit => 100, rate_period => '1 minute');
SELECT workflow.register_executor('bulk-exec-1', 'v1');
INSERT INTO workflow.run (workflow_id, name, status, queue, executor_id, input, output, error,
                          created_at, started_at, finished_at, attempt)
SELECT 'bulk-' || lpad(i::text, 7, '0'),
       CASE WHEN i % 10000 = 7 THEN 'rare_audit' ELSE (ARRAY['checkout','send_email','nightly_report','sync_crm','billing'])[1 + i % 5] END,
       st,
       (ARRAY['default','emails','reports'])[1 + i % 3],
       CASE WHEN st IN ('ENQUEUED') THEN NULL ELSE 'bulk-exec-1' END,
       jsonb_build_object('n', i),
       CASE WHEN st = 'SUCCESS' THEN jsonb_build_object('ok', true, 'n', i) END,
       CASE WHEN st = 'ERROR' THEN jsonb_build_object('type', 'ValueError', 'message', 'boom ' || i) END,
       t, t + interval '10 ms',
       CASE WHEN st IN ('SUCCESS','ERROR','CANCELLED','MAX_RECOVERY_ATTEMPTS_EXCEEDED') THEN t + interval '250 ms' END,
       1
FROM (SELECT i, now() - i * interval '2.592 s' AS t,
             CASE WHEN i % 1000 < 5 THEN 'ENQUEUED'       -- 0.5 %
                  WHEN i % 1000 < 6 THEN 'PENDING'        -- 0.1 %
                  WHEN i % 1000 < 7 THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
                  WHEN i % 1000 < 27 THEN 'CANCELLED'     -- 2 %
                  WHEN i % 1000 < 77 THEN 'ERROR'         -- 5 %
                  ELSE 'SUCCESS' END AS st
        FROM generate_series(1, 1000000) i) s;
INSERT INTO workflow.checkpoint (workflow_id, step, step_name, output, error, recorded_at)
SELECT r.workflow_id, k, (ARRAY['load','work','save'])[k],
       CASE WHEN r.status = 'ERROR' AND k = 3 THEN NULL ELSE jsonb_build_object('step', k) END,
       CASE WHEN r.status = 'ERROR' AND k = 3 THEN '{"message": "failed"}'::jsonb END,
       r.started_at + k * interval '70 ms'
FROM workflow.run r, generate_series(1, 3) k
WHERE r.status NOT IN ('ENQUEUED');
VACUUM ANALYZE workflow.run;
VACUUM ANALYZE workflow.checkpoint;
SELECT status, count(*) FROM workflow.run GROUP BY 1 ORDER BY 1;
