-- Defects a review reproduced (issue 8), each shown fixed. Two-session and crash cases are in
-- tests/integration/test_trust.py.
SELECT workflow.register_executor('trust-a') IS NOT NULL AS a, workflow.register_executor('trust-b') IS NOT NULL AS b;

-- 5. The run cache learns only from committed state: a start that rolled back leaves no
--    trace, and a step on its id fails (it used to write an orphan checkpoint).
BEGIN;
SELECT status, claimed FROM workflow.start('ghost', NULL, 'ghost-1', 'trust-a');
ROLLBACK;
SELECT try($$SELECT workflow.step_put('ghost-1', 1, 's', '1')$$);
SELECT count(*) AS orphan_checkpoints FROM workflow.checkpoint WHERE workflow_id = 'ghost-1';
-- The same inside a subtransaction that rolls back.
BEGIN;
SAVEPOINT s;
SELECT status FROM workflow.start('ghost', NULL, 'ghost-2', 'trust-a');
ROLLBACK TO SAVEPOINT s;
SELECT try($$SELECT workflow.step_put('ghost-2', 1, 's', '1')$$);
COMMIT;

-- 6. Fencing: once another executor has taken the run over, the stale one's step_put,
--    finish, fail, set_event, recv and sleep raise WF007 and change nothing.
SELECT status, claimed FROM workflow.start('fenced', NULL, 'fence-1', 'trust-a');
SELECT workflow.step_put('fence-1', 1, 'one', '1', NULL, 'trust-a');
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'trust-a';
SELECT status, last_step, claimed FROM workflow.start('fenced', NULL, 'fence-1', 'trust-b');
SELECT try($$SELECT workflow.step_put('fence-1', 2, 'two', '"stale"', NULL, 'trust-a')$$);
SELECT try($$SELECT workflow.finish('fence-1', '"stale"', 'trust-a')$$);
SELECT try($$SELECT workflow.fail('fence-1', '{"m": "stale"}', 'trust-a')$$);
SELECT try($$SELECT workflow.set_event('fence-1', 2, 'k', '1', 'trust-a')$$);
SELECT try($$SELECT workflow.recv('fence-1', 2, NULL, '0 s', 'trust-a')$$);
SELECT try($$SELECT workflow.sleep('fence-1', 2, '1 s', 'trust-a')$$);
SELECT status, executor_id, output, last_step FROM workflow.runs WHERE workflow_id = 'fence-1';
SELECT workflow.step_put('fence-1', 2, 'two', '"fresh"', NULL, 'trust-b');
SELECT workflow.finish('fence-1', '"fresh"', 'trust-b');
SELECT status, executor_id, output FROM workflow.runs WHERE workflow_id = 'fence-1';
SELECT workflow.register_executor('trust-a') IS NOT NULL AS renewed;
-- An anonymous start that takes a run over (its owner's lease expired) fences the owner too.
SELECT status FROM workflow.start('fenced', NULL, 'fence-2', 'trust-a');
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'trust-a';
SELECT status, claimed FROM workflow.start('fenced', NULL, 'fence-2');
SELECT try($$SELECT workflow.step_put('fence-2', 1, 'one', '"stale"', NULL, 'trust-a')$$);
SELECT try($$SELECT workflow.finish('fence-2', '"stale"', 'trust-a')$$);
SELECT workflow.finish('fence-2', '"anonymous"');
SELECT workflow.register_executor('trust-a') IS NOT NULL AS renewed;

-- 12. start() with an unregistered executor does not claim an existing run (WF004).
SELECT status FROM workflow.start('unowned', NULL, 'unowned-1');
SELECT try($$SELECT * FROM workflow.start('unowned', NULL, 'unowned-1', 'nobody')$$);
SELECT executor_id, recovery_attempts FROM workflow.runs WHERE workflow_id = 'unowned-1';

-- 13. start() takes back a run that recovery put on a queue: the README's restart flow.
SELECT status FROM workflow.start('taken_back', NULL, 'back-1', 'trust-a');
SELECT workflow.step_put('back-1', 1, 'one', '1', NULL, 'trust-a');
UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = 'trust-a';
SELECT workflow.tick() ->> 'recovered' AS recovered;
SELECT status, queue FROM workflow.runs WHERE workflow_id = 'back-1';
SELECT workflow.register_executor('trust-a') IS NOT NULL AS restarted;
SELECT status, last_step, claimed FROM workflow.start('taken_back', NULL, 'back-1', 'trust-a');
SELECT count(*) AS still_queued FROM workflow.ready WHERE workflow_id = 'back-1';
SELECT workflow.finish('back-1', '"done"', 'trust-a');

-- 10. Calls that wait refuse REPEATABLE READ and SERIALIZABLE (0A000): they would never see
--     the commit they wait for. recv and get_event used to time out and record "no message".
SELECT status FROM workflow.start('rr', NULL, 'rr-1', 'trust-a');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT workflow.recv('rr-1', 1, NULL, '0 s')$$);
SELECT try($$SELECT workflow.get_event('rr-1', 'k', '0 s')$$);
SELECT try($$SELECT * FROM workflow.wait('rr-1', '0 s')$$);
SELECT try($$SELECT * FROM workflow.dequeue('default', 'trust-a')$$);
-- A step itself is fine: it locks the run row, so a change since the snapshot is a
-- serialization failure rather than a step on a run that has ended.
SELECT workflow.step_put('rr-1', 1, 'in_rr', '1', NULL, 'trust-a');
COMMIT;
SELECT count(*) AS recorded FROM workflow.checkpoint WHERE workflow_id = 'rr-1';
SELECT workflow.finish('rr-1');

