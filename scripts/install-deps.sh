#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine needs to build and test pg_workflow.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
need_apt=()
# chromium: the pgwf dashboard's tests load every page in it, headless (tests/integration/test_pgwf.py).
# prometheus-postgres-exporter: tests/integration/test_exporter.py runs it with contrib/postgres_exporter.yaml.
for pkg in postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang sudo chromium prometheus-postgres-exporter; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" </dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -q '0.18.1'; then
  echo "== cargo install cargo-pgrx 0.18.1 (takes a few minutes)"
  cargo install cargo-pgrx --version =0.18.1 --locked </dev/null
fi

# Rewriting ~/.pgrx/config.toml forces a rebuild of pgrx-pg-sys, so only init when pg15 is missing.
if ! grep -qs '^pg15' "$HOME/.pgrx/config.toml"; then
  echo "== cargo pgrx init --pg15"
  cargo pgrx init --pg15 "$PG_CONFIG" </dev/null
fi

# The integration suite and the Python SDK (clients/python) use psycopg 3, its pool and
# pytest; the SDK's DBOS-compatible layer uses SQLAlchemy. The SDK itself is tested from its
# source tree (scripts/test.sh), not installed.
if ! python3 -c 'import psycopg, psycopg_pool, pytest, sqlalchemy' 2>/dev/null; then
  echo "== pip install psycopg psycopg_pool pytest sqlalchemy"
  python3 -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1' 'psycopg_pool>=3.1' \
    'pytest>=7' 'sqlalchemy>=2' </dev/null
fi

# The Rust SDK (clients/rust): fetch and compile its dependencies and tests now, so that the
# test stage only runs them (its own target/, git-ignored). This builds pgwf too
# (clients/rust/target/debug/pgwf), which tests/integration/test_pgwf.py runs.
if command -v cargo >/dev/null; then
  echo "== cargo build --tests (clients/rust)"
  (cd "$(dirname "$0")/../clients/rust" && cargo build --tests --bins --locked -q </dev/null)
fi

# The Node SDK (clients/node): Node 18+ and npm, its locked dependencies, and its build (tsc).
if ! command -v npm >/dev/null 2>&1; then
  echo "== apt-get install nodejs npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm </dev/null
fi
node_dir=$(cd "$(dirname "$0")/../clients/node" && pwd)
if [ ! -d "$node_dir/node_modules" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules" ]; then
  echo "== npm ci (clients/node)"
  (cd "$node_dir" && npm ci --no-audit --no-fund </dev/null && touch node_modules)
fi
# Its dist/ (tsc): the three-language integration test runs a Node worker on it.
(cd "$node_dir" && npm run --silent build </dev/null)
