-- The client-run workflow protocol, as an executor in any language drives it.
SELECT workflow.register_executor('exec-a', 'v1') > now() AS lease_in_future;

-- A fresh run: claimed, nothing checkpointed yet.
SELECT * FROM workflow.start('checkout', '{"cart": 7}', 'order-1', 'exec-a');

-- One round trip per step: the body runs the step, then checkpoints it.
SELECT workflow.step_put('order-1', 1, 'reserve_stock', '{"reserved": true}');
SELECT workflow.step_put('order-1', 2, 'charge_card', NULL, '{"code": "card_declined"}');
SELECT workflow.step_put('order-1', 3, 'charge_card_again', '{"charge": "ch_9"}');

-- The executor crashes here. On restart, start() is idempotent: same run, claimed again,
-- last_step says where the checkpoints end.
SELECT * FROM workflow.start('checkout', '{"cart": 7}', 'order-1', 'exec-a');

-- Replay returns the checkpoints instead of running the steps again.
SELECT * FROM workflow.step_get('order-1', 1, 'reserve_stock');
SELECT * FROM workflow.step_get('order-1', 2, 'charge_card');
SELECT * FROM workflow.step_get('order-1', 4, 'send_receipt');
SELECT workflow.step_put('order-1', 4, 'send_receipt', '{"sent": true}');
SELECT workflow.finish('order-1', '{"order": "done"}');

-- Starting a finished run does not run it again: claimed = false, with its outcome.
SELECT * FROM workflow.start('checkout', NULL, 'order-1', 'exec-a');
SELECT * FROM workflow.wait('order-1', '0 s');

-- Ids are generated when not given: UUIDv7, time-ordered.
SELECT workflow_id AS generated_id, status, claimed FROM workflow.start('checkout') \gset
SELECT length(:'generated_id') = 36 AS is_uuid, substr(:'generated_id', 15, 1) AS version, :'status' AS status, :'claimed' AS claimed;
SELECT workflow.cancel(:'generated_id');

-- A failing run.
SELECT status FROM workflow.start('refund', '{"amount": 5}', 'refund-1', 'exec-a');
SELECT workflow.fail('refund-1', '{"message": "bank offline"}');

-- Without an executor id, a run belongs to no lease; any caller may replay it.
SELECT status, claimed FROM workflow.start('anon', NULL, 'anon-1');
SELECT status, claimed FROM workflow.start('anon', NULL, 'anon-1');
SELECT status, claimed, last_step FROM workflow.start('anon', NULL, 'anon-1', 'exec-a');

-- What psql users ask, one SELECT each.
-- What is running?
SELECT workflow_id, name, executor_id, last_step FROM workflow.runs WHERE status = 'PENDING' ORDER BY workflow_id;
-- What failed, and why?
SELECT workflow_id, name, error FROM workflow.runs WHERE status = 'ERROR';
-- What did step 3 of order-1 return?
SELECT step_name, output, error FROM workflow.steps WHERE workflow_id = 'order-1' AND step = 3;
-- The whole history of a run.
SELECT step, step_name, output, error, succeeded FROM workflow.steps WHERE workflow_id = 'order-1' ORDER BY step;
SELECT workflow_id, status, input, output, recovery_attempts, last_step, finished_at >= started_at AS timed
FROM workflow.runs WHERE workflow_id IN ('order-1', 'refund-1') ORDER BY workflow_id;
SELECT executor_id, app_version, alive, pending_runs FROM workflow.executors;
SELECT workflow.heartbeat('exec-a') > now() AS renewed;
