-- pg_workflow tables. The views in views.sql are the supported way to read them.
--
-- Keys are COLLATE "C": ids are compared byte-wise, which keeps index probes on the hot path
-- cheap. Emptiness and step numbers are validated in Rust before any statement runs, so the
-- hot tables carry no CHECK constraints, whose expressions Postgres rebuilds per statement.

-- An executor: a process that runs workflow bodies and holds a lease by heartbeating.
CREATE TABLE workflow.executor (
    executor_id    text COLLATE "C" PRIMARY KEY,
    app_version    text,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now()
);

-- One durable run of a workflow.
CREATE TABLE workflow.run (
    workflow_id       text COLLATE "C" PRIMARY KEY,
    name              text NOT NULL,
    -- ENQUEUED, DELAYED, PENDING, SUCCESS, ERROR, CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED;
    -- written only by pg_workflow's functions.
    status            text NOT NULL,
    queue             text,
    executor_id       text COLLATE "C", -- the owner while PENDING; the last owner afterwards
    input             jsonb,
    output            jsonb,
    error             jsonb,
    priority          int NOT NULL DEFAULT 0,
    recovery_attempts int NOT NULL DEFAULT 0,
    timeout           interval,        -- as given; the deadline counts from when the run starts
    deadline          timestamptz,
    deduplication_id  text COLLATE "C",
    partition_key     text COLLATE "C",
    available_at      timestamptz,     -- a DELAYED run becomes ENQUEUED at this time
    attempt           int NOT NULL DEFAULT 0,  -- how many times a dequeue has claimed it
    forked_from       text COLLATE "C",
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    app_version       text,            -- the version of the app that started it; NULL: any
    parent_id         text COLLATE "C" -- the run that started this one as its child
);

-- What is running, per queue and executor: the concurrency limits count here, and recovery
-- scans it (it holds only PENDING runs, so a full scan is cheap) when a lease expires.
CREATE INDEX run_running ON workflow.run (queue, executor_id) WHERE status = 'PENDING';

-- A run's children.
CREATE INDEX run_children ON workflow.run (parent_id) WHERE parent_id IS NOT NULL;

-- DELAYED runs, by the time they become claimable: per queue (dequeue promotes its own
-- queue's) and over all queues (tick() promotes everything that is due).
CREATE INDEX run_delayed ON workflow.run (queue, available_at) WHERE status = 'DELAYED';
CREATE INDEX run_delayed_due ON workflow.run (available_at) WHERE status = 'DELAYED';

-- A deduplication_id is unique per queue while a run with it is active.
CREATE UNIQUE INDEX run_deduplication ON workflow.run (queue, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING');

-- The checkpointed outcome of one step. No foreign key to run on purpose: the key check
-- would lock the run row on every step; step_put inserts only for a PENDING run instead,
-- and deleting a run deletes its checkpoints.
CREATE TABLE workflow.checkpoint (
    workflow_id text COLLATE "C" NOT NULL,
    step        int  NOT NULL,
    step_name   text NOT NULL,
    output      jsonb,
    error       jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step)
);

-- Queues and their flow control. NULL means no limit.
CREATE TABLE workflow.queue (
    name                  text COLLATE "C" PRIMARY KEY,
    concurrency           int,       -- PENDING runs at once, over all executors
    worker_concurrency    int,       -- PENDING runs at once, per executor
    rate_limit            int,       -- starts per rate_period
    rate_period           interval,
    partition_concurrency int,       -- PENDING runs at once, per partition_key
    created_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO workflow.queue (name) VALUES ('default');

-- pg_dump keeps every queue's row, the default queue's custom limits included. pg_restore
-- runs CREATE EXTENSION (which makes a default row) before it copies the dumped rows: this
-- trigger turns the copy of an existing queue's row into an update of its limits.
CREATE FUNCTION workflow.queue_keep_default() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE workflow.queue
     SET concurrency = NEW.concurrency, worker_concurrency = NEW.worker_concurrency,
         rate_limit = NEW.rate_limit, rate_period = NEW.rate_period,
         partition_concurrency = NEW.partition_concurrency
   WHERE name = NEW.name;
  IF FOUND THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER queue_keep_default BEFORE INSERT ON workflow.queue
  FOR EACH ROW WHEN (NEW.name = 'default') EXECUTE FUNCTION workflow.queue_keep_default();

-- The ENQUEUED runs, one row each, in claim order: lower priority first, then FIFO. A claim
-- deletes the row. Keeping the backlog in its own small table matters: every claim leaves a
-- dead entry at the head of the index that the next claim scans from, and only VACUUM removes
-- them. Vacuuming this small table is cheap, so it is vacuumed after a fixed number of changes
-- (pair with autovacuum_naptime = 1s; see the README); the large run table keeps the defaults.
CREATE TABLE workflow.ready (
    workflow_id   text COLLATE "C" PRIMARY KEY,
    queue         text COLLATE "C" NOT NULL,
    priority      int NOT NULL,
    created_at    timestamptz NOT NULL,
    partition_key text COLLATE "C",
    app_version   text             -- only executors of this version (or any, when NULL) claim it
);
CREATE INDEX ready_order ON workflow.ready (queue, priority, created_at, workflow_id);
ALTER TABLE workflow.ready SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000,
                                autovacuum_vacuum_cost_delay = 0);

-- Recent starts of rate-limited queues only; rows older than the queue's rate_period are
-- pruned by dequeue.
CREATE TABLE workflow.queue_start (
    queue      text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_start_window ON workflow.queue_start (queue, started_at);
ALTER TABLE workflow.queue_start SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                      autovacuum_vacuum_cost_delay = 0);

-- pg_dump keeps the data of these tables (the default queue comes with CREATE EXTENSION).
SELECT pg_catalog.pg_extension_config_dump('workflow.executor', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.run', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.checkpoint', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.ready', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.queue', '');

-- Cron registrations. next_fire_at is computed in Rust (croner, chrono-tz) on every change and
-- after every fire; tick() fires the schedules whose time has come.
CREATE TABLE workflow.schedule (
    name             text COLLATE "C" PRIMARY KEY,
    cron             text NOT NULL,
    timezone         text NOT NULL,
    workflow_name    text NOT NULL,
    input            jsonb,
    queue            text COLLATE "C" NOT NULL,
    paused           bool NOT NULL DEFAULT false,
    next_fire_at     timestamptz,
    last_fired_at    timestamptz,
    last_workflow_id text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_error       text,            -- why the last failed fire failed (its next fire time moved on)
    last_error_at    timestamptz,
    -- Options (README, "Schedule options"), checked by workflow.schedule().
    overlap          text NOT NULL DEFAULT 'allow',  -- allow, skip or buffer_one: a fire while the
                                                     -- run of the previous fire is still active
    catch_up         text NOT NULL DEFAULT 'latest', -- latest or all: the missed fire times that fire
    catch_up_limit   int NOT NULL DEFAULT 100,       -- with all: at most this many, the latest
    buffered_fire_at timestamptz,     -- buffer_one: the fire that starts once the previous run ends
    skipped_fires    bigint NOT NULL DEFAULT 0,      -- fires that overlap skipped
    last_skipped_at  timestamptz      -- the fire time of the latest of them
);
CREATE INDEX schedule_due ON workflow.schedule (next_fire_at) WHERE NOT paused;
SELECT pg_catalog.pg_extension_config_dump('workflow.schedule', '');

-- Messages to workflows. A consumed message stays (consumed_at set), so an idempotency key
-- keeps meaning "delivered once" after it was read.
CREATE TABLE workflow.message (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination_id  text COLLATE "C" NOT NULL,
    topic           text COLLATE "C" NOT NULL,   -- '' when sent without one
    message         jsonb,
    idempotency_key text COLLATE "C",
    created_at      timestamptz NOT NULL DEFAULT now(),
    consumed_at     timestamptz,
    consumed_step   int
);
CREATE INDEX message_inbox ON workflow.message (destination_id, topic, id) WHERE consumed_at IS NULL;
CREATE UNIQUE INDEX message_idempotency ON workflow.message (destination_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- delete() and gc() remove a run's messages, consumed ones too, through this index.
CREATE INDEX message_destination ON workflow.message (destination_id);

-- Events: the latest value per key, and one history row per step that set one.
CREATE TABLE workflow.event (
    workflow_id text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    value       jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, key)
);
CREATE TABLE workflow.event_history (
    workflow_id text COLLATE "C" NOT NULL,
    step        int NOT NULL,
    key         text COLLATE "C" NOT NULL,
    value       jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step)
);
SELECT pg_catalog.pg_extension_config_dump('workflow.message', '');
-- Without this, a restore would start message ids at 1 again, under the restored messages.
SELECT pg_catalog.pg_extension_config_dump('workflow.message_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.event', '');
SELECT pg_catalog.pg_extension_config_dump('workflow.event_history', '');

