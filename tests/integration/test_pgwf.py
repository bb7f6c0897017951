"""pgwf (clients/rust/pgwf): the command line against real runs (statuses, --json shapes, exit
codes 0/1/2, unknown ids, a workflow_reader login), and the dashboard in Debian's headless
Chromium (each page's DOM and a screenshot, read-only and with --allow-actions, a refused POST,
escaping, live updates over server-sent events).

The runs are made with the extension's own functions (start, step_put, set_event, send,
finish, fail, cancel, enqueue). Screenshots go to $PGWF_SCREENSHOTS (default
/tmp/pgwf_screenshots); their paths are printed (pytest -s, or see the captured output).
"""
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import DATA_DIR, PORT, ROOT, connect as connect_db, recreate_database

RUST = os.path.join(ROOT, "clients", "rust")
PGWF = os.path.join(RUST, "target", "debug", "pgwf")
SHOTS = os.environ.get("PGWF_SCREENSHOTS", "/tmp/pgwf_screenshots")
TAG = uuid.uuid4().hex[:8]
XSS = '<img src=x onerror="alert(1)">'


# A database of its own: the runs left ENQUEUED here (resume, fork) must not be claimed by
# other modules' workers on the shared one.
DB = "pgwf_test"


def connect():
    return connect_db(DB)


def rid(kind):
    return f"pgwf-{kind}-{TAG}"


@pytest.fixture(scope="module")
def pgwf_bin():
    if not os.path.exists(PGWF) or os.environ.get("PGWF_REBUILD", "1") == "1":
        subprocess.run(["cargo", "build", "-q", "-p", "pgwf"], cwd=RUST, check=True)
    return PGWF


@pytest.fixture(scope="module")
def world():
    recreate_database(DB, "default")
    yield make_world()
    with connect_db("postgres") as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def make_world():
    """Runs in every status, steps, an event, a message, a child, a backlog, a schedule, a
    reader login. The workflow.events view is created by hand when the installed extension
    predates it (its definition is the one in sql/views.sql)."""
    with connect() as db:
        db.execute("""DO $$ BEGIN
            IF to_regclass('workflow.events') IS NULL THEN
              CREATE VIEW workflow.events AS SELECT workflow_id, key, value, updated_at FROM workflow.event;
              GRANT SELECT ON workflow.events TO workflow_reader;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgwf_reader') THEN
              CREATE ROLE pgwf_reader LOGIN; GRANT workflow_reader TO pgwf_reader;
            END IF;
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgwf_admin') THEN
              CREATE ROLE pgwf_admin LOGIN; GRANT workflow_admin TO pgwf_admin;
            END IF;
          END $$""")
        ex = f"pgwf-exec-{TAG}"
        db.execute("SELECT workflow.register_executor(%s, 'v1')", (ex,))
        db.execute("SELECT workflow.create_queue(%s, concurrency => 4, worker_concurrency => 2)", (f"pgwf_q_{TAG}",))

        def start(wid, name, parent=None, inp=None):
            db.execute("SELECT * FROM workflow.start(%s, %s, %s, %s, parent_id => %s)",
                       (name, json.dumps(inp or {"order": 7}), wid, ex, parent))

        def step(wid, n, name, out=None, err=None):
            time.sleep(0.15)  # so that the timeline has durations to show
            db.execute("SELECT workflow.step_put(%s, %s, %s, %s, %s, %s)",
                       (wid, n, name, json.dumps(out) if out is not None else None,
                        json.dumps(err) if err is not None else None, ex))

        ok = rid("ok")
        start(ok, "pgwf_checkout")
        step(ok, 1, "reserve_stock", {"reserved": 1})
        step(ok, 2, "charge_card", {"charge": "ch_9", "note": XSS})
        db.execute("SELECT workflow.set_event(%s, 3, 'stage', '\"charged\"', %s)", (ok, ex))
        child = rid("child")
        start(child, "pgwf_ship", parent=ok)
        step(child, 1, "label", {"label": "L-1"})
        db.execute("SELECT workflow.finish(%s, '{\"shipped\": true}', %s)", (child, ex))
        db.execute("SELECT workflow.finish(%s, %s, %s)", (ok, json.dumps({"ok": True, "html": "<b>bold</b>"}), ex))

        bad = rid("err")
        start(bad, "pgwf_checkout")
        step(bad, 1, "reserve_stock", {"reserved": 1})
        step(bad, 2, "charge_card", None, {"type": "CardDeclined", "message": "card declined"})
        db.execute("SELECT workflow.fail(%s, '{\"type\": \"CardDeclined\", \"message\": \"card declined\"}', %s)", (bad, ex))

        running = rid("running")
        start(running, "pgwf_approval")
        step(running, 1, "ask", {"asked": True})
        db.execute("SELECT workflow.send(%s, '{\"approved\": true}', 'approval')", (running,))

        cancelled = rid("cancelled")
        start(cancelled, "pgwf_checkout")
        db.execute("SELECT workflow.cancel(%s)", (cancelled,))

        xss = f"pgwf-{TAG}-{XSS}"
        start(xss, "pgwf_checkout", inp={"x": XSS})
        db.execute("SELECT workflow.finish(%s, %s, %s)", (xss, json.dumps({"y": "</pre><script>alert(2)</script>"}), ex))

        # The queue: 5 enqueued, 2 claimed by the executor, one of them finished: a backlog of 3,
        # 1 PENDING, 1 finished in the last hour.
        queued = [db.execute("SELECT workflow.enqueue(%s, 'pgwf_email', '{}')", (f"pgwf_q_{TAG}",)).fetchone()[0]
                  for _ in range(5)]
        claimed = [r[0] for r in db.execute("SELECT workflow_id FROM workflow.dequeue(%s, %s, 2)", (f"pgwf_q_{TAG}", ex))]
        assert len(claimed) == 2
        db.execute("SELECT workflow.finish(%s, '{\"sent\": 1}', %s)", (claimed[0], ex))
        queued = [x for x in queued if x not in claimed]
        db.execute("SELECT workflow.schedule(%s, '0 3 * * *', 'pgwf_report')", (f"pgwf-nightly-{TAG}",))
    return dict(ok=ok, child=child, bad=bad, running=running, cancelled=cancelled, xss=xss, queued=queued,
                queue=f"pgwf_q_{TAG}", executor=ex, schedule=f"pgwf-nightly-{TAG}")


