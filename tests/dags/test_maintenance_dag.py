"""The ``scoring_maintenance`` DAG (issue 25, point 3): it parses light, is tagged so the operator finds it,
and its task reaps every job of the jobs folder (an expired attempt of a job marked abandoned)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import ROOT, write_job
from tests.dags.test_dag_integrity import HEAVY, parse


def test_the_maintenance_dag_is_hourly_tagged_owned_and_retried(tmp_path: Path) -> None:
    result = parse(tmp=tmp_path)
    assert result["errors"] == {}
    dag = result["dags"]["scoring_maintenance"]
    assert dag["tasks"] == ["reap"]
    assert dag["tags"] == ["maintenance", "scoring-maintenance"], "found by its tags, not taken for a job's DAG"
    assert dag["owner"] == "ml-platform" and dag["retries"]["reap"] >= 2
    assert "reaper" in dag["doc_md"] and "SCORING_REAP_AFTER_SECONDS" in dag["doc_md"]
    assert [m for m in result["new_modules"] if m in HEAVY] == [], "the DAG file imports nothing heavy"


def test_the_maintenance_dag_is_there_without_job_files(tmp_path: Path) -> None:
    empty = tmp_path / "jobs"
    empty.mkdir()
    result = parse(empty, tmp=tmp_path)
    assert result["errors"] == {} and result["dags"]["scoring_maintenance"]["tasks"] == ["reap"]


REAP = """
import sys
sys.path.insert(0, sys.argv[1])
from scoring_maintenance import reap_all
print(reap_all())
"""


def test_its_task_reaps_an_expired_attempt_of_every_job(home: Path) -> None:
    from pipeline import ledger
    from pipeline.store import engines, operational

    write_job(home)
    write_job(home, job_id="quiet_job")
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    with engine.begin() as conn:
        for job_id, run_id in (("churn_test", "gone"), ("quiet_job", "lost")):
            conn.execute(sa.text(
                "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, status, started_at, heartbeat_at, "
                "holder, mode, dry_run) VALUES (:j, :r, 1, :d, 'running', :t, :t, 'task:elsewhere:1:1', 'persist', "
                ":f)"), {"j": job_id, "r": run_id, "d": dt.date(2026, 11, 2), "t": ledger.now() - dt.timedelta(hours=7),
                         "f": False})
    staged = home / "staging" / "quiet_job" / "2026-11-02" / "lost.1"
    staged.mkdir(parents=True)
    out = subprocess.run([sys.executable, "-c", REAP, str(ROOT / "dags")], env=dict(os.environ), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "churn_test: reaped 1 expired attempt(s)" in out.stdout and "quiet_job: reaped 1" in out.stdout, out.stdout
    assert "2026-11-02  lost  attempt 1  abandoned: it was not seen for 2" in out.stdout, out.stdout
    for job_id, run_id in (("churn_test", "gone"), ("quiet_job", "lost")):
        row = ledger.get(engine, job_id, run_id)
        assert row["status"] == "abandoned" and "found by the scoring_maintenance DAG" in row["error"], row
    assert not staged.exists()
