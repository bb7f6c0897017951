#!/usr/bin/env bash
# Benchmark, not a test: the same Python workloads on DBOS Transact-py (from PyPI), on a
# hand-written psycopg loop over our SQL, and on our SDK (clients/python), measured in the same
# run on the same fresh server, with the ratios. Needs the extension built and installed
# (scripts/demo.sh or scripts/test.sh do that); it builds nothing. Needs network for PyPI.
#   W1: N ten-step workflows one after another (each step a function returning a small dict)
#   W2: N such workflows enqueued, drained by 16 workers in one process
# Usage: bench/sdk_vs_dbos.sh        env: N (workflows per workload, 300), ROUNDS (3),
#        DBOS_VERSION (a pip version spec, e.g. "==3.4.0"; the newest by default)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-300}; rounds=${ROUNDS:-3}
dir=/tmp/pg_workflow_sdkbench; port=5489
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
venv=bench/.venv   # git-ignored
py=$venv/bin/python
began=$(date +%s)

if [ ! -f "$("$BIN/pg_config" --pkglibdir)/pg_workflow.so" ]; then
  echo "pg_workflow is not installed: build and install it first (scripts/demo.sh)" >&2; exit 1
fi

# The virtualenv: DBOS and psycopg from PyPI, then our SDK from this checkout (reinstalled on
# every run, so that it is the code of this checkout; pip reinstalls it only when its version
# changes, hence --force-reinstall --no-deps).
[ -x "$py" ] || python3 -m venv "$venv"
"$py" -c 'import dbos, psycopg, psycopg_pool' 2>/dev/null && [ -z "${DBOS_VERSION:-}" ] \
  || "$venv/bin/pip" install -q --disable-pip-version-check "dbos${DBOS_VERSION:-}" 'psycopg[binary]' psycopg_pool
sdk=1; sdk_why=
if [ ! -f clients/python/pyproject.toml ] && [ ! -f clients/python/setup.py ]; then
  sdk=0; sdk_why="clients/python is not a package yet"
