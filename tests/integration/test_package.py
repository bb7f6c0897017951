"""scripts/package.sh: the .deb installs with dpkg -i and a server creates the extension from it.

The package is installed with `dpkg --root` into a scratch root that holds a copy of the test
server's PostgreSQL 15 tree (Debian's layout, /usr/lib/postgresql/15 and
/usr/share/postgresql/15, with the pg_workflow files taken out) and a copy of the machine's
dpkg status (so postgresql-15 counts as installed): dpkg unpacks, checks and records the
package as it would on the machine, and PostgreSQL, which finds its library and share
directories relative to its binaries, serves the extension from the package's files only. The
machine's own PostgreSQL tree and dpkg database are never touched.

PGWF_DEB names a .deb built already (scripts/test.sh builds one); otherwise the test builds a
dev-profile one with `scripts/package.sh --debug`.
"""
import glob
import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from conftest import PORT, ROOT

PACKAGE = "postgresql-15-pg-workflow"
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def cargo_version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        for line in f:
            if line.startswith("version = "):
                return line.split('"')[1]
    raise AssertionError("no version in Cargo.toml")


@pytest.fixture(scope="module")
def deb():
    given = os.environ.get("PGWF_DEB")
    if given:
        yield given
        return
    out = tempfile.mkdtemp(prefix="pgwf_deb_")
    built = subprocess.run([os.path.join(ROOT, "scripts", "package.sh"), "--debug", "--out", out],
                           check=True, stdout=subprocess.PIPE, text=True)
    yield built.stdout.strip().splitlines()[-1]
    shutil.rmtree(out, ignore_errors=True)


def pg_config(flag):
    return subprocess.run([os.path.join(PG_BIN, "pg_config"), flag], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def root(deb):
    """A scratch root with PostgreSQL 15 and the package installed by dpkg."""
    r = tempfile.mkdtemp(prefix="pgwf_root_")
    os.chmod(r, 0o755)  # the server runs as postgres
    lib_tree = os.path.dirname(PG_BIN)  # .../lib/postgresql/15
    shutil.copytree(lib_tree, os.path.join(r, "usr/lib/postgresql/15"), symlinks=True)
    shutil.copytree(pg_config("--sharedir"), os.path.join(r, "usr/share/postgresql/15"), symlinks=True)
    for f in glob.glob(os.path.join(r, "usr/lib/postgresql/15/lib/pg_workflow*")) + \
            glob.glob(os.path.join(r, "usr/share/postgresql/15/extension/pg_workflow*")):
        os.remove(f)
    admin = os.path.join(r, "var/lib/dpkg")
    for d in ("info", "updates", "triggers"):
        os.makedirs(os.path.join(admin, d))
    shutil.copy("/var/lib/dpkg/status", os.path.join(admin, "status"))
    open(os.path.join(admin, "available"), "w").close()
    subprocess.run(["dpkg", f"--root={r}", "--force-not-root", "-i", deb], check=True)
    yield r
    shutil.rmtree(r, ignore_errors=True)


def test_the_package_holds_what_it_should(root, deb):
    version = cargo_version()
    assert os.path.basename(deb).startswith(f"{PACKAGE}_{version}_")
    status = subprocess.run(["dpkg", f"--root={root}", "-s", PACKAGE], check=True, stdout=subprocess.PIPE,
                            text=True).stdout
    assert "Status: install ok installed" in status and f"Version: {version}" in status
    files = set(subprocess.run(["dpkg", f"--root={root}", "-L", PACKAGE], check=True, stdout=subprocess.PIPE,
                               text=True).stdout.split())
    ext = "/usr/share/postgresql/15/extension"
    expected = {"/usr/lib/postgresql/15/lib/pg_workflow.so", f"{ext}/pg_workflow.control",
                f"{ext}/pg_workflow--{version}.sql", f"{ext}/pg_workflow--0.2.0--0.3.0.sql",
                f"/usr/share/doc/{PACKAGE}/postgres_exporter.yaml"}
    expected |= {f"{ext}/{os.path.basename(p)}" for p in glob.glob(os.path.join(ROOT, "sql/releases/*.sql"))}
    assert expected <= files, expected - files
    cli = [p for p in ("release", "debug") if os.access(os.path.join(ROOT, f"clients/rust/target/{p}/pgwf"), os.X_OK)]
    assert ("/usr/bin/pgwf" in files) == bool(cli)


@pytest.fixture(scope="module")
def server(root):
    location = os.path.join(root, "server")
    port = int(os.environ.get("PGWF_PACKAGE_PORT", PORT + 30))
    env = dict(os.environ, PG_BIN=os.path.join(root, "usr/lib/postgresql/15/bin"))
    script = os.path.join(ROOT, "scripts", "server.sh")
    subprocess.run([script, "start", location, str(port)], check=True, env=env)
    try:
        yield lambda db="postgres": psycopg.connect(host=location, port=port, user="postgres", dbname=db,
                                                    autocommit=True)
    finally:
        subprocess.run([script, "stop", location, "immediate"], check=False, env=env)


def test_a_server_creates_and_upgrades_the_extension_from_the_package(server, root):
    with server() as c:
        assert c.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_workflow"
        # The server's library and share directories are the scratch root's.
        for name in ("PKGLIBDIR", "SHAREDIR"):
            assert c.execute("SELECT setting FROM pg_config WHERE name = %s", (name,)).fetchone()[0].startswith(root)
        c.execute("CREATE EXTENSION pg_workflow")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_workflow'").fetchone()[0] \
            == cargo_version()
        c.execute("SELECT * FROM workflow.start('pkg', NULL, 'pkg-1')")
        c.execute("SELECT workflow.step_put('pkg-1', 1, 'one', '1')")
        assert c.execute("SELECT workflow.finish('pkg-1', '1')").fetchone()[0] == "SUCCESS"
        assert c.execute("SELECT value FROM workflow.stats WHERE name = 'steps_recorded'").fetchone()[0] == 1
        c.execute("CREATE DATABASE pkg_old")
    with server("pkg_old") as c:
        c.execute("CREATE EXTENSION pg_workflow VERSION '0.1.0'")
        c.execute("ALTER EXTENSION pg_workflow UPDATE")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_workflow'").fetchone()[0] \
            == cargo_version()
