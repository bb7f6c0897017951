#!/usr/bin/env bash
# Builds the Debian package postgresql-15-pg-workflow_<version>_<arch>.deb (version from
# Cargo.toml) for Debian's PostgreSQL 15: the library, the control file, the install script of
# this version and of every release (sql/releases), the upgrade scripts, the exporter's queries
# file (contrib/postgres_exporter.yaml) and, when clients/rust has the pgwf package, the pgwf
# CLI in /usr/bin. Usage:
#   scripts/package.sh [--debug] [--out DIR]    # prints the .deb's path on its last line
# --debug packages a dev-profile build (fast; what the test uses); the default is a release
# build (fat LTO: minutes on 2 cores). DIR defaults to target/deb.
set -euo pipefail
cd "$(dirname "$0")/.."
# The package's paths are Debian's, whatever PG_BIN the rest of the scripts use.
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
profile=release; out=target/deb
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --out) out=${2:?--out DIR}; shift ;;
    *) echo "usage: $0 [--debug] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

name=postgresql-15-pg-workflow
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d /tmp/pg_workflow_package.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

echo "== cargo pgrx package ($profile)" >&2
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$root" $([ "$profile" = debug ] && echo --debug) >&2
extdir=$root$("$PG_CONFIG" --sharedir)/extension
libdir=$root$("$PG_CONFIG" --pkglibdir)
test -f "$libdir/pg_workflow.so" && test -f "$extdir/pg_workflow.control" && test -f "$extdir/pg_workflow--$version.sql"
# Earlier releases' install scripts, so that CREATE EXTENSION ... VERSION '0.1.0' works too,
# and every upgrade script (cargo pgrx package copies them; make sure).
install -m 644 sql/releases/*.sql sql/pg_workflow--*--*.sql "$extdir/"

# The pgwf CLI, when the Rust workspace has it.
cli=""
if [ -f clients/rust/Cargo.toml ] && cargo metadata --no-deps --format-version 1 --manifest-path clients/rust/Cargo.toml 2>/dev/null \
     | grep -q '"name":"pgwf"'; then
  echo "== cargo build -p pgwf ($profile)" >&2
  if [ "$profile" = release ]; then
    (cd clients/rust && cargo build --release -p pgwf >&2)
  else
    (cd clients/rust && cargo build -p pgwf >&2)
  fi
fi
for candidate in clients/rust/target/$profile/pgwf clients/rust/target/release/pgwf clients/rust/target/debug/pgwf; do
  if [ -x "$candidate" ]; then cli=$candidate; break; fi
done
if [ -n "$cli" ]; then
  install -D -m 755 "$cli" "$root/usr/bin/pgwf"
else
  echo "== no pgwf CLI in clients/rust: packaging without it" >&2
fi

doc=$root/usr/share/doc/$name
install -D -m 644 contrib/postgres_exporter.yaml "$doc/postgres_exporter.yaml"
install -m 644 README.md "$doc/README.md"

depends="postgresql-15, libc6"
mkdir -p "$root/DEBIAN"
cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: pg_workflow developers <pg_workflow@localhost>
Depends: $depends
Section: database
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: durable workflows, queues and cron inside PostgreSQL 15
 pg_workflow turns PostgreSQL into a durable workflow engine: checkpointed steps,
 queues with flow control, cron schedules, messages, SQL workflows run by
 background workers. Add pg_workflow to shared_preload_libraries, restart, then
 CREATE EXTENSION pg_workflow.
CONTROL

mkdir -p "$out"
deb=$out/${name}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
