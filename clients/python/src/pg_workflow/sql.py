"""Every statement the SDK sends. Constant texts, so that psycopg prepares each once per
connection (prepare_threshold=0) and the hot path (start, step_put, finish) is one round trip."""

EXTENSION = "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_workflow'"
# Lease lengths come back as seconds left, measured on the server's clock (no clock skew).
REGISTER = ("SELECT extract(epoch FROM workflow.register_executor(%s, %s) - clock_timestamp())"
            "::float8")
HEARTBEAT = "SELECT extract(epoch FROM workflow.heartbeat(%s) - clock_timestamp())::float8"

# run_input: the run's stored input, with which a claimed run replays (the first start's wins).
START = ("SELECT status, output, error, last_step, claimed, run_input "
         "FROM workflow.start(%s, %s::jsonb, %s, %s, %s::interval, %s)")
STEP_GET = "SELECT found, output, error FROM workflow.step_get(%s, %s, %s)"
STEP_PUT = "SELECT workflow.step_put(%s, %s, %s, %s::jsonb, %s::jsonb, %s)"
FINISH = "SELECT workflow.finish(%s, %s::jsonb, %s)"
FAIL = "SELECT workflow.fail(%s, %s::jsonb, %s)"
WAIT = "SELECT status, output, error FROM workflow.wait(%s, %s::interval)"
STATUS = "SELECT status, output, error FROM workflow.runs WHERE workflow_id = %s"
CANCEL = "SELECT workflow.cancel(%s)"
RESUME = "SELECT workflow.resume(%s)"
FORK = "SELECT workflow.fork(%s, %s, %s, %s)"

ENQUEUE = ("SELECT workflow.enqueue(%s, %s, %s::jsonb, %s, %s, %s, %s, %s::interval, "
           "%s::interval, %s, %s)")
DEQUEUE = ("SELECT workflow_id, name, input, last_step "
           "FROM workflow.dequeue(%s, %s, %s, %s::interval)")
CREATE_QUEUE = "SELECT workflow.create_queue(%s, %s, %s, %s, %s::interval, %s)"
SCHEDULE = "SELECT workflow.schedule(%s, %s, %s, %s::jsonb, %s, %s)"
UNSCHEDULE = "SELECT workflow.unschedule(%s)"
# Runs this executor owned when its process died: the restarted process takes them back.
OWN_PENDING = ("SELECT workflow_id, name, input FROM workflow.runs "
               "WHERE executor_id = %s AND status = 'PENDING' ORDER BY created_at")
LIST = ("SELECT workflow_id, name, status, queue, executor_id, app_version, parent_id, input, "
        "output, error, created_at, finished_at, last_step FROM workflow.runs "
        "WHERE (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(name)s::text IS NULL OR name = %(name)s) "
        "ORDER BY created_at DESC LIMIT %(limit)s")

SEND = "SELECT workflow.send(%s, %s::jsonb, %s, %s)"
RECV = "SELECT workflow.recv(%s, %s, %s, %s::interval, %s)"
SET_EVENT = "SELECT workflow.set_event(%s, %s, %s, %s::jsonb, %s)"
GET_EVENT = "SELECT workflow.get_event(%s, %s, %s::interval)"
SLEEP = ("SELECT greatest(extract(epoch FROM workflow.sleep(%s, %s, %s::interval, %s) "
         "- clock_timestamp()), 0)::float8")

TERMINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