-- 1. send conflicts only on its idempotency key: a message id already taken (here: the
--    sequence set back, as a restore without the sequence did) raises instead of dropping.
SELECT status FROM workflow.start('inbox', NULL, 'inbox-1');
SELECT workflow.send('inbox-1', '"one"');
SELECT workflow.send('inbox-1', '"two"', NULL, 'key-2');
SELECT workflow.send('inbox-1', '"two again"', NULL, 'key-2');  -- delivered once
SELECT setval('workflow.message_id_seq', (SELECT min(id) FROM workflow.message WHERE destination_id = 'inbox-1'), false);
SELECT try($$SELECT workflow.send('inbox-1', '"three"')$$);
SELECT message FROM workflow.message WHERE destination_id = 'inbox-1' ORDER BY id;
SELECT setval('workflow.message_id_seq', (SELECT max(id) FROM workflow.message));
SELECT extconfig::regclass[] @> ARRAY['workflow.message_id_seq'::regclass] AS sequence_is_dumped
  FROM pg_extension WHERE extname = 'pg_workflow';

-- 7. Queue limits read inside a rolled-back transaction are not kept.
SELECT workflow.create_queue('one_at_a_time', concurrency => 1);
SELECT count(workflow.enqueue('one_at_a_time', 'job')) AS enqueued FROM generate_series(1, 5);
BEGIN;
SELECT workflow.alter_queue('one_at_a_time');  -- no limits, in a transaction that rolls back
SELECT count(*) AS claimed_inside FROM workflow.dequeue('one_at_a_time', 'trust-a', 5);
ROLLBACK;
SELECT count(*) AS claimed FROM workflow.dequeue('one_at_a_time', 'trust-a', 5);
SELECT count(*) AS claimed_again FROM workflow.dequeue('one_at_a_time', 'trust-a', 5);

-- 8. A waiting dequeue that claims nothing (here: worker_concurrency is full) does not leave
--    a due DELAYED run unpromoted: the next dequeue promotes and claims it.
SELECT workflow.create_queue('slow_lane', worker_concurrency => 1);
SELECT workflow.enqueue('slow_lane', 'first', NULL, 'lane-1');
SELECT workflow_id FROM workflow.dequeue('slow_lane', 'trust-b');
SELECT workflow.enqueue('slow_lane', 'later', NULL, 'lane-2', delay => '50 ms');
SELECT pg_sleep(0.1);
SELECT count(*) AS claimed_while_full FROM workflow.dequeue('slow_lane', 'trust-b', 1, '100 ms');
SELECT workflow.finish('lane-1');
SELECT workflow_id FROM workflow.dequeue('slow_lane', 'trust-b');

