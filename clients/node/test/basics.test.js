// The API against a real server: steps, transactions, durable calls, children, handles,
// queues and workers, operations, and the wire format shared with the Python SDK.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App, WorkflowFailed, WorkflowCancelled } = require("../dist");
const { scratchDb, waitFor } = require("./helpers");

let db, app;
before(async () => {
  db = await scratchDb("basics");
  await db.query("CREATE TABLE stock(sku text PRIMARY KEY, reserved int NOT NULL)");
  await db.query("INSERT INTO stock VALUES ('A-1', 0)");
  app = new App({ ...db.config, appVersion: "v1" });
});
after(async () => { await app.close(); await db.drop(); });

test("a workflow with a transaction, a step, sleep, events and recv", async () => {
  const reserve = app.transaction("reserve", async (client, sku) => {
    await client.query("UPDATE stock SET reserved = reserved + 1 WHERE sku = $1", [sku]);
    return { sku };
  });
  let attempts = 0;
  const charge = app.step("charge", async (amount) => {
    if (++attempts < 3) throw new Error("card declined");
    return `ch_${amount}`;
  }, { retries: 4, backoff: 0.01 });
  const order = app.workflow("order", async (orderId) => {
    const r = await reserve("A-1");
    const c = await charge(5);
    await app.sleep(0.1);
    await app.setEvent("stage", "charged");
    const ok = await app.recv("approval", { timeout: 30 });
    return { orderId, r, c, ok };
  });
  const h = await app.start(order, ["o-42"], { workflowId: "order-42" });
  assert.equal(h.workflowId, "order-42");
  assert.equal(await app.getEvent("order-42", "stage", { timeout: 30 }), "charged");
  await app.send("order-42", { approved: true }, { topic: "approval" });
  assert.deepEqual(await h.result({ timeout: 30 }), { orderId: "o-42", r: { sku: "A-1" }, c: "ch_5", ok: { approved: true } });
  assert.equal(await h.status(), "SUCCESS");
  assert.equal(attempts, 3);
  const steps = (await db.query("SELECT step, step_name FROM workflow.steps WHERE workflow_id = 'order-42' ORDER BY step")).rows;
  assert.deepEqual(steps.map((s) => s.step_name), ["reserve", "charge", "sleep", "set_event", "recv"]);
  // wire format: input is a JSON array of the arguments
  const run = (await db.query("SELECT input, app_version FROM workflow.runs WHERE workflow_id = 'order-42'")).rows[0];
  assert.deepEqual(run.input, ["o-42"]);
  assert.equal(run.app_version, "v1");
  // idempotent start: the same id returns the same run, the body does not run again
  const again = await app.start(order, ["other"], { workflowId: "order-42" });
  assert.equal((await again.result({ timeout: 30 })).orderId, "o-42");
  assert.equal((await db.query("SELECT reserved FROM stock")).rows[0].reserved, 1);
});

test("a failing workflow: WorkflowFailed with the shared error shape; a direct call throws the body's error", async () => {
  const boom = app.step("boom", async () => { throw new RangeError("out of range"); });
  const failing = app.workflow("failing", async () => { await boom(); return 1; });
  const h = await app.start(failing, [], { workflowId: "failing-1" });
  await assert.rejects(h.result({ timeout: 30 }), (e) => e instanceof WorkflowFailed && e.typeName === "RangeError" &&
    e.errorMessage === "out of range" && e.workflowId === "failing-1" && /RangeError/.test(e.traceback));
  const row = (await db.query("SELECT error FROM workflow.runs WHERE workflow_id = 'failing-1'")).rows[0];
  assert.deepEqual(Object.keys(row.error).sort(), ["message", "traceback", "type"]);
  const step = (await db.query("SELECT error FROM workflow.steps WHERE workflow_id = 'failing-1' AND step = 1")).rows[0];
  assert.equal(step.error.type, "RangeError");
  // from another handle (the database's outcome, not the local one)
  await assert.rejects(app.handle("failing-1").result({ timeout: 5 }), WorkflowFailed);
  await assert.rejects(failing(), RangeError);
});

