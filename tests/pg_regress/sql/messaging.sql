-- Messages, events and durable sleep: each is a checkpointed step, and a replay returns what
-- the first run recorded.
SELECT status FROM workflow.start('inbox', NULL, 'msg-1');
SELECT workflow.send('msg-1', '{"hello": 1}');
SELECT workflow.send('msg-1', '{"hello": 2}', 'greetings', 'key-a');
SELECT workflow.send('msg-1', '{"hello": 2}', 'greetings', 'key-a');   -- same key: delivered once
SELECT workflow.recv('msg-1', 1);
SELECT workflow.recv('msg-1', 2, 'greetings');
SELECT workflow.recv('msg-1', 3, 'greetings', '100 ms');                -- nothing left: NULL
-- A replay returns the same messages, and does not wait again.
SELECT workflow.recv('msg-1', 1), workflow.recv('msg-1', 2, 'greetings'), workflow.recv('msg-1', 3, 'greetings', '1 h');
SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = 'msg-1' ORDER BY step;

-- Events: the latest value per key, one history row per step.
SELECT workflow.set_event('msg-1', 4, 'progress', '10');
SELECT workflow.set_event('msg-1', 5, 'progress', '90');
SELECT workflow.set_event('msg-1', 4, 'progress', '10');                -- replay: no change
SELECT workflow.get_event('msg-1', 'progress');
SELECT workflow.get_event('msg-1', 'missing', '50 ms');
SELECT step, key, value FROM workflow.event_history WHERE workflow_id = 'msg-1' ORDER BY step;

-- Durable sleep: the wake-up time is recorded once.
SELECT workflow.sleep('msg-1', 6, '1 hour') AS wake_at \gset
SELECT workflow.sleep('msg-1', 6, '1 hour') = :'wake_at'::timestamptz AS same_on_replay,
       :'wake_at'::timestamptz > now() + interval '59 min' AS an_hour_ahead;

-- Errors.
SELECT try($$SELECT workflow.send('nope', '1')$$);
SELECT try($$SELECT workflow.send(NULL, '1')$$);
SELECT try($$SELECT workflow.recv('nope', 1)$$);
SELECT try($$SELECT workflow.recv('msg-1', 0)$$);
SELECT try($$SELECT workflow.recv('msg-1', 7, NULL, '-1 s')$$);
SELECT try($$SELECT workflow.recv('msg-1', 1, 'other')$$);
SELECT try($$SELECT workflow.set_event('msg-1', 1, 'k', '1')$$);
SELECT try($$SELECT workflow.get_event('nope', 'k', '0 s')$$);
SELECT try($$SELECT workflow.get_event('msg-1', 'k', '-1 s')$$);
SELECT try($$SELECT workflow.sleep('msg-1', 7, '-1 s')$$);
SELECT try($$SELECT workflow.sleep('msg-1', 7, NULL)$$);
SELECT workflow.finish('msg-1');
SELECT try($$SELECT workflow.recv('msg-1', 7)$$);
