// Fencing (a stale executor gets NotOwnerError and stops without finishing the run),
// cancellation (WorkflowCancelled), and bad input (typed errors).
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const pw = require("../dist");
const { App, NotOwnerError, WorkflowCancelled } = pw;
const { scratchDb, waitFor, gate, config } = require("./helpers");

let db, a, b;
before(async () => {
  db = await scratchDb("fencing");
  a = new App({ ...db.config, executorId: "exec-a" });
  b = new App({ ...db.config, executorId: "exec-b" });
});
after(async () => { await a.close(5); await b.close(5); await db.drop(); });

test("a stale executor is fenced: NotOwnerError stops its body, the new owner finishes the run", async () => {
  const gateA = gate(), gateB = gate();
  let seenByA, aWentOn = false;
  const stepA = a.step("work", async () => { await gateA.wait(); return "from a"; });
  const tailA = a.step("tail", () => { aWentOn = true; return 1; });
  a.workflow("fenced", async () => {
    try { await stepA(); } catch (e) { seenByA = e; throw e; }
    await tailA();
    return "a finished";
  });
  const stepB = b.step("work", async () => { await gateB.wait(); return "from b"; });
  const wfB = b.workflow("fenced", async () => `b finished ${await stepB()}`);

  const hA = await a.start("fenced", [], { workflowId: "f-1" });
  await waitFor(async () => (await db.query("SELECT executor_id FROM workflow.runs WHERE workflow_id = 'f-1'")).rows[0]?.executor_id === "exec-a", "a owns f-1");
  // exec-a's lease is gone (as after a partition): its row is deleted, so anyone may claim the run
  await db.query("DELETE FROM workflow.executor WHERE executor_id = 'exec-a'");
  const hB = await b.start(wfB, [], { workflowId: "f-1" });
  await waitFor(async () => (await db.query("SELECT executor_id FROM workflow.runs WHERE workflow_id = 'f-1'")).rows[0]?.executor_id === "exec-b", "b owns f-1");
  gateA.open();
  await waitFor(() => seenByA, "a's step to be fenced");
  assert.ok(seenByA instanceof NotOwnerError, String(seenByA));
  assert.equal(seenByA.sqlstate, "WF007");
  assert.equal(await hA.status(), "PENDING"); // a neither finished nor failed it
  gateB.open();
  assert.equal(await hB.result({ timeout: 30 }), "b finished from b");
  assert.equal(await hA.result({ timeout: 30 }), "b finished from b"); // a's handle reads the outcome
  assert.equal(aWentOn, false);
  const steps = (await db.query("SELECT step, output FROM workflow.steps WHERE workflow_id = 'f-1'")).rows;
  assert.deepEqual(steps, [{ step: 1, output: "from b" }]);
});

test("cancellation: the body stops at its next step with WorkflowCancelled; result() throws it", async () => {
  const g = gate();
  let seen, after = false;
  const wait = a.step("wait", async () => { await g.wait(); return 1; });
  const later = a.step("later", () => { after = true; });
  const wf = a.workflow("cancelled", async () => {
    try { await wait(); } catch (e) { seen = e; throw e; }
    await later();
  });
  const h = await a.start(wf, [], { workflowId: "x-1" });
  await waitFor(async () => (await h.status()) === "PENDING", "x-1 to run");
  assert.equal(await h.cancel(), true);
  g.open();
  await assert.rejects(h.result({ timeout: 30 }), WorkflowCancelled);
  await waitFor(() => seen, "the body to see the cancel");
  assert.ok(seen instanceof WorkflowCancelled);
  assert.equal(seen.sqlstate, "WF003");
  assert.equal(after, false);
  assert.equal(await h.status(), "CANCELLED");
  assert.equal(await h.cancel(), false);
});

