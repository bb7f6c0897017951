/**
 * A worker: dequeues its queues' runs and executes them, `concurrency` at a time.
 *
 * One dispatch loop per queue holds its own connection for dequeue (which waits on the server
 * up to `poll` seconds); each claimed run executes on a pooled connection. At start, the worker
 * takes back the runs this executor owned when its process died (same executorId): they
 * resume from their last checkpoint.
 */
import type pg from "pg";
import type { App } from "./app";
import { dumps, errorOf } from "./codec";
import { WorkflowNotRegistered, isDisconnect, sqlstateOf, translate } from "./errors";
import { spawn } from "./execution";
import { sleepMs } from "./steps";
import * as sql from "./sql";

/** Pooled connections a worker leaves for what its runs do besides their own connection. */
export const POOL_MARGIN = 4;

export interface WorkerOptions {
  queues?: string[];
  /** Runs in flight at most (8). */
  concurrency?: number;
  /** Seconds a dequeue waits on the server for work (1). */
  poll?: number;
}

class Slots {
  private waiters: Array<() => void> = [];
  constructor(private free: number) {}
  tryAcquire(): boolean {
    if (this.free > 0) { this.free--; return true; }
    return false;
  }
  /** Resolves true with a slot, or false after `ms`. */
  acquire(ms: number): Promise<boolean> {
    if (this.tryAcquire()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = () => { clearTimeout(timer); resolve(true); };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, ms);
      this.waiters.push(waiter);
    });
  }
  release(): void {
    const w = this.waiters.shift();
    if (w) w(); else this.free++;
  }
}

export class Worker {
  readonly queues: string[];
  readonly concurrency: number;
  readonly poll: number;
  /** A fatal error of a dispatcher (an unknown queue): run() throws it. */
  error: Error | null = null;
  private readonly slots: Slots;
  private stopping = false;
  private wake?: () => void;
  private readonly stopped: Promise<void>;
  private readonly runs = new Set<Promise<void>>();
  private dispatchers: Promise<void>[] = [];

