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

test("a run older than reconnectTimeout survives a backend termination and finishes", async () => {
  const app = newApp({ reconnectTimeout: 1 });
  const double = app.step("double", (x) => 2 * x);
  const waiter = app.workflow("waiter", async (x) => {
    const y = await double(x);
    const msg = await app.recv("go", { timeout: 120 });
    return `${y} ${msg}`;
  });
  const started = Date.now();
  const h = await app.start(waiter, [21], { workflowId: "old-1" });
  const pids = await waitFor(async () => { const p = await backends("%workflow.recv%"); return p.length ? p : null; }, "the run to wait in recv");
  await waitFor(() => Date.now() - started > 2500, "the run to be older than its reconnectTimeout");
  await terminate(pids);
  await waitFor(async () => (await backends("%workflow.recv%")).some((p) => !pids.includes(p)), "the replay to wait in recv again");
  await app.send("old-1", "now", { topic: "go" });
  assert.equal(await h.result({ timeout: 60 }), "42 now");
  assert.ok(app.logs.some((l) => /old-1 lost its connection/.test(l)), app.logs.join("\n"));
});

test("a run whose reconnect gives up is failed (ERROR), not left PENDING", async () => {
  const app = newApp({ reconnectTimeout: 1 });
  const stuck = app.workflow("stuck", async () => app.recv("never", { timeout: 120 }));
  const h = await app.start(stuck, [], { workflowId: "stuck-1" });
  await waitFor(async () => (await backends("%workflow.recv%")).length > 0, "the run to wait in recv");
  await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
  await terminateAll();
  await waitFor(() => app.logs.some((l) => /stuck-1.*(giving up|failing it)/.test(l)), "the SDK to give up on stuck-1");
  await admin("postgres", `ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
  await assert.rejects(h.result({ timeout: 60 }), WorkflowFailed);
  assert.equal(await h.status(), "ERROR");
});

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