test("bad input gets typed errors", async () => {
  const wf = a.workflow("typed", async (x) => x);
  const stray = async () => 1;
  await assert.rejects(async () => a.start(stray, []), pw.WorkflowNotRegistered);
  await assert.rejects(async () => a.start("nope", []), pw.WorkflowNotRegistered);
  await assert.rejects(async () => a.start(wf, 5), TypeError);
  await assert.rejects(async () => a.start(wf, [10n]), pw.SerializationError);
  await assert.rejects(async () => a.start(wf, [], { workflowId: "" }), TypeError);
  await assert.rejects(async () => a.start(wf, [], { timeout: -1 }), RangeError);
  await assert.rejects(a.enqueue("no-such-queue", wf, [1]), (e) => e instanceof pw.UnknownQueue && e.sqlstate === "WF005");
  await a.createQueue("dedup");
  await a.enqueue("dedup", wf, [1], { deduplicationId: "once" });
  await assert.rejects(a.enqueue("dedup", wf, [2], { deduplicationId: "once" }), (e) => e instanceof pw.DuplicateWorkflow && e.sqlstate === "23505");
  const other = a.workflow("typed-other", async () => 1);
  await a.start(wf, [1], { workflowId: "dup-1" }).then((h) => h.result({ timeout: 30 }));
  await assert.rejects(async () => (await a.start(other, [], { workflowId: "dup-1" })).result({ timeout: 5 }), pw.DuplicateWorkflow);
  assert.throws(() => a.workflow("", async () => 1), TypeError);
  assert.throws(() => a.workflow("typed", async () => 2), TypeError); // two functions, one name
  assert.throws(() => a.step("s", async () => 1, { retries: -1 }), RangeError);
  assert.throws(() => a.worker({ concurrency: 0 }), RangeError);
  assert.throws(() => a.worker({ concurrency: 100 }), RangeError); // above poolSize - 4
  await assert.rejects(a.recv("t"), /only durable inside a workflow/);
  await assert.rejects(a.setEvent("k", 1), /only durable inside a workflow/);
  await assert.rejects(a.sleep(-1), RangeError);
  // a non-JSON return value fails the run with SerializationError
  const bad = a.workflow("badOutput", async () => () => 1);
  await assert.rejects((await a.start(bad, [])).result({ timeout: 30 }), (e) => e instanceof pw.WorkflowFailed && e.typeName === "SerializationError");
  // durable calls inside a step are refused
  const inStep = a.step("inStep", async () => a.setEvent("k", 1));
  const wfInStep = a.workflow("durableInStep", async () => inStep());
  await assert.rejects((await a.start(wfInStep, [])).result({ timeout: 30 }), (e) => e instanceof pw.WorkflowFailed && /inside a step/.test(e.errorMessage));
  // a worker of an unregistered workflow fails its run with WorkflowNotRegistered
  await a.createQueue("strays");
  const stranger = new App({ ...db.config });
  stranger.workflow("unknownHere", async () => 1);
  const h = await stranger.enqueue("strays", "unknownHere", []);
  const w = a.worker({ queues: ["strays"], concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    await assert.rejects(h.result({ timeout: 30 }), (e) => e instanceof pw.WorkflowFailed && e.typeName === "WorkflowNotRegistered");
  } finally { await w.stop(); await stranger.close(); }
  // a worker on an unknown queue stops with UnknownQueue
  const w2 = a.worker({ queues: ["missing"], concurrency: 1, poll: 0.2 });
  await assert.rejects(w2.run(), pw.UnknownQueue);
  // a database without the extension
  const bare = `pgwf_node_bare_${process.pid}`;
  const { admin } = require("./helpers");
  await admin("postgres", `DROP DATABASE IF EXISTS ${bare}`);
  await admin("postgres", `CREATE DATABASE ${bare}`);
  const plain = new App({ ...config(bare), reconnectTimeout: 1 });
  plain.workflow("x", async () => 1);
  try {
    await assert.rejects(plain.start("x", []), pw.ExtensionMissing);
  } finally {
    await plain.close(1);
    await admin("postgres", `DROP DATABASE IF EXISTS ${bare} WITH (FORCE)`);
  }
});
