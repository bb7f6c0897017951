#!/usr/bin/env bash
# Benchmark, not a test: durable operations per second against raw single-row INSERT commits,
# measured in the same run on the same fresh server. Usage: bench/run.sh [SECONDS per run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
dir=/tmp/pg_workflow_bench; port=5497
BIN=/usr/lib/postgresql/15/bin

bash scripts/install-deps.sh
cargo pgrx install --release --pg-config "$BIN/pg_config" >/dev/null 2>&1
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
for clients in 1 8; do
  raws=(); wfs=()
  for _ in $(seq "$rounds"); do
    raws+=("$(tps "$clients" bench/raw_insert.sql)")
    # start + 10 x step_put + finish: 12 commits per workflow.
    wfs+=("$(awk -v t="$(tps "$clients" bench/workflow_10_steps.sql)" 'BEGIN { print t * 12 }')")
  done
  raw=$(median "${raws[@]}"); wf=$(median "${wfs[@]}")
  row "raw single-row INSERT (commits)" "$clients" "$raw" "1.00"
  row "10-step workflow (start, 10 step_put, finish)" "$clients" "$wf" "$(ratio "$wf" "$raw")"
  psql -qX -c "TRUNCATE bench_raw, workflow.run, workflow.checkpoint"
done
