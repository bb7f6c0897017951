#!/usr/bin/env bash
# Runs every test: Rust unit tests and #[pg_test]s (cargo pgrx test), pg_regress against a
# preloaded server, the integration suite (pytest, several processes, crashes), and the SDKs'
# own suites (clients/rust with pgwf, clients/node, clients/python), and the Debian package
# (scripts/package.sh).
# README's Command 2; .ci/run calls it. Safe to run while the demo server is up.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$BIN/pg_config
dir=${PGWF_TEST_DIR:-/tmp/pg_workflow_test}
port=5498
failed=()

bash scripts/install-deps.sh

echo "== 1/7 unit tests and #[pg_test]s (cargo pgrx test)"
# cargo pgrx test copies its .so over the installed one; unlink first, so a running server
# that has the old file mapped keeps its copy instead of crashing.
rm -f "$($PG_CONFIG --pkglibdir)/pg_workflow.so"
install -d -o postgres -g postgres "$dir" "$dir/pgrx"
cargo pgrx test pg15 --runas postgres --pgdata "$dir/pgrx" || failed+=("cargo pgrx test")

echo "== installing the extension for the server tests"
cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null 2>&1 || cargo pgrx install --pg-config "$PG_CONFIG"
# Earlier releases' install scripts, so that the upgrade test can CREATE EXTENSION ... VERSION.
install -m 644 sql/releases/*.sql "$($PG_CONFIG --sharedir)/extension/"
scripts/server.sh stop "$dir/server" immediate 2>/dev/null || true
rm -rf "$dir/server"
scripts/server.sh start "$dir/server" "$port"
trap 'scripts/server.sh stop "$dir/server" immediate >/dev/null 2>&1 || true' EXIT
export PGHOST=$dir/server PGPORT=$port PGUSER=postgres

echo "== 2/7 pg_regress"
psql -qX -d postgres -c "DROP DATABASE IF EXISTS regress" -c "CREATE DATABASE regress"
out=$dir/regress
rm -rf "$out"; mkdir -p "$out"; chown postgres "$out"
schedule=$(sed -n 's/^test: //p' tests/pg_regress/schedule)
if ! "$($PG_CONFIG --pkglibdir)/pgxs/src/test/regress/pg_regress" --use-existing \
      --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=regress \
      --inputdir=tests/pg_regress --outputdir="$out" $schedule; then
  cat "$out/regression.diffs" 2>/dev/null | head -200
  failed+=("pg_regress")
fi

echo "== 3/7 integration (pytest; with pgwf, its dashboard in headless Chromium: screenshots in /tmp/pgwf_screenshots)"
# test_package.py is stage 7.
PGWF_DATA_DIR=$dir/server PGWF_PORT=$port python3 -m pytest -q tests/integration \
  --ignore=tests/integration/test_package.py || failed+=("integration")

echo "== 4/7 the Rust SDK, clients/rust (cargo test)"
(cd clients/rust && PGWF_HOST=$dir/server PGWF_PORT=$port cargo test --locked -q) || failed+=("rust sdk")

echo "== 5/7 the Node SDK, clients/node (tsc, then node --test; its own scratch databases)"
(cd clients/node && PGWF_HOST=$dir/server PGWF_PORT=$port npm test) || failed+=("node sdk")

# The last suite on the shared server: one of its tests restarts it under a running worker.
echo "== 6/7 the Python SDK, clients/python (pytest, from its source tree)"
(cd clients/python && PGWF_HOST=$dir/server PGWF_PORT=$port python3 -m pytest -q -p no:cacheprovider -p no:pg_workflow tests) \
  || failed+=("python sdk")

# A dev-profile package (seconds: the build above is warm), installed with dpkg --root into a
# scratch copy of the PostgreSQL tree, and a server of its own that creates the extension.
echo "== 7/7 the Debian package (scripts/package.sh --debug; dpkg --root; a server from it)"
deb_dir=$dir/deb
rm -rf "$deb_dir"
if deb=$(scripts/package.sh --debug --out "$deb_dir" | tail -1) && [ -f "$deb" ]; then
  PG_BIN=$BIN PGWF_DEB=$deb PGWF_DATA_DIR=$dir/server PGWF_PORT=$port \
    python3 -m pytest -q -p no:cacheprovider tests/integration/test_package.py || failed+=("package")
else
  failed+=("package (build)")
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all test suites passed"
