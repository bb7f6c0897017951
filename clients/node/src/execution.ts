/**
 * Running a claimed run's body to its end: finish or fail it, and after a lost connection,
 * reconnect, claim it again and replay from its checkpoints.
 */
import { decodeInput, dumps, errorOf, ErrorJson } from "./codec";
import { als, Run } from "./context";
import { ConnectionLost, NotOwnerError, WorkflowCancelled, WorkflowFailed, isDisconnect, unwrap } from "./errors";
import type { App } from "./app";
import { isStop, sleepMs } from "./steps";
import * as sql from "./sql";

export interface WorkflowDef {
  name: string;
  fn: (...args: any[]) => unknown;
}

/** What a body run here ended with; null: not ended here (read the outcome from the database). */
export type LocalOutcome =
  | { status: "SUCCESS"; value: unknown }
  | { status: "ERROR"; error: ErrorJson; original: unknown }
  | null;

/** The run is no longer this executor's to execute: its outcome is read from the database. */
export class Detached extends Error {}

/** The value of an ended run, or the error its result() throws. */
export function outcome(workflowId: string, status: string, output: unknown, error: unknown): unknown {
  if (status === "SUCCESS") return output;
  if (status === "CANCELLED") throw new WorkflowCancelled(`workflow ${workflowId} was cancelled`);
  if (status === "ERROR") throw WorkflowFailed.fromError(workflowId, error);
  if (status === "MAX_RECOVERY_ATTEMPTS_EXCEEDED") {
    throw new WorkflowFailed(workflowId, status, "dead-lettered after too many recovery attempts");
  }
  throw new Detached(status);
}

/** An error small enough to record when the full one is refused (54000, over max_payload_size). */
export function compact(error: ErrorJson): ErrorJson {
  const m = error.message ?? "", t = error.traceback ?? "";
  return {
    type: error.type,
    message: m.length <= 4000 ? m : m.slice(0, 4000) + "... (truncated)",
    traceback: t.length <= 4000 ? t : "(truncated) ..." + t.slice(-4000),
  };
}

class BodyFailed extends Error {
  constructor(readonly error: ErrorJson, readonly original: unknown) { super(error.message); }
}

async function failRun(run: Run, e: unknown): Promise<ErrorJson> {
  let error = errorOf(e);
  try {
    await run.call(sql.FAIL, [run.workflowId, dumps(error, "the workflow's error"), run.executorId]);
  } catch (err) {
    if (isStop(err)) throw err;
    error = compact(error);
    await run.call(sql.FAIL, [run.workflowId, dumps(error, "the workflow's error"), run.executorId]);
  }
  return error;
}

/** One execution of the body on a pooled (or, for a local child, a dedicated) connection. */
async function runBody(app: App, wf: WorkflowDef, workflowId: string, args: unknown[], lastStep: number,
  dedicated: boolean): Promise<unknown> {
  const { client, release } = await app.acquire(dedicated);
  let broken = false;
  try {
    const run = new Run(app, workflowId, wf.name, client, lastStep);
    let value: unknown;
    try {
      value = await als.run({ run, inStep: false }, () => wf.fn(...args));
    } catch (e) {
      if (run.stopped) throw run.stopped; // fenced, cancelled or disconnected: whatever the body made of it
      if (isStop(e)) throw e;
      throw new BodyFailed(await failRun(run, e), e);
    }
    if (run.stopped) throw run.stopped; // the body swallowed a stop: it still must not finish
    let encoded: string;
    try {
      encoded = dumps(value, `the return value of workflow ${wf.name}`);
      await run.call(sql.FINISH, [workflowId, encoded, app.executorId]);
    } catch (e) {
      if (isStop(e)) throw e;
      throw new BodyFailed(await failRun(run, e), e); // e.g. 54000: the output is too large
    }
    return JSON.parse(encoded);
  } catch (e) {
    broken = e instanceof ConnectionLost || isDisconnect(e);
    throw e;
  } finally {
    release(broken);
  }
}

