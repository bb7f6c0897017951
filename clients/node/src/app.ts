/** The App: registration, the client calls, and this process's executor. */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import pg, { PoolClient, PoolConfig, QueryResultRow } from "pg";
import { dumps, encodeInput } from "./codec";
import { als, currentRun } from "./context";
import { ConnectFailed, ExtensionMissing, WorkflowNotRegistered, isDisconnect, sqlstateOf, translate, unwrap } from "./errors";
import { LocalOutcome, WorkflowDef, spawn } from "./execution";
import { WorkflowHandle } from "./handle";
import { Heartbeat } from "./heartbeat";
import {
  StepOptions, durableRecv, durableSend, durableSetEvent, durableSleep, runStep, runTransaction, sleepMs,
} from "./steps";
import * as sql from "./sql";
import { Worker, WorkerOptions } from "./worker";

export interface AppOptions extends Omit<PoolConfig, "max"> {
  /** This process's executor id (default `<host>-<pid>-<random>`); give long-lived workers a stable one. */
  executorId?: string;
  /** Runs record it; workers claim only runs of their version, or of none. */
  appVersion?: string | null;
  /** Pooled connections: one per running workflow, plus waits (64). */
  poolSize?: number;
  /** Seconds a call, or a running workflow, retries one outage of the server (300). */
  reconnectTimeout?: number;
  /** Where warnings go (default: console.warn / console.error). */
  logger?: (level: "info" | "warn" | "error", message: string) => void;
}

export interface StartOptions {
  workflowId?: string;
  /** Seconds until the run is cancelled (its deadline). */
  timeout?: number;
}

export interface EnqueueOptions extends StartOptions {
  priority?: number;
  deduplicationId?: string;
  partitionKey?: string;
  /** Seconds before the run becomes ENQUEUED (DELAYED meanwhile). */
  delay?: number;
}

/** A registered workflow: calling it runs it (a child run, inside a workflow) and returns its output. */
export type Workflow<A extends unknown[], R> = ((...args: A) => Promise<Awaited<R>>) & { readonly workflowName: string };

export interface RunInfo {
  workflowId: string; name: string; status: string; queue: string | null; executorId: string | null;
  appVersion: string | null; parentId: string | null; input: unknown; output: unknown; error: unknown;
  createdAt: Date; finishedAt: Date | null; lastStep: number;
}

type WorkflowRef = Workflow<any[], unknown> | string;

const DEFINED = Symbol("pgwf.workflow");

function checkName(what: string, name: unknown): string {
  if (typeof name !== "string" || name.trim() === "") throw new TypeError(`${what}: the name must be a non-empty string`);
  return name;
}

function checkSeconds(what: string, v: unknown, allowNull = true): number | null {
  if (v === undefined || v === null) {
    if (allowNull) return null;
    throw new TypeError(`${what} is required`);
  }
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new RangeError(`${what} must be a number of seconds >= 0, not ${String(v)}`);
  return v;
}

/** fn(), whose synchronous throw (bad input) becomes a rejection; its synchronous part still runs now. */
function attempt<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (e) {
    return Promise.reject(e);
  }
}

export function defaultExecutorId(): string {
  return `${hostname()}-${process.pid}-${randomUUID().slice(0, 6)}`;
}

export class App {
  readonly executorId: string;
  readonly appVersion: string | null;
  readonly poolSize: number;
  readonly reconnectTimeout: number;
  /** Runs whose body runs in this process now. */
  readonly local = new Map<string, Promise<LocalOutcome>>();
  readonly pgConfig: PoolConfig;
  private readonly workflows = new Map<string, WorkflowDef>();
  private pool?: pg.Pool;
  private launched?: Promise<void>;
  private heartbeat?: Heartbeat;
  private readonly logger: NonNullable<AppOptions["logger"]>;
  private closed = false;

  constructor(opts: AppOptions = {}) {
    const { executorId, appVersion, poolSize, reconnectTimeout, logger, ...pgConfig } = opts;
    this.executorId = executorId ?? defaultExecutorId();
    this.appVersion = appVersion ?? null;
    this.poolSize = poolSize ?? 64;
    this.reconnectTimeout = reconnectTimeout ?? 300;
    this.logger = logger ?? ((level, m) => (level === "error" ? console.error : console.warn)(`pg_workflow: ${m}`));
    // A connect (and a wait for a pooled connection) that never completes is an error, retried
    // like a lost server; keepalives find a dead peer of an idle connection.
    this.pgConfig = { keepAlive: true, keepAliveInitialDelayMillis: 10_000, connectionTimeoutMillis: 10_000, ...pgConfig };
  }

