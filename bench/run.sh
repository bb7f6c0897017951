#!/usr/bin/env bash
# Benchmark, not a test: durable operations per second against raw single-row INSERT commits,
# measured in the same run on the same fresh server. Usage: bench/run.sh [SECONDS per run]
# Environment: PG_BIN (the PostgreSQL binaries to install into and run), PGWF_BENCH_DIR and
# PGWF_BENCH_PORT (the scratch server), ROUNDS, and STEPS_ONLY=1 to stop after the
# start/step_put/finish figures (the hot path).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
dir=${PGWF_BENCH_DIR:-/tmp/pg_workflow_bench}; port=${PGWF_BENCH_PORT:-5497}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

bash scripts/install-deps.sh
# A running server may have the old library mapped: unlink it, never overwrite it in place.
rm -f "$("$BIN/pg_config" --pkglibdir)/pg_workflow.so"
cargo pgrx install --release --pg-config "$BIN/pg_config" >/dev/null 2>&1 \
  || cargo pgrx install --release --pg-config "$BIN/pg_config"
scripts/server.sh stop "$dir" 2>/dev/null || true
rm -rf "$dir"
scripts/server.sh start "$dir" "$port"
trap 'scripts/server.sh stop "$dir"' EXIT
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql -qX -c "CREATE EXTENSION pg_workflow" \
     -c "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, payload jsonb)"

