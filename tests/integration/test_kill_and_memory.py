"""Hard failures and memory: SIGKILL in the middle of a PostgreSQL COPY, and flat peak RSS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from pipeline import ledger, local, run, steps
from pipeline.config import load_job
from tests.conftest import DAY, ROOT, write_job, write_partition

pytestmark = pytest.mark.slow

PERSIST = """
import json, sys
from pipeline import run, steps
from pipeline.staging import RunSpec
job = run.find_job("churn_test")
run.run_step(run.context(job, RunSpec.from_dict(json.loads(sys.argv[1]))), steps.PERSIST)
"""


def _partition(engine: sa.Engine) -> tuple[int, set[str]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id FROM churn_test_predictions WHERE partition_date = :d"),
                            {"d": DAY}).scalars().all()
    return len(rows), set(rows)


def test_sigkill_mid_copy_keeps_the_previous_partition_and_a_retry_completes(home: Path, pg_url: str) -> None:
    write_partition(home, n=120_000)
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 4000}))
    engine = run.engine(job)
    good = local.run_partition(job, DAY, run_id="good")
    assert _partition(engine) == (good["rows_written"], {"good"})

    spec = run.start(job, run_id="killed", partition_date=DAY)
    ctx = run.context(job, spec)
    for step in steps.SCORING:
        run.run_step(ctx, step)
    proc = subprocess.Popen([sys.executable, "-c", PERSIST, json.dumps(spec.to_dict())], env=dict(os.environ),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    copying = None
    deadline = time.monotonic() + 120
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as watch:
        while time.monotonic() < deadline and proc.poll() is None:
            copying = watch.execute(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY %%churn_test_predictions%%' "
                "AND pid <> pg_backend_pid()").fetchone()
            if copying:
                break
            time.sleep(0.005)
        assert copying, f"never saw the COPY running (exit {proc.poll()}): {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)  # the worker dies mid-COPY: no except, no finally, no rollback call
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        while watch.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (copying[0],)).fetchone():
            time.sleep(0.05)  # the server notices the lost client and rolls its transaction back
    assert _partition(engine) == (good["rows_written"], {"good"}), "the previous copy must be intact"
    assert ledger.get(engine, "churn_test", "killed")["status"] == "running"  # the dead process recorded nothing

    run.run_step(ctx, steps.PERSIST)  # Airflow's retry of the persist task: same run spec, same staged files
    summary = run.finalize(ctx)
    assert summary["status"] == "success"
    assert _partition(engine) == (summary["rows_written"], {"killed"})


# VmHWM is this process's own peak RSS (ru_maxrss would carry the forking parent's peak over exec)
MEASURE = """
import json, sys
from pipeline import local, run
job = run.find_job(sys.argv[1])
summary = local.run_partition(job, "2026-11-20", run_id=sys.argv[1])
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
print("RESULT " + json.dumps({"rows": summary["rows_scored"], "peak_rss_mb": hwm}))
"""


def _peak(home: Path, job_id: str, rows: int) -> dict:
    write_partition(home, n=rows)
    write_job(home, job_id=job_id, source={"path": str(home / "data" / "churn"), "batch_rows": 25_000},
              validation={"max_quarantine_share": 0.05})
    out = subprocess.run([sys.executable, "-c", MEASURE, job_id], env=dict(os.environ), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])


def test_peak_memory_stays_flat_when_the_partition_grows(home: Path) -> None:
    """Batches of 25k rows: a partition 20x larger than a batch costs almost no extra memory."""
    small = _peak(home, "mem_small", 25_000)
    large = _peak(home, "mem_large", 500_000)
    print(f"peak RSS: {small['rows']:,} rows {small['peak_rss_mb']:.0f} MB; "
          f"{large['rows']:,} rows {large['peak_rss_mb']:.0f} MB")
    assert large["rows"] > 19 * small["rows"]
    # holding the partition would cost well over 150 MB more (500k rows x 30 columns, pandas + GX copies)
    assert large["peak_rss_mb"] - small["peak_rss_mb"] < 120, (small, large)
