// A network that silently drops packets: the heartbeat's statement and connect have timeouts,
// so a dead route cannot hold the heartbeat past the lease; a client call's connect times out.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App } = require("../dist");
const { scratchDb, proxy, waitFor } = require("./helpers");

let db, px;
const apps = [];
before(async () => { db = await scratchDb("heartbeat"); px = await proxy(); });
after(async () => { for (const a of apps) await a.close(2); await px.close(); await db.drop(); });

const lastBeat = async (id) =>
  (await db.query("SELECT last_heartbeat FROM workflow.executor WHERE executor_id = $1", [id])).rows[0]?.last_heartbeat;

test("a heartbeat whose connection goes silent reconnects and renews the lease", async () => {
  const app = new App({ ...db.config, host: px.dir, executorId: "hb-exec", logger: () => undefined });
  apps.push(app);
  await app.launch();
  const registered = await lastBeat("hb-exec");
  const lease = Number((await db.query("SELECT setting::float8 / 1000 AS s FROM pg_settings WHERE name = 'workflow.executor_timeout'"))
    .rows[0]?.s ?? 30);
  // A beat after the registration: the heartbeat has its own connection now.
  await waitFor(async () => (await lastBeat("hb-exec")) > registered, "a beat on the heartbeat's connection", lease * 2 + 30);
  const silent = new Date();
  px.blackhole(); // the heartbeat's connection (and the pool's) now drop every byte
  // Renewed within the lease on a new connection (the dead one was abandoned).
  await waitFor(async () => (await lastBeat("hb-exec")) > silent, "the heartbeat to renew over a new connection", lease * 2 + 30);
});

test("a client call whose connect never completes times out, then fails", async () => {
  px.hangNew(true);
  try {
    const logs = [];
    const app = new App({ ...db.config, host: px.dir, reconnectTimeout: 1,
      logger: (l, m) => logs.push(m) });
    apps.push(app);
    const guard = new Promise((_, rej) => setTimeout(() => rej(new Error("the call hung")), 90_000).unref());
    // The default connect timeout (10 s) ends the attempt; past reconnectTimeout the call fails.
    await assert.rejects(Promise.race([app.list(), guard]), (e) => e.message !== "the call hung" && /timeout/i.test(e.message));
  } finally {
    px.hangNew(false);
  }
});
