/**
 * Every statement the SDK sends, as named prepared statements (prepared once per connection),
 * so that the hot path (start, step_put, finish) is one round trip each. Durations go as
 * seconds (float8) and become intervals on the server.
 */
export interface Stmt { name: string; text: string }
const s = (name: string, text: string): Stmt => ({ name: `pgwf_${name}`, text });
const secs = (p: string): string => `(${p}::float8 * interval '1 second')`;

export const EXTENSION = s("ext", "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow'");
// Lease lengths come back as seconds left, on the server's clock (no clock skew).
export const REGISTER = s("register",
  "SELECT extract(epoch FROM workflow.register_executor($1, $2) - clock_timestamp())::float8 AS lease");
export const HEARTBEAT = s("heartbeat",
  "SELECT extract(epoch FROM workflow.heartbeat($1) - clock_timestamp())::float8 AS lease");

// input: the run's stored input (run_input: the first start's input wins), which a claimed run
// replays with. (A subquery on workflow.runs would need the reader's grant, which an executor
// role does not have.)
export const START = s("start", "SELECT status, output, error, last_step, claimed, run_input AS input " +
  `FROM workflow.start($1, $2::jsonb, $3, $4, ${secs("$5")}, $6)`);
export const STEP_GET = s("step_get", "SELECT found, output, error FROM workflow.step_get($1, $2, $3)");
export const STEP_PUT = s("step_put", "SELECT workflow.step_put($1, $2, $3, $4::jsonb, $5::jsonb, $6)");
export const FINISH = s("finish", "SELECT workflow.finish($1, $2::jsonb, $3)");
export const FAIL = s("fail", "SELECT workflow.fail($1, $2::jsonb, $3)");
export const WAIT = s("wait", `SELECT status, output, error FROM workflow.wait($1, ${secs("$2")})`);
export const STATUS = s("status", "SELECT status, output, error FROM workflow.runs WHERE workflow_id = $1");
export const CANCEL = s("cancel", "SELECT workflow.cancel($1) AS ok");
export const RESUME = s("resume", "SELECT workflow.resume($1) AS id");
export const FORK = s("fork", "SELECT workflow.fork($1, $2, $3, $4) AS id");

export const ENQUEUE = s("enqueue", "SELECT workflow.enqueue($1, $2, $3::jsonb, $4, $5, $6, $7, " +
  `${secs("$8")}, ${secs("$9")}, $10, $11) AS id`);
export const DEQUEUE = s("dequeue", "SELECT workflow_id, name, input, last_step " +
  `FROM workflow.dequeue($1, $2, $3, ${secs("$4")})`);
export const CREATE_QUEUE = s("create_queue",
  `SELECT workflow.create_queue($1, $2, $3, $4, ${secs("$5")}, $6)`);
export const SCHEDULE = s("schedule", "SELECT workflow.schedule($1, $2, $3, $4::jsonb, $5, $6) AS next");
export const UNSCHEDULE = s("unschedule", "SELECT workflow.unschedule($1)");
// Runs this executor owned when its process died: the restarted process takes them back.
export const OWN_PENDING = s("own_pending", "SELECT workflow_id, name, input FROM workflow.runs " +
  "WHERE executor_id = $1 AND status = 'PENDING' ORDER BY created_at");
export const LIST = s("list", "SELECT workflow_id, name, status, queue, executor_id, app_version, " +
  "parent_id, input, output, error, created_at, finished_at, last_step FROM workflow.runs " +
  "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR name = $2) " +
  "ORDER BY created_at DESC LIMIT $3");

export const SEND = s("send", "SELECT workflow.send($1, $2::jsonb, $3, $4)");
export const RECV = s("recv", `SELECT workflow.recv($1, $2, $3, ${secs("$4")}, $5) AS message`);
export const SET_EVENT = s("set_event", "SELECT workflow.set_event($1, $2, $3, $4::jsonb, $5)");
export const GET_EVENT = s("get_event", `SELECT workflow.get_event($1, $2, ${secs("$3")}) AS value`);
export const SLEEP = s("sleep", "SELECT greatest(extract(epoch FROM workflow.sleep($1, $2, " +
  `${secs("$3")}, $4) - clock_timestamp()), 0)::float8 AS left`);

export const TERMINAL = new Set(["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]);