def env(user="postgres"):
    return dict(os.environ, PGHOST=DATA_DIR, PGPORT=str(PORT), PGUSER=user, PGDATABASE=DB)


def cli(pgwf_bin, *args, user="postgres"):
    p = subprocess.run([pgwf_bin, *args], env=env(user), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def cli_json(pgwf_bin, *args, user="postgres"):
    rc, out, err = cli(pgwf_bin, *args, "--json", user=user)
    assert rc == 0, err
    return json.loads(out)


# --- the command line -------------------------------------------------------------------

def test_runs_lists_statuses_and_filters(pgwf_bin, world):
    runs = cli_json(pgwf_bin, "runs", "--limit", "500")
    by_id = {r["workflow_id"]: r for r in runs}
    assert by_id[world["ok"]]["status"] == "SUCCESS"
    assert by_id[world["bad"]]["status"] == "ERROR"
    assert by_id[world["running"]]["status"] == "PENDING"
    assert by_id[world["cancelled"]]["status"] == "CANCELLED"
    assert all(by_id[q]["status"] == "ENQUEUED" for q in world["queued"])
    assert set(runs[0]) >= {"workflow_id", "name", "status", "queue", "executor_id", "created_at", "started_at",
                            "finished_at", "duration_ms", "last_step", "parent_id", "forked_from"}
    assert by_id[world["ok"]]["last_step"] == 3 and by_id[world["ok"]]["duration_ms"] > 0
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True), "newest first"

    errors = cli_json(pgwf_bin, "runs", "--status", "error")
    assert errors and {r["status"] for r in errors} == {"ERROR"}
    named = cli_json(pgwf_bin, "runs", "--name", "pgwf_approval")
    assert [r["workflow_id"] for r in named] == [world["running"]]
    queued = cli_json(pgwf_bin, "runs", "--queue", world["queue"])
    assert {r["workflow_id"] for r in queued} >= set(world["queued"]) and len(queued) == 5
    assert len(cli_json(pgwf_bin, "runs", "--limit", "2")) == 2
    assert world["ok"] in {r["workflow_id"] for r in cli_json(pgwf_bin, "runs", "--since", "1h", "--limit", "500")}

    rc, out, err = cli(pgwf_bin, "runs", "--status", "SUCCESS")
    assert rc == 0 and out.startswith("WORKFLOW_ID") and world["ok"] in out


