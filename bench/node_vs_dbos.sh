#!/usr/bin/env bash
# Benchmark, not a test: the same Node workloads on DBOS Transact-ts (@dbos-inc/dbos-sdk from
# npm), on a hand-written node-postgres loop over our SQL, and on our Node SDK (clients/node),
# measured in the same run on the same fresh server, with the ratios. Needs the extension
# installed; builds clients/node (npm ci + tsc) and caches DBOS under bench/node/node_modules
# (git-ignored). Needs the npm registry.
#   W1: N ten-step workflows one after another (each step a function returning a small object)
#   W2: N such workflows enqueued, drained by 16 concurrent workers in one process
# Usage: bench/node_vs_dbos.sh     env: N (300), ROUNDS (3), PORT (5488), DBOS_VERSION (npm spec)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-300}; rounds=${ROUNDS:-3}; port=${PORT:-5488}
dir=/tmp/pg_workflow_nodebench_$port
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
began=$(date +%s)

[ -f "$("$BIN/pg_config" --pkglibdir)/pg_workflow.so" ] || { echo "pg_workflow is not installed" >&2; exit 1; }
(cd clients/node && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; } && npm run -s build)
if [ ! -d bench/node/node_modules/@dbos-inc/dbos-sdk ] || [ -n "${DBOS_VERSION:-}" ]; then
  (cd bench/node && npm install --no-audit --no-fund --no-package-lock "@dbos-inc/dbos-sdk@${DBOS_VERSION:-latest}" pg >/dev/null) \
    || echo "DBOS Transact-ts could not be installed: it is skipped"
fi

scripts/server.sh stop "$dir" 2>/dev/null || true
rm -rf "$dir"
scripts/server.sh start "$dir" "$port"
trap 'scripts/server.sh stop "$dir"' EXIT
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
psql -qX -c "CREATE EXTENSION pg_workflow" -c "CREATE DATABASE dbos_bench" -c "CREATE DATABASE dbos_bench_fast" \
     -c "SELECT workflow.create_queue('bench_hand'), workflow.create_queue('bench_sdk')" >/dev/null
export BENCH_HOST=$dir BENCH_PORT=$port BENCH_DB=postgres
export DBOS_URL="postgresql://postgres@localhost/dbos_bench?host=$dir&port=$port"
export DBOS_FAST_URL="postgresql://postgres@localhost/dbos_bench_fast?host=$dir&port=$port"

measure() {  # library queue -> "W1 W2" (dbos-fast: W2 only)
  local err; err=$(mktemp)
  if ! BENCH_QUEUE=$2 NODE_NO_WARNINGS=1 timeout 900 node bench/node/bench.js "$1" "$n" 2>"$err" | tail -n 1; then
    echo "$1 failed:" >&2; tail -n 5 "$err" >&2; rm -f "$err"; return 1
  fi
  rm -f "$err"
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
med() { [ $# -gt 0 ] && median "$@" || echo ""; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }
row() { printf '%-48s %10s %10s\n' "$@"; }
or() { echo "${1:--}"; }

dbos_version=$(node -p 'require("./bench/node/node_modules/@dbos-inc/dbos-sdk/package.json").version' 2>/dev/null \
  || grep -m1 '"version"' bench/node/node_modules/@dbos-inc/dbos-sdk/package.json 2>/dev/null | sed 's/[^0-9.]//g' || echo none)
echo "pg_workflow Node SDK vs DBOS Transact-ts $dbos_version: $n workflows per workload, median of $rounds" \
     "alternating rounds, $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), Node $(node --version)"

d1=(); d2=(); d2f=(); h1=(); h2=(); s1=(); s2=(); ok_dbos=1
[ -d bench/node/node_modules/@dbos-inc/dbos-sdk ] || ok_dbos=0
for _ in $(seq "$rounds"); do
  if [ "$ok_dbos" = 1 ] && f=$(measure dbos -) && g=$(measure dbos-fast -); then
    read -r a b <<<"$f"; d1+=("$a"); d2+=("$b"); d2f+=("$g")
  else ok_dbos=0; fi
  f=$(measure hand bench_hand); read -r a b <<<"$f"; h1+=("$a"); h2+=("$b")
  f=$(measure sdk bench_sdk); read -r a b <<<"$f"; s1+=("$a"); s2+=("$b")
done
[ "$ok_dbos" = 1 ] || { d1=(); d2=(); d2f=(); }
D1=$(med "${d1[@]}"); D2=$(med "${d2[@]}"); D2F=$(med "${d2f[@]}")
H1=$(med "${h1[@]}"); H2=$(med "${h2[@]}"); S1=$(med "${s1[@]}"); S2=$(med "${s2[@]}")

row "workflows/s" "W1 serial" "W2 queue"
row "(a) DBOS Transact-ts $dbos_version, its defaults" "$(or "$D1")" "$(or "$D2")"
row "    the same, queue polled every 10 ms" "" "$(or "$D2F")"
row "(b) hand-written node-postgres over our SQL" "$H1" "$H2"
row "(c) pg_workflow Node SDK" "$S1" "$S2"
row "SDK / DBOS" "$(ratio "$S1" "$D1")" "$(ratio "$S2" "$D2")"
row "SDK / DBOS (queue polled every 10 ms)" "" "$(ratio "$S2" "$D2F")"
row "SDK / hand-written" "$(ratio "$S1" "$H1")" "$(ratio "$S2" "$H2")"
row "hand-written / DBOS" "$(ratio "$H1" "$D1")" "$(ratio "$H2" "$D2")"
echo "rounds: DBOS W1 ${d1[*]:-} | W2 ${d2[*]:-} | W2 fast ${d2f[*]:-} | hand W1 ${h1[*]} | W2 ${h2[*]}" \
     "| SDK W1 ${s1[*]} | W2 ${s2[*]}"
echo "DBOS polls a queue every minPollingIntervalMs (1 s by default). The hand-written loop passes" \
     "executor_id on every call (fenced), as the SDK does. took $(( $(date +%s) - began )) s"
