/**
 * Steps, transactions and the durable calls (sleep, recv, send, setEvent) of a body.
 *
 * A fresh step is one round trip and one commit: its body, then step_put. A replayed step
 * (position <= lastStep) is one step_get and never runs its body. Each takes its number
 * synchronously when called, before its first await: numbers follow call order.
 */
import type { PoolClient } from "pg";
import { asStored, dumps, errorOf, rebuildStepError } from "./codec";
import { als, Context, Run } from "./context";
import { ConnectionLost, NotOwnerError, StepTaken, WorkflowCancelled, isDisconnect, sqlstateOf } from "./errors";
import * as sql from "./sql";

export interface StepOptions {
  /** Retries after the first attempt (0). */
  retries?: number;
  /** Seconds before the first retry (1). */
  backoff?: number;
  /** Multiplier of the backoff per retry (2). */
  backoffRate?: number;
}

export const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function isStop(e: unknown): boolean {
  return e instanceof NotOwnerError || e instanceof WorkflowCancelled || e instanceof ConnectionLost;
}

/** [true, value] when step n has a checkpoint; throws the recorded error of a failed step. */
async function replay(run: Run, n: number, name: string): Promise<[boolean, unknown]> {
  const row = await run.call(sql.STEP_GET, [run.workflowId, n, name]);
  if (!row || !row.found) return [false, undefined]; // a position without a checkpoint
  if (row.error !== null && row.error !== undefined) throw rebuildStepError(row.error);
  return [true, row.output];
}

/** After 23505 on step_put: the checkpoint recorded first wins; return its value or throw its error. */
async function recorded(run: Run, n: number, name: string): Promise<unknown> {
  const [found, value] = await replay(run, n, name);
  if (!found) throw new NotOwnerError(`workflow ${run.workflowId}: step ${n} is taken but not readable`);
  return value;
}

/** step_put; [true, the recorded value] when the step was already recorded (23505). */
async function put(run: Run, n: number, name: string, encoded: string | null, error: string | null): Promise<[boolean, unknown]> {
  try {
    await run.call(sql.STEP_PUT, [run.workflowId, n, name, encoded, error, run.executorId]);
  } catch (e) {
    if (e instanceof StepTaken) return [true, await recorded(run, n, name)];
    throw e;
  }
  return [false, undefined];
}

function stepContext(run: Run): Context { return { run, inStep: true }; }

export async function runStep<A extends unknown[], R>(
  name: string, fn: (...args: A) => R | Promise<R>, args: A, opts: StepOptions,
): Promise<Awaited<R> | unknown> {
  const ctx = als.getStore();
  if (!ctx || ctx.inStep) return fn(...args); // outside a workflow, or nested: a plain call
  const run = ctx.run;
  const n = run.nextStep(); // synchronous: the number is the call's position
  if (run.stopped) throw run.stopped;
  if (run.replaying(n)) {
    const [found, value] = await replay(run, n, name);
    if (found) return value;
  }
  const retries = Math.max(0, opts.retries ?? 0);
  let delay = (opts.backoff ?? 1) * 1000;
  const rate = opts.backoffRate ?? 2;
  let value: unknown;
  for (let attempt = 0; ; attempt++) {
    try {
      value = await als.run(stepContext(run), () => fn(...args));
      break;
    } catch (e) {
      if (isStop(e)) throw e;
      if (attempt >= retries) {
        const [taken, recordedValue] = await put(run, n, name, null, dumps(errorOf(e), "the step's error"));
        if (taken) return recordedValue;
        throw e;
      }
    }
    if (run.stopped) throw run.stopped;
    await sleepMs(delay * (0.9 + 0.2 * Math.random())); // jitter: retries of many runs spread
    delay *= rate;
  }
  const encoded = dumps(value, `the return value of step ${name}`);
  const [taken, recordedValue] = await put(run, n, name, encoded, null);
  if (taken) return recordedValue;
  return asStored(value, encoded); // the checkpoint's value: a replay returns exactly this
}

const RETRYABLE = new Set(["40001", "40P01"]); // serialization failure, deadlock

