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

/**
 * A unix-socket proxy in front of the server (a network the test controls): connect with
 * { host: proxy.dir, port: PORT }. blackhole() silently drops the bytes of the connections
 * open now (a dead route: no FIN, no RST); hangNew(true) accepts new connections and never
 * forwards them (a connect that never completes).
 */
async function proxy() {
  const net = require("node:net");
  const fs = require("node:fs");
  const os = require("node:os");
  const path = require("node:path");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pgwf-proxy-"));
  const conns = new Set();
  let hang = false;
  const server = net.createServer((down) => {
    const conn = { down, up: null };
    conns.add(conn);
    down.on("error", () => undefined);
    down.on("close", () => { conns.delete(conn); conn.up?.destroy(); });
    if (hang) { down.on("data", () => undefined); return; }
    const up = net.connect(path.join(HOST, `.s.PGSQL.${PORT}`));
    conn.up = up;
    up.on("error", () => down.destroy());
    up.on("close", () => down.destroy());
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((r) => server.listen(path.join(dir, `.s.PGSQL.${PORT}`), r));
  return {
    dir,
    blackhole() {
      for (const { down, up } of conns) {
        down.unpipe(); up?.unpipe();
        down.removeAllListeners("data"); up?.removeAllListeners("data");
        down.on("data", () => undefined); up?.on("data", () => undefined);
      }
    },
    hangNew(on) { hang = on; },
    close() {
      for (const { down, up } of conns) { down.destroy(); up?.destroy(); }
      return new Promise((r) => server.close(() => { fs.rmSync(dir, { recursive: true, force: true }); r(); }));
    },
  };
}

module.exports.proxy = proxy;
