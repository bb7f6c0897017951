-- Operating on runs: resume, fork, delete, gc.
SELECT workflow.register_executor('ops-exec') IS NOT NULL AS registered;
SELECT status FROM workflow.start('pipeline', '{"n": 3}', 'ops-1', 'ops-exec');
SELECT workflow.step_put('ops-1', 1, 'extract', '"rows"');
SELECT workflow.set_event('ops-1', 2, 'stage', '"extracted"');
SELECT workflow.step_put('ops-1', 3, 'transform', NULL, '{"bug": true}');
SELECT workflow.fail('ops-1', '{"message": "transform failed"}');

-- Fork from step 3 after a fix: input, steps 1-2 and the event history before step 3 come along.
SELECT workflow.fork('ops-1', 3, 'ops-1-fixed');
SELECT workflow_id, name, status, queue, input, forked_from FROM workflow.runs WHERE workflow_id = 'ops-1-fixed';
SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = 'ops-1-fixed' ORDER BY step;
SELECT workflow.get_event('ops-1-fixed', 'stage', '0 s');
SELECT workflow_id, last_step FROM workflow.dequeue('default', 'ops-exec', 10) WHERE workflow_id = 'ops-1-fixed';
SELECT workflow.step_put('ops-1-fixed', 3, 'transform', '"fixed"');
SELECT workflow.finish('ops-1-fixed', '"done"');

-- Resume the failed original: back to ENQUEUED with a fresh recovery budget.
SELECT workflow.resume('ops-1');
SELECT status, queue, error, finished_at FROM workflow.runs WHERE workflow_id = 'ops-1';
SELECT workflow.cancel('ops-1');

-- Pending messages, per workflow.
SELECT status FROM workflow.start('mailbox', NULL, 'ops-2');
SELECT workflow.send('ops-2', '1', 'a'), workflow.send('ops-2', '2', 'a'), workflow.send('ops-2', '3');
SELECT workflow_id, topic, messages FROM workflow.pending_messages WHERE workflow_id = 'ops-2' ORDER BY topic NULLS FIRST;

-- Errors.
SELECT try($$SELECT workflow.resume('ops-2')$$);
SELECT try($$SELECT workflow.resume('ops-1-fixed')$$);
SELECT try($$SELECT workflow.resume('nope')$$);
SELECT try($$SELECT workflow.fork('ops-1', 5)$$);
SELECT try($$SELECT workflow.fork('ops-1', 0)$$);
SELECT try($$SELECT workflow.fork('nope', 1)$$);
SELECT try($$SELECT workflow.fork('ops-1', 1, NULL, 'nope')$$);
SELECT try($$SELECT workflow.fork('ops-1', 1, 'ops-2')$$);
SELECT try($$SELECT workflow.delete('ops-2')$$);
SELECT try($$CALL workflow.gc('-1 day')$$);
SELECT try($$SELECT workflow.gc_batch(NULL)$$);

-- delete and gc remove ended runs and all their rows; active runs stay.
SELECT workflow.delete('ops-1-fixed');
SELECT workflow.delete('ops-1-fixed');
SELECT count(*) AS rows_left FROM workflow.checkpoint WHERE workflow_id = 'ops-1-fixed';
CALL workflow.gc('0 s');
SELECT count(*) AS ended_left FROM workflow.run WHERE finished_at IS NOT NULL;
SELECT workflow_id, status FROM workflow.runs WHERE workflow_id = 'ops-2';
SELECT count(*) AS messages_kept FROM workflow.pending_messages WHERE workflow_id = 'ops-2';
