/**
 * This process's executor lease: renewed three times per lease on a connection of its own, so
 * that a pool busy with long waits can never starve the heartbeat.
 */
import type pg from "pg";
import { destroy, type App } from "./app";
import { sqlstateOf } from "./errors";
import * as sql from "./sql";

export class Heartbeat {
  private client?: pg.Client;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private beating?: Promise<void>;
  private delay = 100;

  constructor(private readonly app: App, private lease: number) {
    this.schedule(this.interval());
  }

  /** Three beats per lease: one lost beat never expires it (the lease may change on a reload). */
  private interval(): number {
    return Math.max(50, Math.min((this.lease / 3) * 1000, 10_000));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => { this.beating = this.beat(); }, ms);
    this.timer.unref(); // the heartbeat alone keeps no process alive
  }

  /**
   * How long a beat's connect and statement may take: a third of the lease (at least 1 s), so a
   * route that silently drops packets cannot hold the heartbeat past the lease (Node has no
   * tcp_user_timeout): the connection is abandoned and the next beat reconnects.
   */
  private timeoutMs(): number {
    return Math.max(1000, Math.min((this.lease / 3) * 1000, this.app.pgConfig.connectionTimeoutMillis || 10_000));
  }

  private async beat(): Promise<void> {
    try {
      const timeout = this.timeoutMs();
      if (!this.client) {
        this.client = await this.app.dedicated({ connectionTimeoutMillis: timeout });
        unrefSocket(this.client);
      }
      const call = (stmt: sql.Stmt, values: unknown[]) =>
        this.client!.query({ ...stmt, values, query_timeout: timeout } as never) as unknown as Promise<pg.QueryResult>;
      try {
        const res = await call(sql.HEARTBEAT, [this.app.executorId]);
        this.lease = Number(res.rows[0].lease);
      } catch (e) {
        if (sqlstateOf(e) !== "WF004") throw e;
        // Unknown executor (its row was deleted, or the database restored): register again.
        const res = await call(sql.REGISTER, [this.app.executorId, this.app.appVersion]);
        this.lease = Number(res.rows[0].lease);
      }
      this.delay = 100;
      this.schedule(this.interval());
    } catch (e) {
      this.app.log("warn", `heartbeat of ${this.app.executorId} failed (${(e as Error).message}); retrying in ${this.delay} ms`);
      const c = this.client;
      this.client = undefined;
      if (c) destroy(c); // a timed-out statement may sit on a dead route: end() could wait forever
      this.schedule(this.delay);
      this.delay = Math.min(this.delay * 2, Math.max(200, (this.lease / 3) * 1000));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.beating?.catch(() => undefined);
    await this.client?.end().catch(() => undefined);
    this.client = undefined;
  }
}

/** Lets the process exit while this connection is idle. */
export function unrefSocket(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream;
  stream?.unref?.();
}