/** fn(client, ...) and its checkpoint in one transaction: the step happens exactly once. */
export async function runTransaction<A extends unknown[], R>(
  name: string, fn: (client: PoolClient, ...args: A) => R | Promise<R>, args: A,
  connect: () => Promise<PoolClient>,
): Promise<unknown> {
  const ctx = als.getStore();
  if (!ctx || ctx.inStep) { // outside a workflow: its own transaction, no checkpoint
    const client = await connect();
    try {
      await client.query("BEGIN");
      const value = await fn(client, ...args);
      await client.query("COMMIT");
      return value;
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    } finally {
      client.release();
    }
  }
  const run = ctx.run;
  const n = run.nextStep();
  if (run.stopped) throw run.stopped;
  if (run.replaying(n)) {
    const [found, value] = await replay(run, n, name);
    if (found) return value;
  }
  let failure: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const outcome = await run.exclusive(async (client) => {
      let began = false;
      try {
        await client.query("BEGIN");
        began = true;
        const value = await als.run(stepContext(run), () => fn(client, ...args));
        const encoded = dumps(value, `the return value of transaction ${name}`);
        try {
          await client.query({ name: sql.STEP_PUT.name, text: sql.STEP_PUT.text,
            values: [run.workflowId, n, name, encoded, null, run.executorId] });
        } catch (e) {
          throw run.error(e, sql.STEP_PUT);
        }
        await client.query("COMMIT");
        return { ok: true as const, value: asStored(value, encoded) };
      } catch (e) {
        if (began && !isDisconnect(e) && !(e instanceof ConnectionLost)) {
          await client.query("ROLLBACK").catch(() => undefined);
        }
        return { ok: false as const, error: e };
      }
    });
    if (outcome.ok) return outcome.value;
    const e = outcome.error;
    if (e instanceof StepTaken) return recorded(run, n, name); // rolled back: the first checkpoint wins
    if (isStop(e)) throw e;
    if (isDisconnect(e)) throw run.error(e);
    failure = e;
    if (RETRYABLE.has(sqlstateOf(e)) && attempt < 4) continue; // rolled back: run it again
    break;
  }
  const [taken, recordedValue] = await put(run, n, name, null, dumps(errorOf(failure), "the transaction's error"));
  if (taken) return recordedValue;
  throw failure;
}

/** A durable call takes a step number: inside a step (whose body a replay skips) it is refused. */
export function needRun(what: string): Run {
  const ctx = als.getStore();
  if (!ctx) throw new Error(`${what}() is only durable inside a workflow; outside one use app.send / app.getEvent`);
  if (ctx.inStep) {
    throw new Error(`${what}() inside a step or transaction: call it from the workflow body (a replay skips ` +
      `a step's body, so durable calls in it would shift the numbering); inside a step use app.send or app.getEvent`);
  }
  return ctx.run;
}

export async function durableSleep(seconds: number): Promise<void> {
  const ctx = als.getStore();
  if (!ctx || ctx.inStep) return sleepMs(seconds * 1000); // a plain sleep, no step number
  const run = ctx.run;
  const n = run.nextStep();
  const row = await run.call(sql.SLEEP, [run.workflowId, n, seconds, run.executorId]);
  await sleepMs(Number(row?.left ?? 0) * 1000);
  if (run.stopped) throw run.stopped;
}

export async function durableRecv(topic: string | null, timeout: number): Promise<unknown> {
  const run = needRun("recv");
  const n = run.nextStep();
  const row = await run.call(sql.RECV, [run.workflowId, n, topic, timeout, run.executorId]);
  return row?.message ?? null;
}

export async function durableSetEvent(key: string, value: unknown): Promise<void> {
  const run = needRun("setEvent");
  const n = run.nextStep();
  const encoded = dumps(value, `the value of event ${key}`);
  await run.call(sql.SET_EVENT, [run.workflowId, n, key, encoded, run.executorId]);
}

/** Inside a workflow body: delivered once, even on replay (key `<workflow_id>:<step>`). */
export async function durableSend(run: Run, destinationId: string, message: unknown, topic: string | null): Promise<void> {
  const n = run.nextStep();
  const encoded = dumps(message, "the message");
  await run.call(sql.SEND, [destinationId, encoded, topic, `${run.workflowId}:${n}`]);
}
