/** The SDK's errors, and the mapping from the extension's SQLSTATEs (README, "Errors"). */

/** Base class of every error the SDK throws on its own. `sqlstate` is the server's code when one caused it. */
export class PgWorkflowError extends Error {
  sqlstate?: string;
  constructor(message: string, options?: { cause?: unknown; sqlstate?: string }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    if (options?.sqlstate) this.sqlstate = options.sqlstate;
  }
}

/** A run ended with ERROR: the original error's type name, message and traceback (stack). */
export class WorkflowFailed extends PgWorkflowError {
  constructor(
    readonly workflowId: string,
    readonly typeName: string,
    readonly errorMessage: string,
    readonly traceback?: string | null,
  ) {
    super(`workflow ${workflowId} failed: ${typeName}: ${errorMessage}`);
  }

  static fromError(workflowId: string, error: unknown): WorkflowFailed {
    if (error === null || typeof error !== "object" || Array.isArray(error)) {
      return new WorkflowFailed(workflowId, "Error", String(error));
    }
    const e = error as Record<string, unknown>;
    return new WorkflowFailed(workflowId, String(e.type ?? "Error"), String(e.message ?? ""),
      e.traceback == null ? null : String(e.traceback));
  }
}

/** A replayed step whose first run threw an error that cannot be rebuilt by type. */
export class StepFailed extends PgWorkflowError {
  constructor(readonly typeName: string, readonly errorMessage: string, readonly traceback?: string | null) {
    super(`${typeName}: ${errorMessage}`);
  }
}

/** WF007: another executor owns the run. The body stops; the run is neither finished nor failed here. */
export class NotOwnerError extends PgWorkflowError {}
/** WF002: on replay, the step recorded at this position has another name. */
export class NondeterminismError extends PgWorkflowError {}
/** WF003: the run was cancelled or passed its deadline. */
export class WorkflowCancelled extends PgWorkflowError {}
/** A run names a workflow this process has not registered with app.workflow(). */
export class WorkflowNotRegistered extends PgWorkflowError {}
/** A value (input, output, error, message) that cannot be stored as JSON. */
export class SerializationError extends PgWorkflowError {}
/** The database has no pg_workflow extension (CREATE EXTENSION pg_workflow). */
export class ExtensionMissing extends PgWorkflowError {}
/** WF005: enqueue or dequeue names a queue that does not exist. */
export class UnknownQueue extends PgWorkflowError {}
/** 23505 on start or enqueue: the id belongs to a run of another workflow, or a deduplication id is taken. */
export class DuplicateWorkflow extends PgWorkflowError {}
/** A run has not ended within the timeout given to result(). */
export class WorkflowTimeout extends PgWorkflowError {}
/** Internal: 23505 on step_put, the step is already recorded (first write wins); the caller replays it. */
export class StepTaken extends PgWorkflowError {}
/** Internal: the connection of a running workflow broke; the runner reconnects and replays. */
export class ConnectionLost extends PgWorkflowError {}

export function sqlstateOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/**
 * Internal: getting a connection failed (the connect phase: DNS, TCP, TLS, authentication, a
 * database not accepting connections, too many clients, the pool's connect timeout). Always
 * transient: retried like a lost server, up to reconnectTimeout; `cause` is the error itself.
 */
export class ConnectFailed extends PgWorkflowError {
  constructor(readonly error: unknown) {
    super(`could not connect: ${(error as Error)?.message ?? String(error)}`, { cause: error });
    const code = sqlstateOf(error);
    if (code) this.sqlstate = code;
  }
}

/** The error a caller sees once retrying stopped: the connect failure itself, not its wrapper. */
export function unwrap(e: unknown): unknown {
  return e instanceof ConnectFailed ? e.error : e;
}

/** Errno codes of a lost or unreachable server (Node system errors). */
const ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ENOENT", "EPIPE", "ETIMEDOUT", "ENOTFOUND",
  "EAI_AGAIN", "EAI_FAIL", "EHOSTUNREACH", "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "ENETRESET", "EADDRNOTAVAIL"]);

/**
 * A lost or unreachable server (restart, failover, network, DNS, overload), as opposed to an
 * error of the call itself: class 08 (connection exception), class 53 (insufficient resources,
 * e.g. 53300 too many clients), 57P01-57P03 (shutdown, crash, starting up), any errno error of
 * a socket or a name lookup, pg's and pg-pool's connect timeouts, a statement read timeout, and
 * anything that failed while connecting (ConnectFailed).
 */
export function isDisconnect(e: unknown): boolean {
  if (e instanceof ConnectFailed || e instanceof ConnectionLost) return true;
  const code = sqlstateOf(e);
  if (code.startsWith("08") || code.startsWith("53") || ["57P01", "57P02", "57P03"].includes(code)) return true;
  if (ERRNO.has(code)) return true;
  const sys = e as { errno?: unknown; syscall?: unknown } | null;
  if (/^E[A-Z_]+$/.test(code) && (typeof sys?.syscall === "string" || typeof sys?.errno === "number")) return true;
  const msg = e instanceof Error ? e.message : "";
  return /Connection terminated|Client has encountered a connection error|not queryable|connection timeout|timeout exceeded when trying to connect|timeout expired|Query read timeout/i.test(msg);
}

/** The SDK error for a database error, or the error itself. */
export function translate(e: unknown, what = ""): unknown {
  const state = sqlstateOf(e);
  if (!state || !(e instanceof Error)) return e;
  const detail = what ? `${what}: ${e.message}` : e.message;
  const opts = { cause: e, sqlstate: state };
  switch (state) {
    case "WF007": return new NotOwnerError(detail, opts);
    case "WF002": return new NondeterminismError(detail, opts);
    case "WF003": return new WorkflowCancelled(detail, opts);
    case "WF005": return new UnknownQueue(detail, opts);
    case "23505": return new DuplicateWorkflow(detail, opts);
    case "3F000": case "42883": case "42P01":
      return new ExtensionMissing(`the database has no pg_workflow extension (CREATE EXTENSION pg_workflow): ${e.message}`, opts);
    default: return e;
  }
}
