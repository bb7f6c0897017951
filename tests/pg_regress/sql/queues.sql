-- Queues: management, enqueue options, dequeue order and limits, and their errors.
SELECT name, concurrency, rate_limit FROM workflow.queues;
SELECT workflow.register_executor('q-exec') IS NOT NULL AS registered;

-- Lower priority first, then FIFO.
SELECT workflow.create_queue('mail');
SELECT workflow.enqueue('mail', 'send', '{"to": "a"}', 'm-1');
SELECT workflow.enqueue('mail', 'send', '{"to": "b"}', 'm-2', priority => 5);
SELECT workflow.enqueue('mail', 'send', '{"to": "c"}', 'm-3', priority => -1);
SELECT workflow.enqueue('mail', 'send', '{"to": "d"}', 'm-4');
SELECT * FROM workflow.dequeue('mail', 'q-exec', 2);
SELECT * FROM workflow.dequeue('mail', 'q-exec', 10);
SELECT * FROM workflow.dequeue('mail', 'q-exec');

-- enqueue is idempotent on workflow_id.
SELECT workflow.enqueue('mail', 'send', NULL, 'm-1');

-- A deduplication_id is taken while its run is active, and free again once it ends.
SELECT workflow.enqueue('mail', 'digest', NULL, 'dg-1', deduplication_id => 'daily');
SELECT try($$SELECT workflow.enqueue('mail', 'digest', NULL, 'dg-2', deduplication_id => 'daily')$$);
SELECT workflow.cancel('dg-1');
SELECT workflow.enqueue('mail', 'digest', NULL, 'dg-3', deduplication_id => 'daily');

-- A delayed run waits as DELAYED, then becomes claimable.
SELECT workflow.enqueue('mail', 'later', NULL, 'late-1', delay => '1 s');
SELECT status FROM workflow.runs WHERE workflow_id = 'late-1';
SELECT workflow_id FROM workflow.dequeue('mail', 'q-exec', 5) ORDER BY 1;
SELECT workflow_id FROM workflow.dequeue('mail', 'q-exec', 5, '5 s');

-- A timeout counts from dequeue: once passed, the run's next step call is refused.
SELECT workflow.enqueue('mail', 'slow', NULL, 'slow-1', timeout => '50 ms');
SELECT workflow_id FROM workflow.dequeue('mail', 'q-exec');
SELECT pg_sleep(0.2);
SELECT try($$SELECT workflow.step_put('slow-1', 1, 'late')$$);

-- Limits: concurrency counts PENDING runs of the queue.
SELECT workflow.create_queue('narrow', concurrency => 2);
SELECT count(workflow.enqueue('narrow', 'job')) FROM generate_series(1, 4);
SELECT count(*) AS claimed FROM workflow.dequeue('narrow', 'q-exec', 10);
SELECT count(*) AS claimed FROM workflow.dequeue('narrow', 'q-exec', 10);
SELECT workflow.finish(workflow_id) FROM workflow.runs WHERE queue = 'narrow' AND status = 'PENDING' LIMIT 1;
SELECT count(*) AS claimed FROM workflow.dequeue('narrow', 'q-exec', 10);

-- Per-executor limit.
SELECT workflow.register_executor('q-exec-2') IS NOT NULL AS registered;
SELECT workflow.create_queue('per_worker', worker_concurrency => 1);
SELECT count(workflow.enqueue('per_worker', 'job')) FROM generate_series(1, 3);
SELECT count(*) AS claimed FROM workflow.dequeue('per_worker', 'q-exec', 10);
SELECT count(*) AS claimed FROM workflow.dequeue('per_worker', 'q-exec', 10);
SELECT count(*) AS claimed FROM workflow.dequeue('per_worker', 'q-exec-2', 10);