-- 14. Ids, names and keys have a limit of 1000 bytes: a clean 22023 naming the argument,
--     instead of a btree "index row size" error.
SELECT try($$SELECT * FROM workflow.start('w', NULL, repeat('i', 1001))$$);
SELECT try($$SELECT * FROM workflow.start(repeat('n', 1001))$$);
SELECT try($$SELECT workflow.enqueue('default', 'w', NULL, NULL, 0, repeat('d', 1001))$$);
SELECT try($$SELECT workflow.enqueue('default', 'w', NULL, NULL, 0, NULL, repeat('p', 1001))$$);
SELECT try($$SELECT workflow.send('inbox-1', '1', repeat('t', 1001))$$);
SELECT try($$SELECT workflow.send('inbox-1', '1', NULL, repeat('k', 1001))$$);
SELECT try($$SELECT workflow.register_executor(repeat('e', 1001))$$);
SELECT try($$SELECT workflow.create_queue(repeat('q', 1001))$$);
SELECT length(workflow_id) AS longest_id FROM workflow.start('w', NULL, repeat('i', 1000));

-- 17. A prepared transaction would commit without our wake-ups and epoch moves: refused
--     when it changed workflow state; a bare step (which wakes nobody) may be prepared.
SELECT status FROM workflow.start('prepared', NULL, 'prep-1');
BEGIN;
SELECT workflow.finish('prep-1');
PREPARE TRANSACTION 'wf-finish';
SELECT status FROM workflow.runs WHERE workflow_id = 'prep-1';
BEGIN;
SELECT workflow.step_put('prep-1', 1, 'one', '1');
PREPARE TRANSACTION 'wf-step';
COMMIT PREPARED 'wf-step';
SELECT last_step FROM workflow.runs WHERE workflow_id = 'prep-1';

-- 17. Every setting changes without a restart (the launcher follows the workers' settings).
SELECT name, context FROM pg_settings WHERE name LIKE 'workflow.%' ORDER BY name;

-- 7. A queue cached before DROP/CREATE EXTENSION is not trusted afterwards. (Last in this
--    file: it recreates the extension.)
SELECT workflow.create_queue('recreated');
SELECT count(*) AS claimed FROM workflow.dequeue('recreated', 'trust-a', 5);  -- cached: no limits
DROP EXTENSION pg_workflow;
CREATE EXTENSION pg_workflow;
SELECT workflow.register_executor('trust-a') IS NOT NULL AS registered;
SELECT workflow.create_queue('recreated', concurrency => 1);
SELECT count(workflow.enqueue('recreated', 'job')) AS enqueued FROM generate_series(1, 5);
SELECT count(*) AS claimed FROM workflow.dequeue('recreated', 'trust-a', 5);

-- A declaration that does not match the library: a newer install script run by a server not
-- yet restarted onto the newer library (or the reverse). Columns the library does not fill
-- read NULL, values the declaration has no column for are dropped: nothing reads past a row.
CREATE SCHEMA mismatch;
CREATE FUNCTION mismatch.start_wider(name text, input jsonb DEFAULT NULL, INOUT workflow_id text DEFAULT NULL,
    executor_id text DEFAULT NULL, timeout interval DEFAULT NULL, parent_id text DEFAULT NULL,
    OUT status text, OUT output jsonb, OUT error jsonb, OUT last_step int, OUT claimed bool,
    OUT run_input jsonb, OUT from_a_later_version text, OUT and_another int)
RETURNS record LANGUAGE c AS '$libdir/pg_workflow', 'wf_start';
CREATE FUNCTION mismatch.start_narrower(name text, input jsonb DEFAULT NULL, INOUT workflow_id text DEFAULT NULL,
    OUT status text)
RETURNS record LANGUAGE c AS '$libdir/pg_workflow', 'wf_start';
SELECT * FROM mismatch.start_wider('mismatched', '[1]', 'mm-1');
SELECT * FROM mismatch.start_narrower('mismatched', '[2]', 'mm-2');
DROP SCHEMA mismatch CASCADE;
