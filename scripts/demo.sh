#!/usr/bin/env bash
# README's Command 1: on a fresh Debian 12 machine, as root, installs everything, builds and
# installs pg_workflow, starts a scratch server with it preloaded, and runs a workflow that
# survives a crash. Idempotent: a second run is fast and safe. Leaves the server running.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
dir=${PGWF_DEMO_DIR:-/tmp/pg_workflow_demo}
port=${PGWF_DEMO_PORT:-5499}

bash scripts/install-deps.sh
echo "== building and installing pg_workflow (release)"
cargo pgrx install --release --pg-config "$BIN/pg_config" >/dev/null 2>&1 \
  || cargo pgrx install --release --pg-config "$BIN/pg_config"
echo "== starting PostgreSQL 15 with shared_preload_libraries = 'pg_workflow' in $dir"
scripts/server.sh stop "$dir" 2>/dev/null || true   # a restart picks up a new build
scripts/server.sh start "$dir" "$port"

export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql -qX -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_workflow;
ALTER EXTENSION pg_workflow UPDATE;  -- a demo server from an earlier build
CREATE TABLE IF NOT EXISTS demo_charges (workflow_id text, amount int, charged_at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS demo_emails (workflow_id text, sent_to text);
SQL
wid="invoice-$(date +%Y%m%d-%H%M%S)-$$"

echo
echo "== Attempt 1: an executor starts workflow $wid, charges the card (step 1),"
echo "   and dies in the middle of step 2"
psql -X -v ON_ERROR_STOP=1 -v wid="$wid" <<'SQL' || true
\pset footer off
SELECT workflow.register_executor('demo-executor', 'v1') IS NOT NULL AS registered;
SELECT * FROM workflow.start('send_invoice', '{"customer": 42, "amount": 99}', :'wid', 'demo-executor');
BEGIN;  -- step 1: the app's write and its checkpoint commit together
INSERT INTO demo_charges (workflow_id, amount) VALUES (:'wid', 99);
SELECT workflow.step_put(:'wid', 1, 'charge_card', '{"charge_id": "ch_001"}');
COMMIT;
BEGIN;  -- step 2 is under way when the process dies
INSERT INTO demo_emails VALUES (:'wid', 'customer42@example.com');
\echo '   ... the executor crashes here: its session is killed before COMMIT'
SELECT pg_terminate_backend(pg_backend_pid());
SQL

echo
echo "== Attempt 2: the executor restarts and calls start() again with the same id"
psql -X -v ON_ERROR_STOP=1 -v wid="$wid" <<'SQL'
\pset footer off
SELECT workflow_id, status, last_step, claimed
  FROM workflow.start('send_invoice', '{"customer": 42, "amount": 99}', :'wid', 'demo-executor');
\echo '   step 1 is replayed from its checkpoint: the card is not charged again'
SELECT * FROM workflow.step_get(:'wid', 1, 'charge_card');
\echo '   step 2 was never recorded, so it runs now'
SELECT * FROM workflow.step_get(:'wid', 2, 'email_receipt');
BEGIN;
INSERT INTO demo_emails VALUES (:'wid', 'customer42@example.com');
SELECT workflow.step_put(:'wid', 2, 'email_receipt', '{"sent": true}');
COMMIT;
SELECT workflow.finish(:'wid', '{"invoice": "paid"}');
\echo '== The outcome, as psql shows it'
SELECT workflow_id, status, output, recovery_attempts, last_step FROM workflow.runs WHERE workflow_id = :'wid';
SELECT step, step_name, output FROM workflow.steps WHERE workflow_id = :'wid' ORDER BY step;
SELECT (SELECT count(*) FROM demo_charges WHERE workflow_id = :'wid') AS card_charges,
       (SELECT count(*) FROM demo_emails WHERE workflow_id = :'wid') AS emails_sent;
SQL

cat <<EOF2

The server keeps running. Connect with:
    psql -h $dir -p $port -U postgres
Stop it with:
    scripts/server.sh stop $dir
EOF2
