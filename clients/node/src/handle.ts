/** A handle on a run: its id, its status and its result, from this process or any other. */
import type { App } from "./app";
import { WorkflowFailed, WorkflowTimeout } from "./errors";
import { LocalOutcome, outcome } from "./execution";
import * as sql from "./sql";

export class WorkflowHandle<R = unknown> {
  constructor(
    readonly app: App,
    readonly workflowId: string,
    /** Set when this process runs the body: no database wait needed. */
    private readonly local?: Promise<LocalOutcome>,
  ) {}

  /** PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED; null when unknown. */
  async status(): Promise<string | null> {
    const row = await this.app.callRetrying(sql.STATUS, [this.workflowId]);
    return row ? row.status : null;
  }

  /**
   * The output. Throws WorkflowFailed (the original type name, message and traceback),
   * WorkflowCancelled, or WorkflowTimeout when the run has not ended within `timeout` seconds.
   */
  async result(opts: { timeout?: number | null } = {}): Promise<R> {
    const timeout = opts.timeout ?? null;
    if (timeout !== null && !(typeof timeout === "number" && timeout >= 0)) {
      throw new RangeError(`result(): timeout must be a number of seconds >= 0, not ${timeout}`);
    }
    const deadline = timeout === null ? null : Date.now() + timeout * 1000;
    if (this.local) {
      let timer: NodeJS.Timeout | undefined;
      const expired = Symbol("expired");
      const local = await Promise.race([
        this.local,
        ...(timeout === null ? [] : [new Promise<typeof expired>((r) => { timer = setTimeout(() => r(expired), timeout * 1000); })]),
      ]).finally(() => clearTimeout(timer));
      if (local === expired) throw new WorkflowTimeout(`workflow ${this.workflowId} has not ended after ${timeout}s`);
      if (local) {
        if (local.status === "ERROR") throw WorkflowFailed.fromError(this.workflowId, local.error);
        return local.value as R;
      }
    }
    const left = deadline === null ? null : Math.max(0, deadline - Date.now()) / 1000;
    const row = await this.app.callRetrying(sql.WAIT, [this.workflowId, left]);
    if (!row || !sql.TERMINAL.has(row.status)) {
      throw new WorkflowTimeout(`workflow ${this.workflowId} is ${row?.status ?? "unknown"} after ${timeout}s`);
    }
    return outcome(this.workflowId, row.status, row.output, row.error) as R;
  }

  /** Cancels the run; its body stops at its next step. False if it had already ended. */
  async cancel(): Promise<boolean> {
    return this.app.cancel(this.workflowId);
  }

  getEvent(key: string, opts: { timeout?: number } = {}): Promise<unknown> {
    return this.app.getEvent(this.workflowId, key, opts);
  }
}
