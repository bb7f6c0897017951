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