def test_show_a_run(pgwf_bin, world):
    v = cli_json(pgwf_bin, "show", world["ok"])
    assert v["run"]["status"] == "SUCCESS" and v["run"]["output"] == {"ok": True, "html": "<b>bold</b>"}
    assert [(s["step"], s["step_name"], s["succeeded"]) for s in v["steps"]][:2] == [
        (1, "reserve_stock", True), (2, "charge_card", True)] and len(v["steps"]) == 3  # 3: set_event
    assert all(s["duration_ms"] >= 0 for s in v["steps"])
    assert v["steps"][1]["duration_ms"] >= 100
    assert v["events"] == [{"key": "stage", "value": "charged", "updated_at": v["events"][0]["updated_at"]}]
    assert [k["workflow_id"] for k in v["children"]] == [world["child"]]

    pending = cli_json(pgwf_bin, "show", world["running"])
    assert pending["messages"][0]["topic"] == "approval" and pending["messages"][0]["messages"] == 1
    failed = cli_json(pgwf_bin, "show", world["bad"])
    assert failed["steps"][1]["error"]["message"] == "card declined" and not failed["steps"][1]["succeeded"]
    assert cli_json(pgwf_bin, "show", world["child"])["run"]["parent_id"] == world["ok"]

    rc, out, _ = cli(pgwf_bin, "show", world["bad"])
    assert rc == 0 and "charge_card" in out and "card declined" in out and "error" in out


def test_unknown_id_and_bad_usage(pgwf_bin, world):
    for cmd in (["show"], ["cancel"], ["resume"], ["delete"], ["fork", "--from-step", "1"]):
        rc, out, err = cli(pgwf_bin, *cmd, "no-such-run")
        assert rc == 1 and "unknown workflow: no-such-run" in err, (cmd, rc, err)
    for args in ([], ["frobnicate"], ["runs", "--limit", "x"], ["runs", "--since", "5y"], ["runs", "--status", "DONE"],
                 ["show"], ["show", "a", "b"], ["fork", world["ok"]], ["fork", world["ok"], "--from-step", "0"],
                 ["runs", "--bogus"], ["serve", "--listen", "nowhere"]):
        rc, out, err = cli(pgwf_bin, *args)
        assert rc == 2 and "usage: pgwf" in err, (args, rc, err)
    rc, out, _ = cli(pgwf_bin, "--help")
    assert rc == 0 and "usage: pgwf" in out


def test_actions_and_refusals(pgwf_bin, world):
    with connect() as db:
        ex = world["executor"]
        wid = rid("act")
        db.execute("SELECT * FROM workflow.start('pgwf_checkout', '{}', %s, %s)", (wid, ex))
        db.execute("SELECT workflow.step_put(%s, 1, 'one', '1', NULL, %s)", (wid, ex))
        db.execute("SELECT workflow.step_put(%s, 2, 'two', '2', NULL, %s)", (wid, ex))

    rc, out, err = cli(pgwf_bin, "delete", wid)  # still PENDING
    assert rc == 1 and "55006" in err
    rc, out, err = cli(pgwf_bin, "cancel", wid, user="pgwf_reader")  # readers may not
    assert rc == 1 and "permission denied" in err
    assert cli_json(pgwf_bin, "cancel", wid) == {"ok": True, "message": f"cancelled {wid}"}
    rc, out, err = cli(pgwf_bin, "cancel", wid)
    assert rc == 1 and "already ended (CANCELLED)" in err
    rc, out, err = cli(pgwf_bin, "resume", wid)
    assert rc == 0 and "ENQUEUED" in out
    rc, out, err = cli(pgwf_bin, "resume", world["ok"])  # a SUCCESS run: the server refuses
    assert rc == 1 and "55000" in err
    rc, out, err = cli(pgwf_bin, "fork", world["ok"], "--from-step", "99")
    assert rc == 1 and "22023" in err
    fork = cli_json(pgwf_bin, "fork", wid, "--from-step", "2")
    assert fork["ok"] and fork["workflow_id"]
    forked = cli_json(pgwf_bin, "show", fork["workflow_id"])
    assert forked["run"]["forked_from"] == wid and [s["step_name"] for s in forked["steps"]] == ["one"]
    cli(pgwf_bin, "cancel", wid)
    rc, out, err = cli(pgwf_bin, "delete", wid)
    assert rc == 0 and f"deleted {wid}" in out
    rc, _, err = cli(pgwf_bin, "show", wid)
    assert rc == 1 and "unknown workflow" in err


