// Crash safety with real processes: a worker SIGKILLed mid-run, restarted with the same
// executorId, finishes the run with its transactional step done exactly once; SIGTERM drains.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const path = require("node:path");
const { App } = require("../dist");
const { scratchDb, waitFor } = require("./helpers");

let db, app;
const procs = [];
before(async () => {
  db = await scratchDb("crash");
  await db.query("CREATE TABLE effects(workflow_id text NOT NULL)");
  app = new App({ ...db.config, appVersion: "crash" });
  app.workflow("crashy", async () => "not run here");
  app.workflow("napping", async () => "not run here");
});
after(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  await app.close(5);
  await db.drop();
});

function startWorker(env) {
  const p = spawn(process.execPath, [path.join(__dirname, "fixtures", "worker.js")], {
    env: { ...process.env, PGWF_DB: db.name, ...env }, stdio: ["ignore", "pipe", "inherit"],
  });
  p.lines = [];
  p.stdout.setEncoding("utf8");
  p.stdout.on("data", (d) => p.lines.push(...d.split("\n").filter(Boolean)));
  p.exited = new Promise((r) => p.on("exit", (code, signal) => r({ code, signal })));
  procs.push(p);
  return p;
}

const count = async (id) => (await db.query("SELECT count(*)::int AS n FROM effects WHERE workflow_id = $1", [id])).rows[0].n;

test("SIGKILL mid-run: the restarted worker (same executorId) finishes it, the transaction ran once", async () => {
  const h = await app.enqueue("default", "crashy", ["k-1"], { workflowId: "k-1" });
  const first = startWorker({ EXECUTOR_ID: "crash-exec", HANG: "1" });
  await waitFor(() => first.lines.includes("HANGING"), "the worker to hang in step 2", 60);
  assert.equal(await count("k-1"), 1);
  first.kill("SIGKILL");
  assert.equal((await first.exited).signal, "SIGKILL");
  assert.equal(await h.status(), "PENDING");
  const second = startWorker({ EXECUTOR_ID: "crash-exec", HANG: "0" });
  assert.equal(await h.result({ timeout: 60 }), "recorded done");
  assert.equal(await count("k-1"), 1); // exactly once, though the body ran twice
  const steps = (await db.query("SELECT step, step_name FROM workflow.steps WHERE workflow_id = 'k-1' ORDER BY step")).rows;
  assert.deepEqual(steps.map((s) => s.step_name), ["record", "hang"]);
  second.kill("SIGTERM");
  assert.equal((await second.exited).code, 0);
});

test("SIGTERM drains: the run in flight (in a durable sleep) ends, then run() resolves", async () => {
  const w = startWorker({ EXECUTOR_ID: "drain-exec" });
  await waitFor(() => w.lines.includes("READY"), "the worker to start", 60);
  const h = await app.enqueue("default", "napping", [1.5]);
  await waitFor(() => w.lines.includes("NAPPING"), "the run to start", 60);
  w.kill("SIGTERM");
  const { code } = await w.exited;
  assert.equal(code, 0);
  assert.ok(w.lines.includes("DRAINED"));
  assert.equal(await h.status(), "SUCCESS");
});

test("a second SIGTERM exits at once; the run stays PENDING for a restart to finish", async () => {
  const w = startWorker({ EXECUTOR_ID: "impatient-exec" });
  await waitFor(() => w.lines.includes("READY"), "the worker to start", 60);
  const h = await app.enqueue("default", "napping", [2]);
  await waitFor(() => w.lines.includes("NAPPING"), "the run to start", 60);
  w.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 200));
  w.kill("SIGTERM");
  const { code } = await w.exited;
  assert.equal(code, 128 + 15);
  assert.equal(await h.status(), "PENDING");
  const again = startWorker({ EXECUTOR_ID: "impatient-exec" });
  assert.equal(await h.result({ timeout: 60 }), "rested"); // it slept only what was left
  again.kill("SIGTERM");
  await again.exited;
});
