// One library, both workloads, in this process: prints "W1 W2" in workflows per second.
//   node bench.js dbos|dbos-fast|hand|sdk N
// W1: N ten-step workflows one after another (each step returns a small object).
// W2: N such workflows enqueued, drained by 16 concurrent workers in this process; the clock
//     runs from the first enqueue until the last run has ended, workers already started.
// Env: BENCH_HOST, BENCH_PORT, BENCH_DB (the pg_workflow database), BENCH_QUEUE (our queue for
// W2, created beforehand), DBOS_URL / DBOS_FAST_URL (DBOS's system databases), WARMUP.
"use strict";
const { randomUUID } = require("node:crypto");
const path = require("node:path");

const STEPS = 10, WORKERS = 16, WARMUP = Number(process.env.WARMUP || 10);
const stepOutput = (n, i) => ({ n, step: i, ok: true });
const pgConfig = () => ({ host: process.env.BENCH_HOST, port: Number(process.env.BENCH_PORT), user: "postgres", database: process.env.BENCH_DB });
async function timed(fn) { const t0 = process.hrtime.bigint(); await fn(); return Number(process.hrtime.bigint() - t0) / 1e9; }

// --- (a) DBOS Transact-ts ------------------------------------------------------------------
async function benchDbos(n, fast) {
  const { DBOS } = require("@dbos-inc/dbos-sdk");
  DBOS.setConfig({ name: "pgwf-nodebench", systemDatabaseUrl: process.env[fast ? "DBOS_FAST_URL" : "DBOS_URL"],
    applicationVersion: "bench", logLevel: "warn" });
  const step = DBOS.registerStep(async (wfN, i) => stepOutput(wfN, i), { name: "step" });
  const tenSteps = DBOS.registerWorkflow(async (wfN) => {
    let last;
    for (let i = 1; i <= STEPS; i++) last = await step(wfN, i);
    return last;
  }, { name: "tenSteps" });
  await DBOS.launch();
  const queue = fast ? "w2_fast" : "w2";
  await DBOS.registerQueue(queue, fast ? { workerConcurrency: WORKERS, minPollingIntervalMs: 10 } : { workerConcurrency: WORKERS });
  try {
    for (let k = 0; k < WARMUP; k++) await (await DBOS.startWorkflow(tenSteps)(k)).getResult();
    const w1 = async () => { for (let k = 0; k < n; k++) await (await DBOS.startWorkflow(tenSteps)(k)).getResult(); };
    const w2 = async () => {
      const hs = [];
      for (let k = 0; k < n; k++) hs.push(await DBOS.startWorkflow(tenSteps, { queueName: queue })(k));
      for (const h of hs) await h.getResult();
    };
    return fast ? [await timed(w2)] : [await timed(w1), await timed(w2)];
  } finally {
    await DBOS.shutdown();
  }
}

// --- (b) hand-written pg over our SQL --------------------------------------------------------
async function benchHand(n) {
  const pg = require("pg");
  const queue = process.env.BENCH_QUEUE;
  const executor = `hand-${randomUUID()}`;
  const q = (c, name, text, values) => c.query({ name, text, values });
  async function runBody(c, wid, wfN) {
    let last;
    for (let i = 1; i <= STEPS; i++) {
      last = stepOutput(wfN, i);
      await q(c, "put", "SELECT workflow.step_put($1, $2, $3, $4::jsonb, NULL, $5)", [wid, i, `step${i}`, JSON.stringify(last), executor]);
    }
    await q(c, "finish", "SELECT workflow.finish($1, $2::jsonb, $3)", [wid, JSON.stringify(last), executor]);
  }
  const conn = new pg.Client(pgConfig());
  await conn.connect();
  await conn.query("SELECT workflow.register_executor($1, 'bench')", [executor]);
  async function one(k) {
    const wid = randomUUID();
    const r = (await q(conn, "start", "SELECT status, last_step, claimed FROM workflow.start('tenSteps', $1::jsonb, $2, $3)",
      [JSON.stringify([k]), wid, executor])).rows[0];
    if (!r.claimed || r.last_step !== 0) throw new Error(`unexpected start ${JSON.stringify(r)}`);
    await runBody(conn, wid, k);
  }
  for (let k = 0; k < WARMUP; k++) await one(k);
  const t1 = await timed(async () => { for (let k = 0; k < n; k++) await one(k); });
  // W2: 16 dequeuing loops, each on its own connection, started before the clock.
  const clients = await Promise.all(Array.from({ length: WORKERS }, async () => { const c = new pg.Client(pgConfig()); await c.connect(); return c; }));
  let done = 0, stop = false, finished;
  const allDone = new Promise((r) => { finished = r; });
  const loops = clients.map(async (c) => {
    while (!stop) {
      const row = (await q(c, "deq", "SELECT workflow_id, input FROM workflow.dequeue($1, $2, 1, '200 ms')", [queue, executor])).rows[0];
      if (!row) continue;
      await runBody(c, row.workflow_id, row.input[0]);
      if (++done === n) finished();
    }
  });
  const t2 = await timed(async () => {
    for (let k = 0; k < n; k++) {
      await q(conn, "enq", "SELECT workflow.enqueue($1, 'tenSteps', $2::jsonb, app_version => 'bench')", [queue, JSON.stringify([k])]);
    }
    await allDone;
  });
  stop = true;
  await Promise.all(loops);
  await Promise.all([...clients, conn].map((c) => c.end()));
  return [t1, t2];
}

// --- (c) our SDK (clients/node) -------------------------------------------------------------
async function benchSdk(n) {
  const { App } = require(path.join(__dirname, "..", "..", "clients", "node", "dist"));
  const app = new App({ ...pgConfig(), appVersion: "bench" });
  const step = app.step("step", async (wfN, i) => stepOutput(wfN, i));
  const tenSteps = app.workflow("tenSteps", async (wfN) => {
    let last;
    for (let i = 1; i <= STEPS; i++) last = await step(wfN, i);
    return last;
  });
  for (let k = 0; k < WARMUP; k++) await (await app.start(tenSteps, [k])).result();
  const t1 = await timed(async () => { for (let k = 0; k < n; k++) await (await app.start(tenSteps, [k])).result(); });
  const worker = app.worker({ queues: [process.env.BENCH_QUEUE], concurrency: WORKERS });
  await worker.start();
  try {
    const t2 = await timed(async () => {
      const hs = [];
      for (let k = 0; k < n; k++) hs.push(await app.enqueue(process.env.BENCH_QUEUE, tenSteps, [k]));
      for (const h of hs) await h.result();
    });
    return [t1, t2];
  } finally {
    await worker.stop();
    await app.close();
  }
}

(async () => {
  const [lib, nArg] = process.argv.slice(2);
  const n = Number(nArg);
  const fn = { dbos: (n) => benchDbos(n, false), "dbos-fast": (n) => benchDbos(n, true), hand: benchHand, sdk: benchSdk }[lib];
  if (!fn) throw new Error(`unknown library ${lib}`);
  const times = await fn(n);
  console.log(times.map((t) => (n / t).toFixed(1)).join(" "));
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