def test_queues_schedules_executors_stats(pgwf_bin, world):
    with connect() as db:
        db.execute("SELECT workflow.heartbeat(%s)", (world["executor"],))
    q = {x["name"]: x for x in cli_json(pgwf_bin, "queues")}[world["queue"]]
    assert (q["enqueued"], q["pending"], q["concurrency"], q["worker_concurrency"]) == (3, 1, 4, 2)
    assert q["pending_per_executor"] == {world["executor"]: 1}
    assert len(q["finished_per_minute"]) == 60 and q["finished_per_minute"][-1] == 1
    s = {x["name"]: x for x in cli_json(pgwf_bin, "schedules")}[world["schedule"]]
    assert s["cron"] == "0 3 * * *" and s["next_fire_at"] and not s["paused"]
    e = {x["executor_id"]: x for x in cli_json(pgwf_bin, "executors")}[world["executor"]]
    assert e["alive"] is True and e["pending_runs"] >= 1
    st = cli_json(pgwf_bin, "stats")
    assert st["runs_by_status"]["SUCCESS"] >= 2 and st["runs_by_status"]["ERROR"] >= 1
    assert st["backlog"]["enqueued"] >= 3 and st["executors"]["alive"] >= 1
    for cmd, needle in (("queues", world["queue"]), ("schedules", world["schedule"]),
                        ("executors", world["executor"]), ("stats", "runs by status")):
        rc, out, err = cli(pgwf_bin, cmd)
        assert rc == 0 and needle in out, (cmd, out, err)


def test_reader_login_reads_everything(pgwf_bin, world):
    for cmd in (["runs"], ["show", world["ok"]], ["queues"], ["schedules"], ["executors"], ["stats"]):
        rc, out, err = cli(pgwf_bin, *cmd, "--json", user="pgwf_reader")
        assert rc == 0, (cmd, err)
    assert cli_json(pgwf_bin, "show", world["ok"], user="pgwf_reader")["events"][0]["key"] == "stage"