# pgbench prints "tps = N (without initial connection time)"; we take N.
tps() { pgbench -n -M prepared -T "$secs" -c "$1" -j "$1" -f "$2" 2>&1 | awk '/^tps/ {print $3}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { printf '%-48s %8s %12.0f %14s\n' "$@"; }

# The disk's commit latency drifts over seconds, so raw and ours alternate in short rounds
# and each figure is the median of its rounds.
rounds=${ROUNDS:-3}
echo "pg_workflow benchmark: $rounds alternating rounds of $secs s, $(nproc) cores, PostgreSQL $($BIN/postgres --version | awk '{print $3}')"
printf '%-48s %8s %12s %14s\n' "what" "clients" "ops/s" "ratio to raw"
declare -A raw_at
for clients in 1 8; do
  raws=(); wfs=(); fenced=()
  # The SDKs pass executor_id on every call (fencing): measure that too. Its lease is renewed
  # before each round, so the worker leaves its runs alone.
  for _ in $(seq "$rounds"); do
    raws+=("$(tps "$clients" bench/raw_insert.sql)")
    # start + 10 x step_put + finish: 12 commits per workflow.
    wfs+=("$(awk -v t="$(tps "$clients" bench/workflow_10_steps.sql)" 'BEGIN { print t * 12 }')")
    psql -qX -c "SELECT workflow.register_executor('bench-fenced')" >/dev/null
    fenced+=("$(awk -v t="$(tps "$clients" bench/workflow_10_steps_fenced.sql)" 'BEGIN { print t * 12 }')")
  done
  raw=$(median "${raws[@]}"); wf=$(median "${wfs[@]}"); wff=$(median "${fenced[@]}"); raw_at[$clients]=$raw
  row "raw single-row INSERT (commits)" "$clients" "$raw" "1.00"
  row "10-step workflow (start, 10 step_put, finish)" "$clients" "$wf" "$(ratio "$wf" "$raw")"
  row "the same, fenced (executor_id on every call)" "$clients" "$wff" "$(ratio "$wff" "$raw")"
  psql -qX -c "TRUNCATE bench_raw, workflow.run, workflow.checkpoint, workflow.ready"
done
[ "${STEPS_ONLY:-0}" = 1 ] && exit 0

# Queues: drain 10 000 zero-step runs (dequeue + finish: two commits per run), against raw/2.
psql -qX -c "SELECT workflow.create_queue('bench')" \
     -c "SELECT count(workflow.register_executor('bench-' || i)) FROM generate_series(0, 7) i" >/dev/null
drain() {  # queue clients runs -> runs/s
  # The bench executors do not heartbeat while pgbench drives them: renew their leases first,
  # or the scheduler worker rightly recovers their runs once executor_timeout has passed.
  psql -qX -c "SELECT count(workflow.register_executor('bench-' || i)) FROM generate_series(0, 7) i" >/dev/null
  pgbench -n -M prepared -t $(($3 / $2)) -c "$2" -j "$2" -D queue="$1" -f bench/drain.sql 2>&1 | awk '/^tps/ {print $3}'
}
# The backlog is built before the clock starts, and vacuumed, as it would be by then.
fill() {
  psql -qX -c "SELECT count(workflow.enqueue('$1', 'zero')) FROM generate_series(1, $2)" >/dev/null
  psql -qX -c "VACUUM ANALYZE workflow.run, workflow.ready"
}
for clients in 1 8; do
  runs=()
  for _ in $(seq "$rounds"); do
    fill bench 10000
    runs+=("$(drain bench "$clients" 10000)")
  done
  wf=$(median "${runs[@]}")
  row "queue drain, zero-step runs (vs raw/2)" "$clients" "$wf" "$(ratio "$wf" "$(awk -v r="${raw_at[$clients]}" 'BEGIN { print r / 2 }')")"
done
psql -qX -c "TRUNCATE workflow.run, workflow.checkpoint, workflow.ready, workflow.queue_start"

# Dequeue with a deep queue: drain 1 000 runs from the head of 1 000 000 vs of 1 000.
psql -qX -c "SELECT workflow.create_queue('shallow')" -c "SELECT workflow.create_queue('deep')" >/dev/null
fill shallow 1000
fill deep 1000000
shallow=$(drain shallow 1 1000)
deep=$(drain deep 1 1000)
row "dequeue+finish, queue of 1 000 (runs/s)" 1 "$shallow" "1.00"
row "dequeue+finish, queue of 1 000 000 (runs/s)" 1 "$deep" "$(ratio "$deep" "$shallow")"
psql -qX -c "TRUNCATE workflow.run, workflow.checkpoint, workflow.ready, workflow.queue_start"

# Wake-up latency: enqueue sent -> waiting dequeue returns.
read -r p50 p90 max < <(DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" python3 bench/latency.py queue 200)
echo "enqueue -> waiting dequeue latency (ms): p50 $p50, p90 $p90, max $max"

# A hundred idle executors: 100 dequeuers waiting on an empty queue.
idle=$(DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" python3 bench/idle_waiters.py 5)
echo "100 waiting dequeuers on an empty queue: $idle CPU-ms per second, all together"

# The scheduler worker: lateness of a schedule firing every second, then its idle CPU.
read -r p50 max idle fires < <(DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" python3 bench/scheduler.py 20)
echo "cron fire lateness over $fires fires (ms): p50 $p50, max $max; idle scheduler worker: $idle CPU-ms per second"

# recv wake-up: send sent -> waiting recv returns.
read -r p50 p90 max < <(DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" python3 bench/latency.py recv 200)
echo "send -> waiting recv latency (ms): p50 $p50, p90 $p90, max $max"

# SQL workflows, run by the server's 2 SQL workers: one-step `SELECT 1` runs drained (a claim
# and a step: two commits per run, vs raw/2 with 2 clients), and cron fire -> first step.
raw2=$(tps 2 bench/raw_insert.sql)
read -r runs p50 max fires < <(DATABASE_URL="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" python3 bench/sql_workflows.py 5000 20)
row "raw single-row INSERT (commits)" 2 "$raw2" "1.00"
row "SQL workflow runs, one SELECT 1 step (vs raw/2)" 2 "$runs" "$(ratio "$runs" "$(awk -v r="$raw2" 'BEGIN { print r / 2 }')")"
echo "cron fire -> first SQL step latency over $fires fires (ms): p50 $p50, max $max"