/** After a lost connection: start() again (idempotent); a replay when we still own it. */
async function reclaim(app: App, wf: WorkflowDef, workflowId: string, input: unknown, deadline: number): Promise<number> {
  const rows = await app.queryRetrying(sql.START, [wf.name, dumps(input), workflowId, app.executorId, null, null], deadline);
  const row = rows[0];
  if (!row || sql.TERMINAL.has(row.status) || !row.claimed) throw new Detached(String(row?.status));
  return row.last_step;
}

const isGone = (e: unknown): boolean => e instanceof NotOwnerError || e instanceof WorkflowCancelled || e instanceof Detached;

/**
 * After giving up: records the run's error, retrying a lost server until it is recorded (or
 * the App closes), so that the run is never left PENDING under this executor's live lease.
 */
async function failGivenUp(app: App, workflowId: string, e: unknown): Promise<LocalOutcome> {
  const error = compact(errorOf(unwrap(e)));
  let delay = 500;
  for (;;) {
    try {
      await app.queryRetrying(sql.FAIL, [workflowId, dumps(error), app.executorId]);
      return { status: "ERROR", error, original: unwrap(e) };
    } catch (err) {
      if (!isDisconnect(err) || app.closing) {
        app.log("error", `workflow ${workflowId} could not be failed (${(err as Error)?.message}); it stays PENDING ` +
          "until this executor's lease expires or it restarts");
        return null;
      }
    }
    await sleepMs(delay);
    delay = Math.min(delay * 2, 10_000);
  }
}

/**
 * Runs a claimed run until it ends, across lost connections, for nobody waiting in this call
 * stack. A lost connection or a failed connect starts an outage: the run is claimed again and
 * replayed, retrying for up to reconnectTimeout per outage (a successful reclaim ends it, so
 * a long-lived run survives any number of outages). After giving up, and on any other error
 * escaping the runner, the run is failed rather than left PENDING.
 */
async function execute(app: App, wf: WorkflowDef, workflowId: string, input: unknown, lastStep: number,
  dedicated: boolean): Promise<LocalOutcome> {
  const args = decodeInput(input);
  for (;;) {
    let failure: unknown;
    try {
      return { status: "SUCCESS", value: await runBody(app, wf, workflowId, args, lastStep, dedicated) };
    } catch (e) {
      if (e instanceof BodyFailed) return { status: "ERROR", error: e.error, original: e.original };
      if (isGone(e)) return null;
      failure = e;
    }
    if (isDisconnect(failure)) {
      const deadline = Date.now() + app.reconnectTimeout * 1000; // this outage's
      app.log("warn", `workflow ${workflowId} lost its connection (${(failure as Error).message}); replaying it`);
      let delay = 100;
      while (isDisconnect(failure) && Date.now() < deadline && !app.closing) {
        await sleepMs(delay);
        delay = Math.min(delay * 2, 5000);
        try {
          lastStep = await reclaim(app, wf, workflowId, input, deadline);
          failure = undefined; // the server answered and the run is ours: the outage is over
          break;
        } catch (r) {
          if (isGone(r)) return null;
          failure = r;
        }
      }
      if (failure === undefined) continue;
      if (app.closing) return null; // the process is going away: a restart or the lease expiry takes it back
      if (isDisconnect(failure)) {
        app.log("error", `workflow ${workflowId}: giving up reconnecting after ${app.reconnectTimeout}s ` +
          `(${(failure as Error)?.message}); failing it`);
        return failGivenUp(app, workflowId, failure);
      }
    }
    app.log("error", `workflow ${workflowId} stopped (${(failure as Error)?.message}); failing it`);
    return failGivenUp(app, workflowId, failure);
  }
}

/** Runs a claimed run once in this process; a run already running here is not started twice. */
export function spawn(app: App, wf: WorkflowDef, workflowId: string, input: unknown, lastStep: number,
  dedicated = false): Promise<LocalOutcome> {
  const running = app.local.get(workflowId);
  if (running) return running;
  const p = execute(app, wf, workflowId, input, lastStep, dedicated)
    .catch((e) => { app.log("error", `workflow ${workflowId} stopped: ${e}`); return null; })
    .finally(() => { if (app.local.get(workflowId) === p) app.local.delete(workflowId); });
  app.local.set(workflowId, p);
  return p;
}
