// Shared by the tests: a scratch database with the extension per test file, on the server
// PGWF_HOST (socket directory) / PGWF_PORT / PGWF_USER. No mocks: the real extension.
"use strict";
const { randomUUID } = require("node:crypto");
const pg = require("pg");

const HOST = process.env.PGWF_HOST || "/tmp/wtn-1";
const PORT = Number(process.env.PGWF_PORT || 5621);
const USER = process.env.PGWF_USER || "postgres";

function config(database) {
  return { host: HOST, port: PORT, user: USER, database };
}

async function admin(database, text, values) {
  const c = new pg.Client(config(database));
  await c.connect();
  try {
    return await c.query(text, values);
  } finally {
    await c.end();
  }
}

/** Creates a scratch database with pg_workflow; returns its name and a drop(). */
async function scratchDb(prefix) {
  const name = `pgwf_node_${prefix}_${randomUUID().slice(0, 8)}`;
  await admin("postgres", `CREATE DATABASE ${name}`);
  await admin(name, "CREATE EXTENSION pg_workflow");
  return {
    name,
    config: config(name),
    query: (text, values) => admin(name, text, values),
    drop: () => admin("postgres", `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** Polls fn until it returns a truthy value, for at most `seconds` (generous: never a latency assertion). */
async function waitFor(fn, what, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A promise with its resolve, to hold a step until the test lets it go. */
function gate() {
  let open;
  const p = new Promise((r) => { open = r; });
  return { wait: () => p, open };
}

module.exports = { HOST, PORT, USER, config, admin, scratchDb, waitFor, gate };
