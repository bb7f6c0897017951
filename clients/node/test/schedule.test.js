// Schedules need the server's scheduler, which serves the `postgres` database.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { randomUUID } = require("node:crypto");
const { App } = require("../dist");
const { admin, config } = require("./helpers");

const tag = randomUUID().slice(0, 8);
const queue = `node_sched_${tag}`, name = `node-every-second-${tag}`;
let app;
before(async () => {
  await admin("postgres", "CREATE EXTENSION IF NOT EXISTS pg_workflow");
  app = new App({ ...config("postgres") });
});
after(async () => {
  await app.unschedule(name).catch(() => undefined);
  await app.close(5);
  await admin("postgres", "SELECT workflow.drop_queue($1)", [queue]).catch(() => undefined);
});

test("app.schedule: each fire enqueues the workflow with the schedule's arguments; a worker runs it", async () => {
  const seen = [];
  const report = app.workflow(`nodeReport-${tag}`, async (what, n) => { seen.push([what, n]); return n; });
  await app.createQueue(queue);
  const next = await app.schedule(name, "* * * * * *", report, ["tick", 3], { queue });
  assert.ok(next instanceof Date);
  const w = app.worker({ queues: [queue], concurrency: 2, poll: 0.2 });
  await w.start();
  try {
    const deadline = Date.now() + 60_000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(seen[0], ["tick", 3]);
  } finally {
    await app.unschedule(name);
    await w.stop();
  }
  const runs = await app.list({ name: `nodeReport-${tag}` });
  assert.ok(runs.length >= 1);
  assert.deepEqual(runs[runs.length - 1].input, ["tick", 3]);
  await assert.rejects(app.schedule(`${name}-bad`, "not cron", report), (e) => e.code === "22023");
});
