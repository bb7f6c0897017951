-- Every rejected call raises a documented SQLSTATE, names the bad value, and changes nothing.
\set VERBOSITY default
SELECT count(*) AS runs_before FROM workflow.run \gset
SELECT count(*) AS steps_before FROM workflow.checkpoint \gset
SELECT status FROM workflow.start('errs', '{}', 'err-1', 'exec-a');
SELECT workflow.step_put('err-1', 1, 'one', '1');

-- NULL or empty names and ids: 22004 and 22023.
SELECT try($$SELECT workflow.start(NULL)$$);
SELECT try($$SELECT workflow.start('')$$);
SELECT try($$SELECT workflow.start('x', NULL, '')$$);
SELECT try($$SELECT workflow.start('x', NULL, NULL, '')$$);
SELECT try($$SELECT workflow.step_put(NULL, 1, 'a')$$);
SELECT try($$SELECT workflow.step_put('err-1', 2, NULL)$$);
SELECT try($$SELECT workflow.step_put('err-1', 2, ' ')$$);
SELECT try($$SELECT workflow.step_get('', 1, 'a')$$);
SELECT try($$SELECT workflow.finish(NULL)$$);
SELECT try($$SELECT workflow.register_executor(NULL)$$);
SELECT try($$SELECT workflow.heartbeat('')$$);
SELECT try($$SELECT workflow.cancel(NULL)$$);
SELECT try($$SELECT workflow.wait(NULL)$$);

-- A step below 1: 22023.
SELECT try($$SELECT workflow.step_put('err-1', 0, 'zero')$$);
SELECT try($$SELECT workflow.step_get('err-1', -1, 'minus')$$);
SELECT try($$SELECT workflow.step_put('err-1', NULL, 'null')$$);

-- A negative interval: 22023.
SELECT try($$SELECT workflow.start('x', NULL, NULL, NULL, '-1 s')$$);
SELECT try($$SELECT workflow.wait('err-1', '-5 min')$$);

-- An unknown workflow: WF001.
SELECT try($$SELECT workflow.step_put('nope', 1, 'a')$$);
SELECT try($$SELECT workflow.step_get('nope', 1, 'a')$$);
SELECT try($$SELECT workflow.finish('nope')$$);
SELECT try($$SELECT workflow.fail('nope', '{}')$$);
SELECT try($$SELECT workflow.cancel('nope')$$);
SELECT try($$SELECT workflow.wait('nope', '0 s')$$);

-- An unknown executor: WF004.
SELECT try($$SELECT workflow.start('x', NULL, 'err-2', 'ghost')$$);
SELECT try($$SELECT workflow.start('x', NULL, NULL, 'ghost')$$);
SELECT try($$SELECT workflow.heartbeat('ghost')$$);

-- A nondeterministic step name on replay: WF002.
SELECT try($$SELECT workflow.step_get('err-1', 1, 'not_one')$$);

-- A step already recorded: 23505 (the first write wins).
SELECT try($$SELECT workflow.step_put('err-1', 1, 'one', '"again"')$$);

-- An id reused with another name: 23505.
SELECT try($$SELECT workflow.start('other_name', NULL, 'err-1')$$);

-- Finishing a finished run, and steps on a finished run: 55000.
SELECT workflow.finish('err-1', '"done"');
SELECT try($$SELECT workflow.finish('err-1')$$);
SELECT try($$SELECT workflow.fail('err-1', '{"late": true}')$$);
SELECT try($$SELECT workflow.step_put('err-1', 2, 'two')$$);

-- fail() needs an error value: 22004.
SELECT status FROM workflow.start('errs', NULL, 'err-3');
SELECT try($$SELECT workflow.fail('err-3', NULL)$$);

-- Payloads over workflow.max_payload_size: 54000.
SET workflow.max_payload_size = '1kB';
SELECT try($$SELECT workflow.start('big', jsonb_build_object('blob', repeat('x', 2000)))$$);
SELECT try($$SELECT workflow.step_put('err-3', 1, 'big', jsonb_build_object('blob', repeat('x', 2000)))$$);
SELECT try($$SELECT workflow.finish('err-3', jsonb_build_object('blob', repeat('x', 2000)))$$);
RESET workflow.max_payload_size;

-- wait() must see other sessions' commits: not in REPEATABLE READ.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT workflow.wait('err-1', '0 s')$$);
COMMIT;

-- Nothing above changed anything but the two runs and the one step made on purpose.
SELECT count(*) - :runs_before AS new_runs FROM workflow.run;
SELECT count(*) - :steps_before AS new_steps FROM workflow.checkpoint;
SELECT workflow_id, status, output FROM workflow.runs WHERE workflow_id IN ('err-1', 'err-3') ORDER BY 1;
