"""The README's example, run as a user would: killed after its transactional step, then
started again; the stock is reserved once and the run ends with the resumed result."""
import os
import subprocess
import sys

import psycopg

from sdk_support import SRC, one

EXAMPLE = os.path.join(os.path.dirname(SRC), "examples", "order.py")


def run_example(dsn, **env):
    environment = dict(os.environ, DSN=dsn, PYTHONPATH=SRC, **env)
    return subprocess.run([sys.executable, EXAMPLE], env=environment, capture_output=True, text=True, timeout=120)


def test_the_readme_example_resumes_after_a_crash(pgwf_dsn):
    with psycopg.connect(pgwf_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE stock (sku text PRIMARY KEY, reserved int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO stock VALUES ('A-1', 0)")
    crashed = run_example(pgwf_dsn, CRASH="1")
    assert crashed.returncode == 9, crashed.stderr
    assert one(pgwf_dsn, "SELECT last_step FROM workflow.runs WHERE workflow_id = 'order-42'") == 1
    resumed = run_example(pgwf_dsn)
    assert resumed.returncode == 0, resumed.stderr
    assert "'charge': 'ch_5'" in resumed.stdout
    assert one(pgwf_dsn, "SELECT reserved FROM stock WHERE sku = 'A-1'") == 1  # once, not twice
    assert one(pgwf_dsn, "SELECT status FROM workflow.runs WHERE workflow_id = 'order-42'") == "SUCCESS"
