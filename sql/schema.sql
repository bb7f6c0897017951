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
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);

-- What each executor is running: recovery looks here when a lease expires.
CREATE INDEX run_pending_by_executor ON workflow.run (executor_id) WHERE status = 'PENDING';

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