def test_dsn_flag(pgwf_bin, world):
    p = subprocess.run([pgwf_bin, "--dsn", f"host={DATA_DIR} port={PORT} user=pgwf_reader dbname={DB}", "show", world["ok"]],
                       env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and world["ok"] in p.stdout
    p = subprocess.run([pgwf_bin, "--dsn", "host=/nonexistent port=1", "runs"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "cannot connect" in p.stderr


# --- the dashboard ----------------------------------------------------------------------

class Dashboard:
    def __init__(self, pgwf_bin, *flags, user="pgwf_reader"):
        self.proc = subprocess.Popen([pgwf_bin, "serve", "--listen", "127.0.0.1:0", *flags], env=env(user),
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}"

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base + path, timeout=30) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def post(self, path, headers=None):
        req = urllib.request.Request(self.base + path, method="POST", data=b"", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def ro(pgwf_bin, world):
    d = Dashboard(pgwf_bin)
    yield d
    d.close()


@pytest.fixture(scope="module")
def rw(pgwf_bin, world):
    d = Dashboard(pgwf_bin, "--allow-actions", user="pgwf_admin")
    yield d
    d.close()


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium: scripts/install-deps.sh installs Debian's chromium")


def browse(url, shot):
    """The DOM after load, and a screenshot, both from headless Chromium."""
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, shot + ".png")
    common = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
              "--disable-dev-shm-usage"]
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(common + [f"--user-data-dir={profile}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(common + [f"--user-data-dir={profile}", f"--screenshot={path}", "--window-size=1400,1000", url],
                       capture_output=True, timeout=120)
    assert os.path.getsize(path) > 5000, f"no screenshot of {url}"
    print(f"screenshot: {path}")
    return dom


def q(s):
    return urllib.parse.quote(s, safe="")


def test_runs_page(ro, world):
    dom = browse(ro.base + "/runs", "runs")
    for key in ("ok", "bad", "running", "cancelled"):
        assert f'data-id="{world[key]}"' in dom
    for status in ("SUCCESS", "ERROR", "PENDING", "CANCELLED", "ENQUEUED"):
        assert f'class="badge s-{status}">{status}<' in dom
    assert 'id="live"' in dom and "read-only" in dom
    # the id with markup in it is text, never an element
    assert "&lt;img src=x onerror=" in dom and "<img" not in dom

    dom = browse(ro.base + "/runs?status=ERROR&since=1h", "runs-errors")
    assert world["bad"] in dom and world["ok"] not in dom
    status, html, _ = ro.get("/runs?name=pgwf_approval")
    assert status == 200 and world["running"] in html and world["ok"] not in html
    status, html, _ = ro.get("/runs?queue=" + world["queue"])
    assert all(x in html for x in world["queued"]) and world["ok"] not in html and html.count("<tr data-id=") == 5
    status, html, _ = ro.get("/runs?status=NOPE")
    assert status == 400 and "unknown status" in html
    # paging: the "older" link of a 2-row page leads to the next 2 rows
    status, html, _ = ro.get("/runs?limit=2")
    first = re.findall(r'<tr data-id="([^"]+)"', html)
    older = re.search(r'class="older" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    status, html2, _ = ro.get(older)
    second = re.findall(r'<tr data-id="([^"]+)"', html2)
    assert len(first) == len(second) == 2 and not set(first) & set(second)


def test_run_page_read_only(ro, world):
    dom = browse(ro.base + "/run?id=" + q(world["ok"]), "run")
    assert world["ok"] in dom and "SUCCESS" in dom
    assert "reserve_stock" in dom and "charge_card" in dom
    assert '<svg class="timeline"' in dom and dom.count('<g class="step ok">') >= 2
    assert "stage" in dom and "charged" in dom                  # the event
    assert world["child"] in dom                                 # the child
    assert "&lt;b&gt;bold&lt;/b&gt;" in dom and "<b>bold</b>" not in dom
    assert "&lt;img src=x" in dom and "<img" not in dom          # a step's output with markup
    assert 'data-action=' not in dom and "Read-only" in dom      # no buttons
    dom = browse(ro.base + "/run?id=" + q(world["bad"]), "run-error")
    assert '<g class="step err">' in dom and "card declined" in dom
    dom = browse(ro.base + "/run?id=" + q(world["running"]), "run-pending")
    assert "approval" in dom and "PENDING" in dom                # the pending message
    dom = browse(ro.base + "/run?id=" + q(world["xss"]), "run-xss")
    assert "<script>alert" not in dom and "<img" not in dom and "&lt;/pre&gt;&lt;script&gt;" in dom
    status, html, _ = ro.get("/run?id=no-such-run")
    assert status == 404 and "unknown workflow: no-such-run" in html


def test_actions_refused_read_only(ro, world):
    for action in ("cancel", "resume", "fork"):
        status, body = ro.post(f"/action/{action}?id={q(world['running'])}&from_step=1", {"X-Pgwf-Action": "1"})
        assert status == 403 and "read-only" in body["message"]
    with connect() as db:
        assert db.execute("SELECT status FROM workflow.runs WHERE workflow_id = %s", (world["running"],)).fetchone()[0] == "PENDING"
    status, _, _ = ro.get("/runs")
    assert status == 200


def test_actions_allowed(rw, world):
    dom = browse(rw.base + "/run?id=" + q(world["running"]), "run-actions")
    for action in ("cancel", "resume", "fork"):
        assert f'data-action="{action}"' in dom
    assert "actions allowed" in dom
    status, body = rw.post(f"/action/cancel?id={q(world['running'])}")
    assert status == 403 and "X-Pgwf-Action" in body["message"]  # the CSRF guard
    wid = rid("dash")
    with connect() as db:
        db.execute("SELECT * FROM workflow.start('pgwf_checkout', '{}', %s, %s)", (wid, world["executor"]))
        db.execute("SELECT workflow.step_put(%s, 1, 'one', '1', NULL, %s)", (wid, world["executor"]))
    status, body = rw.post(f"/action/cancel?id={q(wid)}", {"X-Pgwf-Action": "1"})
    assert status == 200 and body["ok"]
    status, body = rw.post(f"/action/cancel?id={q(wid)}", {"X-Pgwf-Action": "1"})
    assert status == 409 and "already ended" in body["message"]
    status, body = rw.post(f"/action/resume?id={q(wid)}", {"X-Pgwf-Action": "1"})
    assert status == 200 and "ENQUEUED" in body["message"]
    status, body = rw.post(f"/action/fork?id={q(wid)}&from_step=2", {"X-Pgwf-Action": "1"})
    assert status == 200 and body["workflow_id"]
    status, body = rw.post(f"/action/resume?id={q(world['ok'])}", {"X-Pgwf-Action": "1"})
    assert status == 409 and "55000" in body["message"]
    status, body = rw.post("/action/cancel?id=no-such-run", {"X-Pgwf-Action": "1"})
    assert status == 409 and "unknown workflow" in body["message"]


def test_queues_page(ro, world):
    dom = browse(ro.base + "/queues", "queues")
    row = re.search(r'<tr data-queue="%s">(.*?)</tr>' % re.escape(world["queue"]), dom, re.S).group(1)
    assert '<td class="num enqueued">3</td>' in row and '<td class="num pending">1</td>' in row
    assert f"<li>{world['executor']}: 1</li>" in row                          # PENDING per executor
    assert '<svg class="spark"' in row and "0 min ago: 1" in row               # throughput, last minute
    assert '<span class="total">1</span>' in row and "4" in row and "2" in row  # limits
    assert '<tr data-queue="default">' in dom
    assert 'data-action=' not in dom


def test_schedules_and_executors_pages(ro, world):
    dom = browse(ro.base + "/schedules", "schedules")
    row = re.search(r'<tr data-schedule="%s">(.*?)</tr>' % re.escape(world["schedule"]), dom, re.S).group(1)
    assert "0 3 * * *" in row and "active" in row and re.search(r"\d{4}-\d\d-\d\d 03:00:00", row)
    with connect() as db:
        db.execute("SELECT workflow.heartbeat(%s)", (world["executor"],))
        db.execute("SELECT workflow.register_executor(%s)", (f"pgwf-gone-{TAG}",))
        db.execute("UPDATE workflow.executor SET last_heartbeat = now() - interval '1 hour' WHERE executor_id = %s",
                   (f"pgwf-gone-{TAG}",))
    dom = browse(ro.base + "/executors", "executors")
    gone = re.search(r'<tr data-executor="pgwf-gone-%s">(.*?)</tr>' % TAG, dom, re.S).group(1)
    assert "expired" in gone and '<td class="num held">0</td>' in gone
    row = re.search(r'<tr data-executor="%s">(.*?)</tr>' % re.escape(world["executor"]), dom, re.S).group(1)
    assert "alive" in row and re.search(r'<td class="num held">[1-9]\d*</td>', row)


def test_security_headers_and_host(ro):
    status, html, headers = ro.get("/runs")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in html  # no inline script: only /static/app.js
    c = http.client.HTTPConnection("127.0.0.1", ro.port, timeout=10)
    c.request("GET", "/runs", headers={"Host": "evil.example:8080"})
    assert c.getresponse().status == 421  # DNS rebinding
    status, js, headers = ro.get("/static/app.js")
    assert status == 200 and "EventSource" in js and headers["Content-Type"].startswith("text/javascript")


def test_live_updates_over_sse(ro, world):
    s = socket.create_connection(("127.0.0.1", ro.port), timeout=30)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""

    def read_until(pattern, timeout):
        nonlocal buf
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, buf)
            if m:
                return m
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            assert chunk, "the event stream closed"
            buf += chunk
        raise AssertionError(f"no {pattern!r} within {timeout}s; got {buf[-500:]!r}")

    read_until(rb"text/event-stream", 10)
    read_until(rb"event: hello\ndata: [^\n]*\n\n", 10)
    time.sleep(2.5)  # let the 1 s poll settle on the current state
    buf = b""
    with connect() as db:
        new = db.execute("SELECT workflow.enqueue('default', 'pgwf_live', '{}')").fetchone()[0]
    started = time.monotonic()
    m = read_until(rb"event: change\ndata: ([^\n]*)\n\n", 10)
    print(f"live update after {time.monotonic() - started:.2f}s: {m.group(1)[:160]!r}")
    s.close()
    status, html, _ = ro.get("/runs")
    assert new in html
