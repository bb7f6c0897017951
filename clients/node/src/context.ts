/** The running workflow of an async context (AsyncLocalStorage), and the calls its body makes. */
import { AsyncLocalStorage } from "node:async_hooks";
import type { PoolClient, QueryResultRow } from "pg";
import { ConnectionLost, NotOwnerError, StepTaken, WorkflowCancelled, isDisconnect, sqlstateOf, translate } from "./errors";
import * as sql from "./sql";

/**
 * One execution of a workflow body: its id, its connection and its step counter.
 *
 * Steps are numbered when they are *called* (synchronously, before their first await), so
 * `Promise.all([a(), b()])` numbers a before b whatever finishes first. A position at or below
 * `lastStep` (what start or dequeue reported) is a replay and reads its checkpoint.
 * The connection is shared by the steps of the run: `exclusive` serializes its use (a
 * transaction holds it from BEGIN to COMMIT).
 */
export class Run {
  step = 0;
  /** Set once the run must stop here (fenced, cancelled, connection lost): every later call throws it. */
  stopped: Error | null = null;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly app: RunApp,
    readonly workflowId: string,
    readonly name: string,
    readonly client: PoolClient,
    readonly lastStep: number,
  ) {}

  get executorId(): string { return this.app.executorId; }

  nextStep(): number { return ++this.step; }

  replaying(n: number): boolean { return n <= this.lastStep; }

  /** Runs fn with the connection to itself (calls of concurrent steps wait their turn). */
  exclusive<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const result = this.tail.then(() => {
      if (this.stopped) throw this.stopped;
      return fn(this.client);
    });
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** One statement on the run's connection; SQLSTATEs become the SDK's errors. */
  call<R extends QueryResultRow = QueryResultRow>(stmt: sql.Stmt, values: unknown[]): Promise<R | undefined> {
    return this.exclusive(async (client) => {
      try {
        const res = await client.query<R>({ name: stmt.name, text: stmt.text, values });
        return res.rows[0];
      } catch (e) {
        throw this.error(e, stmt);
      }
    });
  }

  /** The SDK error for a failed call; fencing, cancellation and a lost connection stop the run. */
  error(e: unknown, stmt?: sql.Stmt): Error {
    if (e instanceof NotOwnerError || e instanceof WorkflowCancelled || e instanceof ConnectionLost) {
      this.stopped ??= e;
      return e;
    }
    if (isDisconnect(e)) {
      const lost = new ConnectionLost(`workflow ${this.workflowId}: ${(e as Error).message}`, { cause: e });
      this.stopped ??= lost;
      return lost;
    }
    if (sqlstateOf(e) === "23505" && stmt === sql.STEP_PUT) {
      // First write wins: the step is already recorded (e.g. by the executor this one took the
      // run over from, whose step raced the takeover). Replay it (step_get).
      return new StepTaken(`workflow ${this.workflowId}: ${(e as Error).message}`, { cause: e, sqlstate: "23505" });
    }
    const out = translate(e, `workflow ${this.workflowId}`);
    if (out instanceof NotOwnerError || out instanceof WorkflowCancelled) this.stopped ??= out;
    return out instanceof Error ? out : new Error(String(out));
  }
}

/** What a Run needs of the App. */
export interface RunApp { readonly executorId: string }

export interface Context {
  run: Run;
  /** Inside a step's or transaction's body: durable calls are plain calls there, or refused. */
  inStep: boolean;
}

export const als = new AsyncLocalStorage<Context>();

export function currentRun(): Run | undefined {
  const ctx = als.getStore();
  return ctx && !ctx.inStep ? ctx.run : undefined;
}

/** The id of the workflow running in this async context, or undefined outside a workflow. */
export function workflowId(): string | undefined { return als.getStore()?.run.workflowId; }

/** The number of the last step this workflow called (or the one running, inside a step). */
export function stepId(): number | undefined { return als.getStore()?.run.step; }