-- Per-partition limit; runs without a partition_key are not partition-limited.
SELECT workflow.create_queue('tenants', partition_concurrency => 1);
SELECT workflow.enqueue('tenants', 'job', NULL, 't-a1', partition_key => 'a');
SELECT workflow.enqueue('tenants', 'job', NULL, 't-a2', partition_key => 'a');
SELECT workflow.enqueue('tenants', 'job', NULL, 't-b1', partition_key => 'b');
SELECT workflow.enqueue('tenants', 'job', NULL, 't-none');
SELECT workflow_id FROM workflow.dequeue('tenants', 'q-exec', 10) ORDER BY 1;
SELECT workflow.finish('t-a1');
SELECT workflow_id FROM workflow.dequeue('tenants', 'q-exec', 10) ORDER BY 1;

-- Rate limit: at most 2 starts per 10 minutes.
SELECT workflow.create_queue('paced', rate_limit => 2, rate_period => '10 min');
SELECT count(workflow.enqueue('paced', 'job')) FROM generate_series(1, 3);
SELECT count(*) AS claimed FROM workflow.dequeue('paced', 'q-exec', 10);
SELECT count(*) AS claimed FROM workflow.dequeue('paced', 'q-exec', 10);
SELECT queue, enqueued, delayed, pending, pending_per_executor, starts_in_rate_window
FROM workflow.queue_stats WHERE queue IN ('narrow', 'paced', 'tenants') ORDER BY queue;

-- alter_queue replaces every limit.
SELECT workflow.alter_queue('paced', concurrency => 10);
SELECT name, concurrency, rate_limit, rate_period FROM workflow.queues WHERE name = 'paced';
SELECT count(*) AS claimed FROM workflow.dequeue('paced', 'q-exec', 10);

-- Errors: each names the bad value and changes nothing.
SELECT count(*) AS runs_before FROM workflow.run \gset
SELECT try($$SELECT workflow.enqueue('mial', 'send')$$);
SELECT try($$SELECT workflow.enqueue(NULL, 'send')$$);
SELECT try($$SELECT workflow.enqueue('mail', '')$$);
SELECT try($$SELECT workflow.enqueue('mail', 'send', NULL, NULL, NULL)$$);
SELECT try($$SELECT workflow.enqueue('mail', 'send', delay => '-1 s')$$);
SELECT try($$SELECT workflow.enqueue('mail', 'other_name', NULL, 'm-1')$$);
SELECT try($$SELECT * FROM workflow.dequeue('mial', 'q-exec')$$);
SELECT try($$SELECT * FROM workflow.dequeue('mail', 'ghost')$$);
SELECT try($$SELECT * FROM workflow.dequeue('mail', 'q-exec', 0)$$);
SELECT try($$SELECT * FROM workflow.dequeue('mail', 'q-exec', 1, '-1 s')$$);
SELECT try($$SELECT workflow.create_queue('bad', concurrency => 0)$$);
SELECT try($$SELECT workflow.create_queue('bad', worker_concurrency => -1)$$);
SELECT try($$SELECT workflow.create_queue('bad', partition_concurrency => 0)$$);
SELECT try($$SELECT workflow.create_queue('bad', rate_limit => 5)$$);
SELECT try($$SELECT workflow.create_queue('bad', rate_limit => 5, rate_period => '0 s')$$);
SELECT try($$SELECT workflow.create_queue('bad', rate_limit => 5, rate_period => '-1 s')$$);
SELECT try($$SELECT workflow.create_queue(NULL)$$);
SELECT try($$SELECT workflow.create_queue('mail')$$);
SELECT try($$SELECT workflow.alter_queue('mial', concurrency => 1)$$);
SELECT try($$SELECT workflow.drop_queue('default')$$);
SELECT try($$SELECT workflow.drop_queue('narrow')$$);
SELECT try($$SELECT workflow.drop_queue('mial')$$);
SELECT count(*) - :runs_before AS new_runs FROM workflow.run;
SELECT name FROM workflow.queues ORDER BY name;

-- A queue without active runs can be dropped.
SELECT workflow.create_queue('empty');
SELECT workflow.drop_queue('empty');
SELECT count(*) FROM workflow.queues WHERE name = 'empty';
