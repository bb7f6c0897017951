// The pool: a body waiting on its local children cannot starve it (children run on
// connections outside the pool); a pool wait has a timeout and is retried.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App } = require("../dist");
const { scratchDb, waitFor } = require("./helpers");

let db, app;
before(async () => {
  db = await scratchDb("pool");
  app = new App({ ...db.config, poolSize: 5 });
});
after(async () => { await app.close(5); await db.drop(); });

test("a worker whose runs wait on children (and grandchildren) with a small pool does not deadlock", async () => {
  const nap = app.step("nap", () => new Promise((r) => setTimeout(r, 200)));
  const leaf = app.workflow("leaf", async (x) => { await nap(); return x; });
  const mid = app.workflow("mid", async (x) => { await nap(); return (await leaf(x)) * 10; });
  app.workflow("root", async (n) => {
    const xs = await Promise.all(Array.from({ length: n }, (_, i) => mid(i + 1)));
    return xs.reduce((a, b) => a + b, 0);
  });
  const w = app.worker({ concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    const h = await app.enqueue("default", "root", [8]);
    assert.equal(await h.result({ timeout: 90 }), 360);
  } finally {
    await w.stop();
  }
});

test("a wait for a pooled connection times out and is retried (the call succeeds once one is free)", async () => {
  const logs = [];
  const small = new App({ ...db.config, poolSize: 1, connectionTimeoutMillis: 300, logger: (l, m) => logs.push(m) });
  try {
    const held = await small.connect();
    const call = small.list();
    await waitFor(() => logs.some((m) => /timeout exceeded when trying to connect.*retrying/.test(m)), "a pool wait to time out");
    held.release();
    assert.ok(Array.isArray(await call));
  } finally {
    await small.close(1);
  }
});
