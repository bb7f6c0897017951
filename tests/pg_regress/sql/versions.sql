-- Version routing: a run records the app_version that started it (its executor's, or the one
-- given to enqueue); an executor claims only runs of its own version, or of none. And child
-- runs: parent_id links a run to the run that started it.
SELECT workflow.register_executor('ver-1', 'v1') IS NOT NULL AS v1,
       workflow.register_executor('ver-2', 'v2') IS NOT NULL AS v2,
       workflow.register_executor('ver-none') IS NOT NULL AS unversioned;
SELECT workflow.create_queue('versioned');
SELECT workflow.enqueue('versioned', 'job', NULL, 'for-v1', app_version => 'v1');
SELECT workflow.enqueue('versioned', 'job', NULL, 'for-v2', app_version => 'v2');
SELECT workflow.enqueue('versioned', 'job', NULL, 'for-any');
SELECT workflow_id FROM workflow.dequeue('versioned', 'ver-none', 10);
SELECT workflow_id FROM workflow.dequeue('versioned', 'ver-2', 10);
SELECT workflow_id FROM workflow.dequeue('versioned', 'ver-1', 10);
SELECT workflow_id, app_version, executor_id FROM workflow.runs WHERE queue = 'versioned' ORDER BY 1;

-- start records its executor's version; after a crash only an executor of that version
-- takes the run over, and recovery's re-enqueued run waits for one.
SELECT status, claimed FROM workflow.start('versioned_wf', NULL, 'ver-run', 'ver-1');
SELECT app_version FROM workflow.runs WHERE workflow_id = 'ver-run';
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'ver-1';
SELECT status, claimed FROM workflow.start('versioned_wf', NULL, 'ver-run', 'ver-2');
SELECT workflow.tick() ->> 'recovered' AS recovered;
SELECT count(*) AS v2_claims FROM workflow.dequeue('default', 'ver-2', 10) WHERE workflow_id = 'ver-run';
SELECT workflow.register_executor('ver-1', 'v1') IS NOT NULL AS v1_back;
SELECT status, last_step, claimed FROM workflow.start('versioned_wf', NULL, 'ver-run', 'ver-1');

-- Children.
SELECT status FROM workflow.start('child', NULL, 'ver-run-child-1', 'ver-1', NULL, 'ver-run');
SELECT workflow.enqueue('versioned', 'child', NULL, 'ver-run-child-2', app_version => 'v1', parent_id => 'ver-run');
SELECT workflow_id, parent_id FROM workflow.runs WHERE parent_id = 'ver-run' ORDER BY 1;
SELECT try($$SELECT workflow.enqueue('versioned', 'job', NULL, NULL, 0, NULL, NULL, NULL, NULL, repeat('v', 1001))$$);