# From a copy: a build in place would write build/ and *.egg-info into clients/python.
elif ! out=$(src=$(mktemp -d /tmp/pg_workflow_sdkbench_src.XXXXXX) && cp -r clients/python/. "$src" \
             && rm -rf "$src/build" "$src"/src/*.egg-info \
             && "$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$src" 2>&1; rc=$?; rm -rf "$src"; exit $rc); then
  sdk=0; sdk_why="pip install ./clients/python failed: $(printf '%s' "$out" | tail -n 1)"
elif ! out=$("$py" -c 'import pg_workflow; pg_workflow.App' 2>&1); then
  sdk=0; sdk_why="import pg_workflow failed: $(printf '%s' "$out" | tail -n 1)"
fi

scripts/server.sh stop "$dir" 2>/dev/null || true
rm -rf "$dir"
scripts/server.sh start "$dir" "$port"
log=$(mktemp -d /tmp/pg_workflow_sdkbench_log.XXXXXX)
trap 'scripts/server.sh stop "$dir"; rm -rf "$log"' EXIT
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
# DBOS gets databases of its own on the same server (it creates its tables at launch): one for
# its defaults, one for the fast-polled queue (DBOS polls every queue of its database).
psql -qX -c "CREATE EXTENSION pg_workflow" -c "CREATE DATABASE dbos_bench" -c "CREATE DATABASE dbos_bench_fast" \
     -c "SELECT workflow.create_queue('bench_hand'), workflow.create_queue('bench_sdk')" >/dev/null
export BENCH_DSN="host=$dir port=$port user=postgres dbname=postgres"
export DBOS_URL="postgresql://postgres@/dbos_bench?host=$dir&port=$port"
export DBOS_FAST_URL="postgresql://postgres@/dbos_bench_fast?host=$dir&port=$port"
fast=${DBOS_FAST_POLL:-0.01}

# One process per library and round, both workloads in it; it prints workflows/s:
# "W1 W2" (dbos-fast: W2 only). A library that fails prints its error and is skipped.
measure() {  # library queue -> figures on stdout
  if ! BENCH_QUEUE=$2 timeout 900 "$py" bench/sdk_vs_dbos/bench.py "$1" "$n" 2>"$log/$1.err" | tail -n 1; then
    echo "$1 failed:" >&2; tail -n 5 "$log/$1.err" >&2; return 1
  fi
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "-"; else printf "%.2f", a / b }'; }
row() { printf '%-46s %10s %10s\n' "$@"; }

dbos_version=$("$py" -c 'import importlib.metadata as m; print(m.version("dbos"))')
echo "pg_workflow SDK vs DBOS Transact-py $dbos_version: $n workflows per workload, median of $rounds" \
     "alternating rounds, $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}')," \
     "Python $("$py" -c 'import platform; print(platform.python_version())')"
[ "$sdk" = 1 ] || echo "SKIPPED (c) the pg_workflow SDK: $sdk_why"

# The disk's commit latency drifts, so the libraries alternate in rounds, like bench/run.sh.
d1=(); d2=(); d2f=(); h1=(); h2=(); s1=(); s2=(); ok_dbos=1; ok_sdk=$sdk
for _ in $(seq "$rounds"); do
  if [ "$ok_dbos" = 1 ] && f=$(measure dbos -) && g=$(measure dbos-fast -); then
    read -r a b <<<"$f"; d1+=("$a"); d2+=("$b"); d2f+=("$g")
  else ok_dbos=0; fi
  f=$(measure hand bench_hand); read -r a b <<<"$f"; h1+=("$a"); h2+=("$b")
  if [ "$ok_sdk" = 1 ] && f=$(measure sdk bench_sdk); then
    read -r a b <<<"$f"; s1+=("$a"); s2+=("$b")
  else ok_sdk=0; fi
done
[ "$ok_dbos" = 1 ] || { d1=(); d2=(); d2f=(); }
[ "$ok_sdk" = 1 ] || { s1=(); s2=(); [ "$sdk" = 0 ] || echo "SKIPPED (c) the pg_workflow SDK: its run failed (above)"; }
med() { [ $# -gt 0 ] && median "$@" || echo ""; }
D1=$(med "${d1[@]}"); D2=$(med "${d2[@]}"); D2F=$(med "${d2f[@]}")
H1=$(med "${h1[@]}"); H2=$(med "${h2[@]}"); S1=$(med "${s1[@]}"); S2=$(med "${s2[@]}")
or() { echo "${1:--}"; }

row "workflows/s" "W1 serial" "W2 queue"
row "(a) DBOS Transact-py $dbos_version, its defaults" "$(or "$D1")" "$(or "$D2")"
row "    the same, queue polled every $fast s" "" "$(or "$D2F")"
row "(b) hand-written psycopg over our SQL" "$H1" "$H2"
row "(c) pg_workflow SDK" "$(or "$S1")" "$(or "$S2")"
row "SDK / DBOS" "$(ratio "$S1" "$D1")" "$(ratio "$S2" "$D2")"
row "SDK / DBOS (queue polled every $fast s)" "" "$(ratio "$S2" "$D2F")"
row "SDK / hand-written" "$(ratio "$S1" "$H1")" "$(ratio "$S2" "$H2")"
row "hand-written / DBOS" "$(ratio "$H1" "$D1")" "$(ratio "$H2" "$D2")"
echo "rounds: DBOS W1 ${d1[*]:-} | W2 ${d2[*]:-} | W2 fast ${d2f[*]:-} | hand W1 ${h1[*]} | W2 ${h2[*]}" \
     "| SDK W1 ${s1[*]:-} | W2 ${s2[*]:-}"
echo "DBOS polls a queue every polling_interval_sec (1 s by default) and starts at most" \
     "worker_concurrency (16) runs a poll, so W2 at its defaults is capped near 16/s."
echo "The hand-written loop passes executor_id on every call (fenced), as the SDK does. took $(( $(date +%s) - began )) s"
