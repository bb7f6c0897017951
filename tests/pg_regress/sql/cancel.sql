-- cancel() stops the body at its next step call; the steps already recorded stay.
SELECT status FROM workflow.start('long_job', NULL, 'job-1', 'exec-a');
SELECT workflow.step_put('job-1', 1, 'first', '1');
SELECT workflow.cancel('job-1');
SELECT try($$SELECT workflow.step_put('job-1', 2, 'second', '2')$$);
SELECT try($$SELECT * FROM workflow.step_get('job-1', 1, 'first')$$);
SELECT try($$SELECT workflow.finish('job-1')$$);
SELECT status, claimed FROM workflow.start('long_job', NULL, 'job-1', 'exec-a');
SELECT * FROM workflow.wait('job-1', '1 s');
-- Cancelling again, or cancelling a finished run, is not an error: it reports false.
SELECT workflow.cancel('job-1');
SELECT workflow.cancel('order-1');
SELECT count(*) AS steps_kept FROM workflow.steps WHERE workflow_id = 'job-1';

-- A timeout sets a deadline; once passed, the next step call is refused.
SELECT status FROM workflow.start('quick', NULL, 'quick-1', 'exec-a', '50 ms');
SELECT workflow.step_put('quick-1', 1, 'fast', '1');
SELECT pg_sleep(0.2);
SELECT try($$SELECT workflow.step_put('quick-1', 2, 'slow', '2')$$);
SELECT try($$SELECT workflow.finish('quick-1')$$);
SELECT deadline > started_at AS has_deadline FROM workflow.runs WHERE workflow_id = 'quick-1';