-- gc() finds finished runs by age.
CREATE INDEX run_finished ON workflow.run (finished_at) WHERE finished_at IS NOT NULL;

-- SQL workflows: workflows whose steps are SQL statements, run by the server's SQL workers
-- as a role that is never a superuser. define() replaces a definition; runs keep the one
-- they started with (sql_run).
CREATE TABLE workflow.sql_workflow (
    name         text COLLATE "C" PRIMARY KEY,
    steps        text[] NOT NULL,
    max_attempts int NOT NULL,        -- attempts per step
    backoff      interval NOT NULL,   -- before the 2nd attempt; doubles after each failure
    timeout      interval,            -- the runs' timeout when enqueue gives none
    run_as       regrole NOT NULL,    -- regrole: follows a rename, dumps as the role's name
    defined_by   regrole NOT NULL,    -- who defined it; must still be able to SET ROLE run_as
    defined_at   timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('workflow.sql_workflow', '');

-- The definition a SQL run executes, copied at its first claim, and the failures of the step
-- it is on. resume() drops the copy, so a resumed run takes the current definition.
CREATE TABLE workflow.sql_run (
    workflow_id  text COLLATE "C" PRIMARY KEY,
    steps        text[] NOT NULL,
    max_attempts int NOT NULL,
    backoff      interval NOT NULL,
    run_as       regrole NOT NULL,
    defined_by   regrole NOT NULL,
    failed_step  int,                 -- the step whose failed attempts `failures` counts
    failures     int NOT NULL DEFAULT 0
);
SELECT pg_catalog.pg_extension_config_dump('workflow.sql_run', '');

-- SQL runs are marked app_version = 'pg_workflow:sql' (only SQL workers claim them). The SQL
-- workers find the queues that hold some, and claim them in the queue's order, through this
-- index: a backlog of application runs ahead of them in ready_order is never walked.
CREATE INDEX ready_sql ON workflow.ready (queue, priority, created_at, workflow_id)
    WHERE app_version = 'pg_workflow:sql';

-- pgwf (issue 12): runs newest first, read a page at a time (pgwf runs, the dashboard's runs
-- page, filtered or not). Without it the first page is a sort of the whole run table. One
-- index only: every index on run costs every start and finish (indexes per status and per
-- name made the 10-step workflow about 8 % slower; filters scan this one instead).
CREATE INDEX run_created ON workflow.run (created_at);
