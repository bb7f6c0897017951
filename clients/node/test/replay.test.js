// Replay from checkpoints after a crash, and the Promise.all rule: steps take their numbers
// when called, so steps gathered concurrently replay in the same order whatever finished first.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { App, NondeterminismError, WorkflowFailed } = require("../dist");
const { scratchDb } = require("./helpers");

let db, app;
before(async () => {
  db = await scratchDb("replay");
  app = new App({ ...db.config });
});
after(async () => { await app.close(); await db.drop(); });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("Promise.all: a slow first step and a fast second one are numbered in call order, and replay so", async () => {
  const ran = [];
  const slow = app.step("slow", async (x) => { await sleep(300); ran.push("slow"); return `slow:${x}`; });
  const fast = app.step("fast", async (x) => { ran.push("fast"); return `fast:${x}`; });
  const after = app.step("after", async (a, b) => `${a}+${b}`);
  const gathered = app.workflow("gathered", async (x) => {
    const [a, b] = await Promise.all([slow(x), fast(x)]);
    return after(a, b);
  });
  assert.equal(await app.start(gathered, [1], { workflowId: "g-1" }).then((h) => h.result({ timeout: 30 })), "slow:1+fast:1");
  assert.deepEqual(ran, ["fast", "slow"]); // fast finished (and was checkpointed) first
  const steps = (await db.query("SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = 'g-1' ORDER BY step")).rows;
  assert.deepEqual(steps.map((s) => [s.step, s.step_name, s.output]),
    [[1, "slow", "slow:1"], [2, "fast", "fast:1"], [3, "after", "slow:1+fast:1"]]);

  // Replay: a fork keeps steps 1 and 2 and runs the rest; each step gets its own checkpoint.
  ran.length = 0;
  const fork = await app.fork("g-1", { fromStep: 3, newWorkflowId: "g-1-replay" });
  const w = app.worker({ queues: ["default"], concurrency: 1, poll: 0.2 });
  await w.start();
  try {
    assert.equal(await fork.result({ timeout: 30 }), "slow:1+fast:1");
  } finally { await w.stop(); }
  assert.deepEqual(ran, []); // neither body ran again
});

test("replay after a crash: recorded steps return their checkpoints, the rest run", async () => {
  const ran = [];
  const s = app.step("s", (i) => { ran.push(i); return { i }; });
  const t = app.transaction("t", async (client, i) => { ran.push(`t${i}`); return i; });
  const wf = app.workflow("crashed", async () => [await s(1), await t(2), await s(3)]);
  // The state a crashed executor leaves: a claimed PENDING run with steps 1 and 2 recorded
  // (with values the code would not produce now), no executor to wait for.
  await db.query("SELECT workflow.start('crashed', '[]', 'c-1')");
  await db.query(`SELECT workflow.step_put('c-1', 1, 's', '{"i": "recorded"}'), workflow.step_put('c-1', 2, 't', '"tx"')`);
  const h = await app.start(wf, [], { workflowId: "c-1" });
  assert.deepEqual(await h.result({ timeout: 30 }), [{ i: "recorded" }, "tx", { i: 3 }]);
  assert.deepEqual(ran, [3]);
  const attempts = (await db.query("SELECT recovery_attempts FROM workflow.run WHERE workflow_id = 'c-1'")).rows[0];
  assert.equal(attempts.recovery_attempts, 1);
});

test("a replay with another step at a recorded position: NondeterminismError (WF002)", async () => {
  const other = app.step("renamed", () => 1);
  let seen;
  const wf = app.workflow("changed", async () => { try { return await other(); } catch (e) { seen = e; throw e; } });
  await db.query("SELECT workflow.start('changed', '[]', 'n-1')");
  await db.query("SELECT workflow.step_put('n-1', 1, 'original', '1')");
  const h = await app.start(wf, [], { workflowId: "n-1" });
  await assert.rejects(h.result({ timeout: 30 }), (e) => e instanceof WorkflowFailed && e.typeName === "NondeterminismError");
  assert.ok(seen instanceof NondeterminismError);
  assert.equal(seen.sqlstate, "WF002");
});

test("a recorded step error is thrown again on replay, without running the step", async () => {
  let ran = 0;
  const flaky = app.step("flaky", () => { ran++; return "ok"; });
  const wf = app.workflow("replayedError", async () => {
    try { await flaky(); } catch (e) { return `${e.constructor.name}:${e.message}`; }
    return "no error";
  });
  await db.query("SELECT workflow.start('replayedError', '[]', 'e-1')");
  await db.query(`SELECT workflow.step_put('e-1', 1, 'flaky', NULL, '{"type": "TypeError", "message": "bad", "traceback": null}')`);
  assert.equal(await app.start(wf, [], { workflowId: "e-1" }).then((h) => h.result({ timeout: 30 })), "TypeError:bad");
  await db.query("SELECT workflow.start('replayedError', '[]', 'e-2')");
  await db.query(`SELECT workflow.step_put('e-2', 1, 'flaky', NULL, '{"type": "KeyError", "message": "k", "traceback": "py"}')`);
  assert.equal(await app.start(wf, [], { workflowId: "e-2" }).then((h) => h.result({ timeout: 30 })), "StepFailed:KeyError: k");
  assert.equal(ran, 0);
});

test("a durable sleep resumed after a crash sleeps only what is left", async () => {
  const wf = app.workflow("napper", async () => { await app.sleep(3600); return "woke"; });
  await db.query("SELECT workflow.start('napper', '[]', 's-1')");
  // the first run recorded a wake-up time that has passed
  await db.query(`SELECT workflow.step_put('s-1', 1, 'sleep', to_jsonb(now() - interval '1 s'))`);
  assert.equal(await app.start(wf, [], { workflowId: "s-1" }).then((h) => h.result({ timeout: 30 })), "woke");
});