  log(level: "info" | "warn" | "error", message: string): void {
    if (level !== "info") this.logger(level, message);
  }

  // -- registration ----------------------------------------------------------------------

  /** A durable function. Calling the result runs it as a workflow (a child, inside a workflow). */
  workflow<A extends unknown[], R>(name: string, fn: (...args: A) => R | Promise<R>): Workflow<A, R> {
    checkName("app.workflow", name);
    if (typeof fn !== "function") throw new TypeError(`app.workflow(${JSON.stringify(name)}): fn must be a function`);
    const known = this.workflows.get(name);
    if (known && known.fn !== fn) throw new TypeError(`two workflows are named ${JSON.stringify(name)}`);
    this.workflows.set(name, { name, fn: fn as WorkflowDef["fn"] });
    const call = ((...args: A) => this.run(call, args)) as Workflow<A, R>;
    Object.defineProperty(call, "workflowName", { value: name });
    Object.defineProperty(call, DEFINED, { value: this });
    return call;
  }

  /** At least once: checkpointed after it returns; retried `retries` times with backoff. */
  step<A extends unknown[], R>(name: string, fn: (...args: A) => R | Promise<R>, opts: StepOptions = {}): (...args: A) => Promise<Awaited<R>> {
    checkName("app.step", name);
    if (typeof fn !== "function") throw new TypeError(`app.step(${JSON.stringify(name)}): fn must be a function`);
    for (const k of ["retries", "backoff", "backoffRate"] as const) {
      const v = opts[k];
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
        throw new RangeError(`app.step(${JSON.stringify(name)}): ${k} must be a number >= 0`);
      }
    }
    return (...args: A) => runStep(name, fn, args, opts) as Promise<Awaited<R>>;
  }

  /** Exactly once: fn(client, ...) runs in the transaction that commits its checkpoint. */
  transaction<A extends unknown[], R>(name: string, fn: (client: PoolClient, ...args: A) => R | Promise<R>): (...args: A) => Promise<Awaited<R>> {
    checkName("app.transaction", name);
    if (typeof fn !== "function") throw new TypeError(`app.transaction(${JSON.stringify(name)}): fn must be a function`);
    return (...args: A) => runTransaction(name, fn, args, () => this.connect()) as Promise<Awaited<R>>;
  }

  workflowDef(ref: WorkflowRef): WorkflowDef {
    const name = typeof ref === "string" ? ref : (ref as { workflowName?: string } | null)?.workflowName;
    const wf = name ? this.workflows.get(name) : undefined;
    if (!wf) {
      throw new WorkflowNotRegistered(`${typeof ref === "string" ? JSON.stringify(ref) : String((ref as any)?.name ?? ref)} ` +
        `is not a workflow of this App: register it with app.workflow(name, fn) (in the worker too)`);
    }
    return wf;
  }

  // -- connections -----------------------------------------------------------------------

  private getPool(): pg.Pool {
    if (!this.pool) {
      this.pool = new pg.Pool({ ...this.pgConfig, max: this.poolSize, allowExitOnIdle: true });
      this.pool.on("error", (e) => this.log("warn", `idle connection error: ${e.message}`));
      this.pool.on("connect", (c) => c.on("error", (e) => this.log("warn", `connection error: ${e.message}`)));
    }
    return this.pool;
  }

  /** True once close() was called (until the next launch): background retries stop. */
  get closing(): boolean { return this.closed; }

  /** A pooled connection (release it); a failed connect or pool wait throws ConnectFailed. */
  async connect(): Promise<PoolClient> {
    try {
      return await this.getPool().connect();
    } catch (e) {
      throw new ConnectFailed(e);
    }
  }

  /** A dedicated connection (the heartbeat's, a dequeuer's, a local child run's); ConnectFailed when it fails. */
  async dedicated(overrides: Partial<PoolConfig> = {}): Promise<pg.Client> {
    const client = new pg.Client({ ...this.pgConfig, ...overrides });
    client.on("error", (e) => this.log("warn", `connection error: ${e.message}`));
    try {
      await client.connect();
    } catch (e) {
      client.end().catch(() => undefined);
      throw new ConnectFailed(e);
    }
    return client;
  }

  /**
   * The connection a run's body executes on: pooled, or (a child started by a body running
   * here) a dedicated one outside the pool, so that parents waiting on their children can
   * never hold every pooled connection the children need.
   */
  async acquire(dedicated: boolean): Promise<{ client: PoolClient; release: (broken: boolean) => void }> {
    if (!dedicated) {
      const client = await this.connect();
      return { client, release: (broken) => client.release(broken ? true : undefined) };
    }
    const client = await this.dedicated();
    return {
      client: client as unknown as PoolClient,
      release: (broken) => {
        if (broken) destroy(client);
        else client.end().catch(() => undefined);
      },
    };
  }

  /** One statement on a pooled connection; a lost server is retried with backoff up to reconnectTimeout. */
  async callRetrying<R extends QueryResultRow = any>(stmt: sql.Stmt, values: unknown[]): Promise<R | undefined> {
    return (await this.queryRetrying<R>(stmt, values))[0];
  }

  /** Retries a lost or unreachable server (isDisconnect) until `deadline` (ms; reconnectTimeout from now). */
  async queryRetrying<R extends QueryResultRow = any>(stmt: sql.Stmt, values: unknown[], deadline?: number): Promise<R[]> {
    deadline ??= Date.now() + this.reconnectTimeout * 1000;
    let delay = 50, registered = false;
    for (;;) {
      try {
        const client = await this.connect();
        let broken = false;
        try {
          const res = await client.query<R>({ name: stmt.name, text: stmt.text, values });
          return res.rows;
        } catch (e) {
          broken = isDisconnect(e);
          throw e;
        } finally {
          client.release(broken ? true : undefined);
        }
      } catch (e) {
        if (sqlstateOf(e) === "WF004" && !registered && stmt !== sql.REGISTER && stmt !== sql.HEARTBEAT) {
          // Unknown executor (its row was deleted, e.g. after a long partition): register again.
          registered = true;
          await this.register();
          continue;
        }
        if (!isDisconnect(e) || Date.now() > deadline) throw translate(unwrap(e));
        this.log("warn", `database unavailable (${(e as Error)?.message}); retrying in ${delay} ms`);
      }
      await sleepMs(delay);
      delay = Math.min(delay * 2, 2000);
    }
  }

  /** Checks the extension, registers the executor, starts its heartbeat. Idempotent. */
  launch(): Promise<void> {
    this.closed = false; // usable again after close(): a later call reconnects
    this.launched ??= (async () => {
      const ext = await this.callRetrying(sql.EXTENSION, []);
      if (!ext) throw new ExtensionMissing("the database has no pg_workflow extension (CREATE EXTENSION pg_workflow)");
      this.heartbeat = new Heartbeat(this, await this.register());
    })().catch((e) => { this.launched = undefined; throw e; });
    return this.launched;
  }

  /** register_executor(executorId, appVersion); returns the lease in seconds. */
  async register(): Promise<number> {
    const row = await this.callRetrying(sql.REGISTER, [this.executorId, this.appVersion]);
    return Number(row?.lease ?? 30);
  }

  /** Waits (up to `wait` s) for the runs this process executes, then disconnects. */
  async close(wait = 30): Promise<void> {
    this.closed = true;
    const pending = Promise.allSettled([...this.local.values()]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pending, new Promise((r) => { timer = setTimeout(r, wait * 1000); })]);
    clearTimeout(timer);
    await this.heartbeat?.stop();
    this.heartbeat = undefined;
    this.launched = undefined;
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
  }

  // -- running workflows -----------------------------------------------------------------

  /**
   * Starts a run (idempotent on workflowId). When this executor claims it, the body runs in
   * this process. Inside a workflow, starts a child run (id `<parent>-<step>`, parent_id set).
   */
  start<A extends unknown[], R>(wf: Workflow<A, R> | string, args: A | unknown[] = [], opts: StartOptions = {}): Promise<WorkflowHandle<Awaited<R>>> {
    try {
      return this.startNow(wf, args, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The id of a run started or enqueued now: inside a workflow, a child's (`<parent>-<step>`,
   *  taking the step's number synchronously, so ids follow call order); else the given one or
   *  a random UUID. */
  private childIds(given: string | undefined): { id: string; parent: ReturnType<typeof currentRun>; parentId: string | null } {
    if (given !== undefined) checkName("workflowId", given);
    const parent = currentRun();
    if (!parent) return { id: given ?? randomUUID(), parent, parentId: null };
    const n = parent.nextStep();
    return { id: given ?? `${parent.workflowId}-${n}`, parent, parentId: parent.workflowId };
  }

  private startNow<A extends unknown[], R>(wf: Workflow<A, R> | string, args: A | unknown[], opts: StartOptions): Promise<WorkflowHandle<Awaited<R>>> {
    // Synchronous up to the step number: a child's id follows call order.
    const def = this.workflowDef(wf as WorkflowRef);
    const encoded = encodeInput(args);
    const timeout = checkSeconds("timeout", opts.timeout);
    const { id, parent, parentId } = this.childIds(opts.workflowId);
    return (async () => {
      const running = this.local.get(id);
      if (running) return new WorkflowHandle<Awaited<R>>(this, id, running);
      await this.launch();
      const params = [def.name, encoded, id, this.executorId, timeout, parentId];
      // A child starts on its parent's connection (in order with the parent's steps).
      const row = parent ? await parent.call(sql.START, params) : await this.callRetrying(sql.START, params);
      // A claimed run that already existed (ours before a crash, or an expired lease) replays
      // with its stored input, not these arguments: first input wins.
      // A child (parent set) executes on a dedicated connection, outside the pool's budget.
      const local = row?.claimed ? spawn(this, def, id, row.input, row.last_step, parent !== undefined) : undefined;
      return new WorkflowHandle<Awaited<R>>(this, id, local);
    })();
  }

  /** Runs a workflow to its end and returns its output (throws the body's own error when it fails). */
  async run<A extends unknown[], R>(wf: Workflow<A, R> | string, args: A | unknown[] = [], opts: StartOptions = {}): Promise<Awaited<R>> {
    const handle = await this.start(wf, args, opts);
    const local = (handle as unknown as { local?: Promise<LocalOutcome> }).local;
    const out = local ? await local : null;
    if (out?.status === "ERROR") throw out.original;
    if (out?.status === "SUCCESS") return out.value as Awaited<R>;
    return handle.result();
  }

  /** Puts a run on a queue for a worker of this appVersion (idempotent on workflowId). */
  enqueue<A extends unknown[], R>(queue: string, wf: Workflow<A, R> | string, args: A | unknown[] = [], opts: EnqueueOptions = {}): Promise<WorkflowHandle<Awaited<R>>> {
    try {
      return this.enqueueNow(queue, wf, args, opts);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private enqueueNow<A extends unknown[], R>(queue: string, wf: Workflow<A, R> | string, args: A | unknown[], opts: EnqueueOptions): Promise<WorkflowHandle<Awaited<R>>> {
    checkName("queue", queue);
    const def = this.workflowDef(wf as WorkflowRef);
    const encoded = encodeInput(args);
    const delay = checkSeconds("delay", opts.delay), timeout = checkSeconds("timeout", opts.timeout);
    const priority = opts.priority ?? 0;
    if (!Number.isInteger(priority)) throw new TypeError(`priority must be an integer, not ${String(priority)}`);
    const { id, parent, parentId } = this.childIds(opts.workflowId);
    const params = [queue, def.name, encoded, id, priority, opts.deduplicationId ?? null, opts.partitionKey ?? null,
      delay, timeout, this.appVersion, parentId];
    return (async () => {
      if (parent) await parent.call(sql.ENQUEUE, params);
      else await this.callRetrying(sql.ENQUEUE, params);
      return new WorkflowHandle<Awaited<R>>(this, id);
    })();
  }

  handle<R = unknown>(workflowId: string): WorkflowHandle<R> {
    checkName("workflowId", workflowId);
    const local = this.local.get(workflowId);
    return new WorkflowHandle<R>(this, workflowId, local);
  }

  // -- durable calls (inside a workflow body) --------------------------------------------

  /** A durable sleep: the wake-up time is recorded once. Outside a workflow or in a step: a plain sleep. */
  sleep(seconds: number): Promise<void> {
    return attempt(() => { checkSeconds("sleep", seconds, false); return durableSleep(seconds); });
  }

  /** Waits for and consumes one message sent to this workflow (null after the timeout, 60 s). */
  recv(topic: string | null = null, opts: { timeout?: number } = {}): Promise<unknown> {
    return attempt(() => durableRecv(topic, checkSeconds("recv timeout", opts.timeout ?? 60, false)!));
  }

  /** Publishes the latest value of `key` for getEvent readers. */
  setEvent(key: string, value: unknown): Promise<void> {
    return attempt(() => { checkName("setEvent key", key); return durableSetEvent(key, value); });
  }

  /**
   * Sends a message to a workflow. In a workflow body it is a step: delivered once, even on
   * replay (key `<workflow_id>:<step>`). Elsewhere the key is made up here, so a retried call
   * after a lost connection delivers once.
   */
  send(destinationId: string, message: unknown, opts: { topic?: string | null; idempotencyKey?: string } = {}): Promise<void> {
    return attempt(() => {
      checkName("send destination", destinationId);
      const run = currentRun();
      if (run && !opts.idempotencyKey) return durableSend(run, destinationId, message, opts.topic ?? null);
      const encoded = dumps(message, "the message");
      const key = opts.idempotencyKey ?? `send:${randomUUID()}`;
      return this.callRetrying(sql.SEND, [destinationId, encoded, opts.topic ?? null, key]).then(() => undefined);
    });
  }

  /** Waits until the workflow has set `key`, then returns its latest value (null after the timeout, 60 s). */
  async getEvent(workflowId: string, key: string, opts: { timeout?: number } = {}): Promise<unknown> {
    checkName("workflowId", workflowId);
    const timeout = checkSeconds("getEvent timeout", opts.timeout ?? 60, false);
    const row = await this.callRetrying(sql.GET_EVENT, [workflowId, key, timeout]);
    return row?.value ?? null;
  }

  /** The id of the workflow running here, or undefined. */
  get workflowId(): string | undefined { return als.getStore()?.run.workflowId; }

  // -- operations ------------------------------------------------------------------------

  /** The newest runs first; filter by status and workflow name. */
  async list(opts: { status?: string; name?: string; limit?: number } = {}): Promise<RunInfo[]> {
    const rows = await this.queryRetrying(sql.LIST, [opts.status ?? null, opts.name ?? null, opts.limit ?? 50]);
    return rows.map((r) => ({
      workflowId: r.workflow_id, name: r.name, status: r.status, queue: r.queue, executorId: r.executor_id,
      appVersion: r.app_version, parentId: r.parent_id, input: r.input, output: r.output, error: r.error,
      createdAt: r.created_at, finishedAt: r.finished_at, lastStep: r.last_step,
    }));
  }

  async cancel(workflowId: string): Promise<boolean> {
    checkName("workflowId", workflowId);
    const row = await this.callRetrying(sql.CANCEL, [workflowId]);
    return Boolean(row?.ok);
  }

  /** Puts a CANCELLED, ERROR or dead-lettered run back on its queue, from its checkpoints. */
  async resume(workflowId: string): Promise<WorkflowHandle> {
    checkName("workflowId", workflowId);
    await this.callRetrying(sql.RESUME, [workflowId]);
    return new WorkflowHandle(this, workflowId);
  }

  /** A new run with the input and the checkpoints of the steps before fromStep, enqueued. */
  async fork(workflowId: string, opts: { fromStep?: number; newWorkflowId?: string; queue?: string } = {}): Promise<WorkflowHandle> {
    checkName("workflowId", workflowId);
    const row = await this.callRetrying(sql.FORK, [workflowId, opts.fromStep ?? 1, opts.newWorkflowId ?? randomUUID(), opts.queue ?? "default"]);
    return new WorkflowHandle(this, row!.id);
  }

  /** Creates a queue (admin); an existing one is kept unless existOk is false. */
  async createQueue(name: string, opts: { concurrency?: number; workerConcurrency?: number; rateLimit?: number;
    ratePeriod?: number; partitionConcurrency?: number; existOk?: boolean } = {}): Promise<void> {
    checkName("createQueue", name);
    try {
      await this.callRetrying(sql.CREATE_QUEUE, [name, opts.concurrency ?? null, opts.workerConcurrency ?? null,
        opts.rateLimit ?? null, opts.ratePeriod ?? null, opts.partitionConcurrency ?? null]);
    } catch (e) {
      if ((e as { code?: string }).code === "42710" && opts.existOk !== false) return;
      throw e;
    }
  }

  /** A cron schedule: each fire enqueues wf(...args) on `queue` (default) for a worker. Returns the next fire time. */
  async schedule(name: string, cron: string, wf: WorkflowRef, args: unknown[] = [], opts: { queue?: string; timezone?: string } = {}): Promise<Date> {
    checkName("schedule", name);
    const def = this.workflowDef(wf);
    const row = await this.callRetrying(sql.SCHEDULE, [name, cron, def.name, encodeInput(args, "the schedule's input"),
      opts.queue ?? "default", opts.timezone ?? "UTC"]);
    return row!.next;
  }

  async unschedule(name: string): Promise<void> {
    await this.callRetrying(sql.UNSCHEDULE, [name]);
  }

  /** A worker that dequeues and runs this app's workflows: run() resolves after SIGTERM/SIGINT and a drain. */
  worker(opts: WorkerOptions = {}): Worker {
    return new Worker(this, opts);
  }
}

/** Closes a connection at once (a dead route would hold end() forever). */
export function destroy(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream;
  if (stream?.destroy) stream.destroy();
  else client.end().catch(() => undefined);
}
