//! Every statement the SDK sends (the same as the Python SDK's sql.py). Constant texts, so
//! that each connection prepares each once and the hot path (start, step_put, finish) is one
//! round trip. Intervals travel as seconds (float8); timestamps come back as seconds left,
//! measured on the server's clock.

pub const EXTENSION: &str = "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow'";
pub const REGISTER: &str =
    "SELECT extract(epoch FROM workflow.register_executor($1, $2) - clock_timestamp())::float8";
pub const HEARTBEAT: &str = "SELECT extract(epoch FROM workflow.heartbeat($1) - clock_timestamp())::float8";

/// `run_input` (column 5) is the run's stored input: a claimed run replays with it (the first
/// start's input wins), also when this call did not create the run.
pub const START: &str = "SELECT status, output, error, last_step, claimed, run_input \
     FROM workflow.start($1, $2::jsonb, $3, $4, make_interval(secs => $5::float8), $6)";
pub const STEP_GET: &str = "SELECT found, output, error FROM workflow.step_get($1, $2, $3)";
pub const STEP_PUT: &str = "SELECT workflow.step_put($1, $2, $3, $4::jsonb, $5::jsonb, $6)";
pub const FINISH: &str = "SELECT workflow.finish($1, $2::jsonb, $3)";
pub const FAIL: &str = "SELECT workflow.fail($1, $2::jsonb, $3)";
pub const WAIT: &str =
    "SELECT status, output, error FROM workflow.wait($1, make_interval(secs => $2::float8))";
pub const STATUS: &str = "SELECT status FROM workflow.runs WHERE workflow_id = $1";
pub const CANCEL: &str = "SELECT workflow.cancel($1)";
pub const RESUME: &str = "SELECT workflow.resume($1)";
pub const FORK: &str = "SELECT workflow.fork($1, $2, $3, $4)";

pub const ENQUEUE: &str = "SELECT workflow.enqueue($1, $2, $3::jsonb, $4, $5, $6, $7, \
     make_interval(secs => $8::float8), make_interval(secs => $9::float8), $10, $11)";
pub const DEQUEUE: &str = "SELECT workflow_id, name, input, last_step \
     FROM workflow.dequeue($1, $2, $3, make_interval(secs => $4::float8))";
pub const CREATE_QUEUE: &str = "SELECT workflow.create_queue($1, $2, $3, $4, make_interval(secs => $5::float8), $6)";
pub const SCHEDULE: &str = "SELECT extract(epoch FROM workflow.schedule($1, $2, $3, $4::jsonb, $5, $6) \
     - clock_timestamp())::float8";
pub const UNSCHEDULE: &str = "SELECT workflow.unschedule($1)";
/// Runs this executor owned when its process died: the restarted process takes them back.
pub const OWN_PENDING: &str = "SELECT workflow_id, name, input FROM workflow.runs \
     WHERE executor_id = $1 AND status = 'PENDING' ORDER BY created_at";
pub const LIST: &str = "SELECT workflow_id, name, status, queue, executor_id, app_version, parent_id, \
     input, output, error, created_at, finished_at, last_step FROM workflow.runs \
     WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR name = $2) \
     ORDER BY created_at DESC LIMIT $3";

pub const SEND: &str = "SELECT workflow.send($1, $2::jsonb, $3, $4)";
pub const RECV: &str = "SELECT workflow.recv($1, $2, $3, make_interval(secs => $4::float8), $5)";
pub const SET_EVENT: &str = "SELECT workflow.set_event($1, $2, $3, $4::jsonb, $5)";
pub const GET_EVENT: &str = "SELECT workflow.get_event($1, $2, make_interval(secs => $3::float8))";
pub const SLEEP: &str = "SELECT greatest(extract(epoch FROM workflow.sleep($1, $2, \
     make_interval(secs => $3::float8), $4) - clock_timestamp()), 0)::float8";

pub const TERMINAL: [&str; 4] = ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"];

pub fn is_terminal(status: &str) -> bool {
    TERMINAL.contains(&status)
}