test("child runs get <parent>-<step> ids and parent_id; a direct call inside a workflow is a child", async () => {
  const double = app.step("double", (x) => 2 * x);
  const child = app.workflow("child", async (x) => double(x));
  const parent = app.workflow("parent", async (x) => {
    const a = await double(x);                    // step 1
    const h = await app.start(child, [a]);        // step 2: child parent-2
    const b = await child(a + 1);                 // step 3: child parent-3
    await app.send("parent-2", "hi");             // step 4: idempotency key parent:4
    return [await h.result({ timeout: 30 }), b];
  });
  assert.deepEqual(await app.start(parent, [1], { workflowId: "parent" }).then((h) => h.result({ timeout: 30 })), [4, 6]);
  const kids = (await db.query("SELECT workflow_id, parent_id FROM workflow.runs WHERE parent_id = 'parent' ORDER BY 1")).rows;
  assert.deepEqual(kids, [{ workflow_id: "parent-2", parent_id: "parent" }, { workflow_id: "parent-3", parent_id: "parent" }]);
  const sent = await db.query("SELECT count(*)::int AS n FROM workflow.message WHERE idempotency_key = 'parent:4'");
  assert.equal(sent.rows[0].n, 1);
});

test("enqueue with options and a worker; version routing; operations", async () => {
  await app.createQueue("emails");
  const seen = [];
  const sendWelcome = app.workflow("sendWelcome", async (user) => { seen.push(user); return `sent ${user}`; });
  const h1 = await app.enqueue("emails", sendWelcome, [7], { priority: 1, deduplicationId: "welcome-7", partitionKey: "p" });
  const h2 = await app.enqueue("emails", sendWelcome, [8], { delay: 0.5 });
  assert.equal(await h2.status(), "DELAYED");
  // a worker of another app_version leaves the v1 runs alone
  const other = new App({ ...db.config, appVersion: "v2" });
  other.workflow("sendWelcome", async () => "wrong version");
  const w2 = other.worker({ queues: ["emails"], concurrency: 2, poll: 0.2 });
  await w2.start();
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await h1.status(), "ENQUEUED");
  await w2.stop();
  await other.close();
  const worker = app.worker({ queues: ["emails"], concurrency: 4, poll: 0.2 });
  await worker.start();
  try {
    assert.equal(await h1.result({ timeout: 30 }), "sent 7");
    assert.equal(await h2.result({ timeout: 30 }), "sent 8");  // after the scheduler promotes it
  } finally {
    await worker.stop();
  }
  const runs = await app.list({ name: "sendWelcome" });
  assert.equal(runs.length, 2);
  assert.ok(runs.every((r) => r.status === "SUCCESS" && r.queue === "emails" && r.appVersion === "v1"));
  // fork from step 1 (a new run, enqueued on default) and resume of a cancelled run
  const forked = await app.fork(h1.workflowId, { fromStep: 1, queue: "emails" });
  assert.notEqual(forked.workflowId, h1.workflowId);
  assert.equal(await forked.status(), "ENQUEUED");
  assert.equal(await forked.cancel(), true);
  assert.equal(await forked.status(), "CANCELLED");
  await assert.rejects(forked.result({ timeout: 5 }), WorkflowCancelled);
  await app.resume(forked.workflowId);
  const w = app.worker({ queues: ["emails"], concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    assert.equal(await forked.result({ timeout: 30 }), "sent 7");
  } finally {
    await w.stop();
  }
});

test("a step outside a workflow is a plain call; a transaction runs in its own transaction", async () => {
  const plain = app.step("plain", (x) => x + 1);
  assert.equal(await plain(1), 2);
  const tx = app.transaction("tx", async (client) => (await client.query("SELECT txid_current_if_assigned() IS NULL AS fresh")).rows[0].fresh);
  assert.equal(await tx(), true);
});
