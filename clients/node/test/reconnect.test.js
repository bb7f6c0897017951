// Lost connections of running workflows and client calls: every outage gets its own
// reconnect deadline; connect-phase errors are transient; a run the SDK gives up on is
// failed, never left PENDING under a live lease.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App, WorkflowFailed } = require("../dist");
const { scratchDb, admin, waitFor } = require("./helpers");

let db;
const apps = [];
function newApp(opts = {}) {
  const logs = [];
  const app = new App({ ...db.config, logger: (level, m) => logs.push(`${level}: ${m}`), ...opts });
  app.logs = logs;
  apps.push(app);
  return app;
}
before(async () => { db = await scratchDb("reconnect"); });
after(async () => {
  await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
  for (const a of apps) await a.close(5);
  await db.drop();
});

/** The backend pids of db running a statement that matches `like`. */
async function backends(like) {
  const r = await admin("postgres", "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE $2 AND state = 'active'",
    [db.name, like]);
  return r.rows.map((x) => x.pid);
}
const terminate = (pids) => admin("postgres", "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", [pids]);
const terminateAll = () => admin("postgres",
  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [db.name]);

test("client calls retry connect-phase errors (a name that does not resolve)", async () => {
  const app = newApp({ host: "pgwf-no-such-host.invalid", port: 5432, reconnectTimeout: 1 });
  await assert.rejects(app.list(), (e) => ["ENOTFOUND", "EAI_AGAIN"].includes(e.code));
  assert.ok(app.logs.some((l) => /database unavailable.*retrying/.test(l)), app.logs.join("\n"));
});

test("a worker keeps going through connect failures (database not accepting connections)", async () => {
  const app = newApp({ reconnectTimeout: 1 });
  app.workflow("hello", async (x) => `hello ${x}`);
  const w = app.worker({ concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    await terminateAll();
    await waitFor(() => app.logs.some((l) => /dequeue from default failed/.test(l)) || w.error, "the dequeue to fail");
    await waitFor(() => app.logs.filter((l) => /dequeue from default failed/.test(l)).length >= 3 || w.error, "more reconnects");
    await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    assert.equal(w.error, null);
    const h = await app.enqueue("default", "hello", ["world"]);
    assert.equal(await h.result({ timeout: 60 }), "hello world");
  } finally {
    await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
    await w.stop();
  }
});
