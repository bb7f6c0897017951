#!/usr/bin/env bash
# Benchmark, not a test: the Rust SDK (clients/rust) against a hand-written tokio-postgres loop
# over our SQL, measured in the same run on the same fresh server, with the ratios (as
# bench/sdk_vs_dbos.sh does for Python). Needs the extension built and installed; it builds
# only the bench binary (release, in clients/rust/target).
#   W1: N ten-step workflows one after another (each step returns a small JSON object)
#   W2: N such workflows enqueued, drained by 16 concurrent workers in one process
# Usage: bench/rust_sdk.sh        env: N (workflows per workload, 300), ROUNDS (3),
#        BENCH_DIR (/tmp/pg_workflow_rsbench), BENCH_PORT (5486)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-300}; rounds=${ROUNDS:-3}
dir=${BENCH_DIR:-/tmp/pg_workflow_rsbench}; port=${BENCH_PORT:-5486}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
began=$(date +%s)

if [ ! -f "$("$BIN/pg_config" --pkglibdir)/pg_workflow.so" ]; then
  echo "pg_workflow is not installed: build and install it first (scripts/demo.sh)" >&2; exit 1
fi
(cd clients/rust && cargo build --release -q -p pg-workflow-bench)
bench=clients/rust/target/release/pg-workflow-bench

scripts/server.sh stop "$dir" 2>/dev/null || true
rm -rf "$dir"
scripts/server.sh start "$dir" "$port"
trap 'scripts/server.sh stop "$dir"' EXIT
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql -qX -c "CREATE EXTENSION pg_workflow" \
     -c "SELECT workflow.create_queue('bench_hand'), workflow.create_queue('bench_sdk')" >/dev/null
export BENCH_DSN="host=$dir port=$port user=postgres dbname=postgres"

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
row() { printf '%-44s %10s %10s\n' "$@"; }

echo "pg_workflow Rust SDK vs a hand-written tokio-postgres loop: $n workflows per workload, median of" \
     "$rounds alternating rounds, $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')," \
     "$(rustc --version | awk '{print $1, $2}')"
h1=(); h2=(); s1=(); s2=()
for _ in $(seq "$rounds"); do
  read -r a b <<<"$(BENCH_QUEUE=bench_hand "$bench" hand "$n")"; h1+=("$a"); h2+=("$b")
  read -r a b <<<"$(BENCH_QUEUE=bench_sdk "$bench" sdk "$n")"; s1+=("$a"); s2+=("$b")
done
H1=$(median "${h1[@]}"); H2=$(median "${h2[@]}"); S1=$(median "${s1[@]}"); S2=$(median "${s2[@]}")
row "workflows/s" "W1 serial" "W2 queue"
row "(a) hand-written tokio-postgres over our SQL" "$H1" "$H2"
row "(b) pg-workflow-client (Rust SDK)" "$S1" "$S2"
row "SDK / hand-written" "$(ratio "$S1" "$H1")" "$(ratio "$S2" "$H2")"
echo "rounds: hand W1 ${h1[*]} | W2 ${h2[*]} | SDK W1 ${s1[*]} | W2 ${s2[*]}"
echo "Both pass executor_id on every call (fenced). took $(( $(date +%s) - began )) s"
