// Inputs: {} is no arguments (as in Python); a run that start() claims again (its own run
// after a crash, or one whose lease expired) replays with its stored input (first input wins).
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App } = require("../dist");
const { scratchDb } = require("./helpers");

let db, app;
before(async () => {
  db = await scratchDb("input");
  app = new App({ ...db.config, executorId: "input-exec" });
});
after(async () => { await app.close(5); await db.drop(); });

test("an input of {} (psql, another SDK) is read as no arguments", async () => {
  app.workflow("argc", async (...args) => args.length);
  await db.query("SELECT workflow.enqueue('default', 'argc', '{}'::jsonb, 'argc-1')");
  const w = app.worker({ concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    assert.equal(await app.handle("argc-1").result({ timeout: 60 }), 0);
  } finally {
    await w.stop();
  }
});

test("start() of an existing run it claims replays with the stored input, not the new arguments", async () => {
  const echo = app.workflow("echo", async (x) => x);
  // The run as this executor left it when its process died: PENDING, claimed by input-exec.
  await db.query("SELECT workflow.register_executor('input-exec')");
  await db.query("SELECT workflow.start('echo', '[\"first\"]'::jsonb, 'echo-1', 'input-exec')");
  const h = await app.start(echo, ["second"], { workflowId: "echo-1" });
  assert.equal(await h.result({ timeout: 60 }), "first");
  const row = (await db.query("SELECT status, output FROM workflow.runs WHERE workflow_id = 'echo-1'")).rows[0];
  assert.deepEqual(row, { status: "SUCCESS", output: "first" });
});
