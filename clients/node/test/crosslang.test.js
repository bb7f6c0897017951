// Runs cross languages: a run enqueued by the Python SDK (clients/python) is executed by a Node
// worker, and Python reads the Node run's output and error. Skipped without python3 + psycopg.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { App } = require("../dist");
const { scratchDb, HOST, PORT, USER } = require("./helpers");

const pySrc = path.join(__dirname, "..", "..", "python", "src");
const hasPython = spawnSync("python3", ["-c", "import psycopg, psycopg_pool, pg_workflow"], { env: { ...process.env, PYTHONPATH: pySrc } }).status === 0;

let db, app;
before(async () => { if (hasPython) { db = await scratchDb("xlang"); app = new App({ ...db.config }); } });
after(async () => { if (hasPython) { await app.close(5); await db.drop(); } });

test("Python enqueues, a Node worker runs it, Python reads output and error", { skip: !hasPython && "python3 with psycopg is not available" }, async () => {
  const double = app.step("double", (x) => 2 * x);
  app.workflow("xlang", async (word, n) => ({ word, doubled: await double(n) }));
  app.workflow("xlangFails", async () => { throw new RangeError("from node"); });
  const w = app.worker({ queues: ["default"], concurrency: 2, poll: 0.2 });
  await w.start();
  try {
    const script = `
import json, sys, pg_workflow as pw
app = pw.App(sys.argv[1])
@app.workflow(name="xlang")
def xlang(word, n): ...
@app.workflow(name="xlangFails")
def fails(): ...
print(json.dumps(app.enqueue("default", xlang, "hi", 21, workflow_id="xl-1").result(timeout=60)))
try:
    app.enqueue("default", fails, workflow_id="xl-2").result(timeout=60)
except pw.WorkflowFailed as e:
    print(json.dumps([e.type_name, e.message, "RangeError" in (e.traceback or "")]))
app.close()
`;
    const dsn = `host=${HOST} port=${PORT} user=${USER} dbname=${db.name}`;
    const { spawn } = require("node:child_process");
    const out = await new Promise((resolve, reject) => {
      const p = spawn("python3", ["-c", script, dsn], { env: { ...process.env, PYTHONPATH: pySrc } });
      let stdout = "", stderr = "";
      p.stdout.on("data", (d) => { stdout += d; });
      p.stderr.on("data", (d) => { stderr += d; });
      p.on("exit", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`python exited ${code}: ${stderr}`))));
    });
    const [first, second] = out.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(first, { word: "hi", doubled: 42 });
    assert.deepEqual(second, ["RangeError", "from node", true]);
  } finally {
    await w.stop();
  }
});
