#!/usr/bin/env bash
# A scratch PostgreSQL 15 server with pg_workflow preloaded, run as user postgres on a unix
# socket only. Usage:
#   scripts/server.sh start DIR PORT   # initdb when needed, then start; idempotent
#   scripts/server.sh stop DIR [MODE]  # MODE: fast (default) or immediate (a crash)
#   scripts/server.sh restart DIR PORT
# At the first start: PGWF_PRELOAD=0 leaves pg_workflow out of shared_preload_libraries;
# PGWF_CONF adds lines to postgresql.conf (e.g. "workflow.scheduler_workers = 4").
set -euo pipefail
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?start|stop|restart}; dir=${2:?data dir parent}; port=${3:-5499}
as_pg() { sudo -u postgres "$@"; }

case "$cmd" in
start)
  install -d -o postgres -g postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" --locale=C.UTF-8 -A trust -U postgres >/dev/null
    conf=$(cat "$(dirname "$0")/../pg_test_config/postgresql.conf")
    if [ "${PGWF_PRELOAD:-1}" = 0 ]; then
      conf=$(printf '%s\n' "$conf" | grep -v -e '^shared_preload_libraries' -e '^workflow.database')
    fi
    cat >>"$dir/data/postgresql.conf" <<CONF
# pg_workflow scratch server
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
$conf
${PGWF_CONF:-}
CONF
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
  fi
  ;;
stop)
  mode=${3:-fast}
  if as_pg "$BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
  fi
  ;;
restart)
  "$0" stop "$dir"
  "$0" start "$dir" "$port"
  ;;
*) echo "usage: $0 start|stop|restart DIR [PORT]" >&2; exit 2 ;;
esac