  constructor(readonly app: App, opts: WorkerOptions) {
    this.queues = opts.queues ?? ["default"];
    this.concurrency = opts.concurrency ?? 8;
    this.poll = opts.poll ?? 1;
    if (!Array.isArray(this.queues) || this.queues.length === 0 || this.queues.some((q) => typeof q !== "string" || !q.trim())) {
      throw new TypeError("worker queues must be a non-empty array of queue names");
    }
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new RangeError(`worker concurrency must be an integer >= 1, not ${this.concurrency}`);
    }
    if (this.concurrency > app.poolSize - POOL_MARGIN) {
      // Each run holds one pooled connection for its whole body (sleeps and recv included).
      throw new RangeError(`worker concurrency ${this.concurrency} needs a larger pool: App({ poolSize >= ` +
        `${this.concurrency + POOL_MARGIN} }) (it is ${app.poolSize}; ${POOL_MARGIN} are kept for waits and child starts)`);
    }
    if (!(this.poll > 0)) throw new RangeError(`worker poll must be > 0 seconds, not ${this.poll}`);
    this.slots = new Slots(this.concurrency);
    this.stopped = new Promise((r) => { this.wake = r; });
  }

  get isStopping(): boolean { return this.stopping; }
  /** Runs in flight now. */
  get inFlight(): number { return this.runs.size; }

  /** Starts dequeuing in the background; resolves once the worker is registered and dequeuing. */
  async start(): Promise<this> {
    await this.app.launch();
    await this.recoverOwnRuns();
    this.dispatchers = this.queues.map((q) => this.dispatch(q));
    return this;
  }

  /**
   * Stops dequeuing; with drain (default), waits for the runs in flight to end, for at most
   * `timeout` seconds when given. Runs still in flight after that stay PENDING when the process
   * exits: a worker restarted with the same executorId takes them back, otherwise they go back
   * to their queue when this executor's lease expires.
   */
  async stop(opts: { drain?: boolean; timeout?: number | null } = {}): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await Promise.allSettled(this.dispatchers);
    if (opts.drain === false) return;
    const all = Promise.allSettled([...this.runs]).then(async () => {
      while (this.runs.size) await Promise.allSettled([...this.runs]);
    });
    if (opts.timeout == null) return all;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => { timer = setTimeout(r, opts.timeout! * 1000); })]);
    clearTimeout(timer);
    if (this.runs.size) {
      this.app.log("warn", `worker ${this.app.executorId} stops with ${this.runs.size} run(s) in flight: they stay ` +
        "PENDING and resume after its lease expires (or when it restarts)");
    }
  }

  /**
   * Runs until SIGTERM or SIGINT (or stop()), then drains (for at most drainTimeout seconds)
   * and resolves. A second SIGTERM or SIGINT exits the process at once (code 128 + signal).
   */
  async run(opts: { drainTimeout?: number | null } = {}): Promise<void> {
    const numbers: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (this.stopping) {
        this.app.log("warn", `worker ${this.app.executorId}: second ${signal}, exiting without waiting for its runs`);
        process.exit(128 + numbers[signal]);
      }
      this.stopping = true;
      this.wake?.();
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      await this.start();
      await this.stopped;
      await this.stop({ drain: true, timeout: opts.drainTimeout ?? null });
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
    }
    if (this.error) throw this.error;
  }

  // -- claiming ---------------------------------------------------------------------------

  private async recoverOwnRuns(): Promise<void> {
    const rows = await this.app.queryRetrying(sql.OWN_PENDING, [this.app.executorId]);
    for (const r of rows) {
      while (!(await this.slots.acquire(60_000))) { /* wait for a slot */ }
      this.submit(r.workflow_id, r.name, r.input, null);
    }
  }

  private submit(workflowId: string, name: string, input: unknown, lastStep: number | null): void {
    const p: Promise<void> = this.execute(workflowId, name, input, lastStep)
      .catch((e) => this.app.log("error", `run ${workflowId} could not be executed: ${(e as Error)?.message ?? e}`))
      .finally(() => { this.runs.delete(p); this.slots.release(); });
    this.runs.add(p);
  }

  private async execute(workflowId: string, name: string, input: unknown, lastStep: number | null): Promise<void> {
    let wf;
    try {
      wf = this.app.workflowDef(name);
    } catch (e) {
      if (!(e instanceof WorkflowNotRegistered)) throw e;
      // Not a hang: the run fails with a clear error that result() rethrows.
      this.app.log("error", `${e.message} (run ${workflowId})`);
      await this.app.callRetrying(sql.FAIL, [workflowId, dumps(errorOf(e)), this.app.executorId]);
      return;
    }
    if (lastStep === null) { // a run of ours from before a crash: claim it again
      const row = await this.app.callRetrying(sql.START, [name, dumps(input), workflowId, this.app.executorId, null, null]);
      if (!row?.claimed) return;
      lastStep = row.last_step as number;
    }
    await spawn(this.app, wf, workflowId, input, lastStep);
  }

  private async dispatch(queue: string): Promise<void> {
    let client: pg.Client | undefined;
    let delay = 50;
    while (!this.stopping) {
      if (!(await this.slots.acquire(this.poll * 1000))) continue;
      let taken = 1;
      while (taken < this.concurrency && this.slots.tryAcquire()) taken++;
      let rows: any[] = [];
      try {
        if (this.stopping) throw new Stop();
        client ??= await this.app.dedicated();
        const res = await client.query({ ...sql.DEQUEUE, values: [queue, this.app.executorId, taken, this.poll] });
        rows = res.rows;
        delay = 50;
      } catch (e) {
        if (e instanceof Stop) {
          // stopping before the call: nothing claimed
        } else if (sqlstateOf(e) === "WF004") { // our executor row is gone: register again
          await this.app.register().catch(() => sleepMs(delay));
        } else if (!isDisconnect(e)) {
          const err = translate(e, `dequeue from ${JSON.stringify(queue)}`);
          this.error = err instanceof Error ? err : new Error(String(err));
          this.app.log("error", `worker stops: ${this.error.message}`);
          this.stopping = true;
          this.wake?.();
        } else {
          // A lost server, or a failed connect (DNS, refused, too many clients, a database not
          // accepting connections, a timeout): transient, retried for as long as the worker runs.
          this.app.log("warn", `dequeue from ${queue} failed (${(e as Error).message}); reconnecting in ${delay} ms`);
          client?.end().catch(() => undefined);
          client = undefined;
          await sleepMs(delay);
          delay = Math.min(delay * 2, 2000);
        }
      }
      for (const r of rows) this.submit(r.workflow_id, r.name, r.input, r.last_step);
      for (let i = rows.length; i < taken; i++) this.slots.release();
    }
    await client?.end().catch(() => undefined);
  }
}

class Stop extends Error {}
