"""The stages end to end without Airflow, on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import ledger, local, run
from pipeline.config import load_job
from pipeline.errors import ModelIntegrityError, StoreError, ValidationFailedError
from pipeline.ledger import as_json
from pipeline.registry import Registry
from pipeline.store import writes
from tests.conftest import DAY, write_job, write_partition


def _engine() -> sa.Engine:
    return run.engine(run.find_job("churn_test"))


def _rows(table: str = "churn_test_predictions", day: dt.date = DAY) -> list[dict]:
    with _engine().connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.text(f"SELECT * FROM {table} WHERE partition_date = :d"), {"d": day}).mappings()]


def test_run_reconciles_and_lands_every_row(any_db: str, home: Path) -> None:
    write_partition(home, n=2000)
    job = load_job(write_job(home))
    summary = local.run_partition(job, DAY, run_id="r1")
    assert summary["status"] == "success"
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert summary["rows_quarantined"] > 0  # the demo data carries a few broken records
    rows = _rows()
    assert len(rows) == summary["rows_scored"] == summary["rows_written"]
    first = rows[0]
    assert {"customer_id", "partition_date", "prediction", "score", "model_name", "model_version",
            "run_id", "scored_at"} <= set(first)
    assert first["model_name"] == "churn" and first["model_version"] == 1 and first["run_id"] == "r1"
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    with _engine().connect() as conn:
        q = conn.execute(sa.text("SELECT reasons, row_values FROM scoring_quarantine WHERE job_id='churn_test'")).all()
        latest = conn.execute(sa.text("SELECT COUNT(*) FROM churn_test_predictions_latest")).scalar()
        daily = conn.execute(sa.text("SELECT rows_scored FROM churn_test_predictions_daily")).scalar()
    assert len(q) == summary["rows_quarantined"]
    assert any("be_between:monthly_charges" in r.reasons for r in q)
    assert "customer_id" in as_json(q[0].row_values)
    assert latest == daily == len(rows)
    assert not list((home / "staging").rglob("*.arrow")) and not list((home / "staging").rglob("*.parquet")), "staging is cleaned after success"


def test_three_runs_leave_one_copy_with_the_last_run_id(any_db: str, home: Path) -> None:
    write_partition(home, n=1500)
    job = load_job(write_job(home))
    results = [local.run_partition(job, DAY, run_id=f"run-{i}") for i in range(3)]
    rows = _rows()
    assert len(rows) == results[-1]["rows_scored"]
    assert {r["run_id"] for r in rows} == {"run-2"}
    assert len({r["customer_id"] for r in rows}) == len(rows)
    with _engine().connect() as conn:
        attempts = conn.execute(sa.text("SELECT run_id, status FROM scoring_runs ORDER BY started_at")).all()
        quarantined = conn.execute(sa.text("SELECT COUNT(*), MIN(run_id) FROM scoring_quarantine")).one()
    assert [tuple(a) for a in attempts] == [("run-0", "success"), ("run-1", "success"), ("run-2", "success")]
    assert quarantined[0] == results[-1]["rows_quarantined"] and quarantined[1] == "run-2"


def test_failure_mid_persist_keeps_the_previous_copy(any_db: str, home: Path) -> None:
    write_partition(home, n=1500)
    job = load_job(write_job(home))
    local.run_partition(job, DAY, run_id="good")
    before = _rows()

    def batches():
        yield pa.table({"customer_id": pa.array([1, 2], pa.int64()), "partition_date": [DAY, DAY],
                        "prediction": ["1", "0"], "score": [0.9, 0.1], "model_name": ["churn"] * 2,
                        "model_version": [9, 9], "run_id": ["bad"] * 2,
                        "scored_at": pa.array([dt.datetime(2026, 11, 21)] * 2, pa.timestamp("us")),
                    "flags": pa.array([None, None], pa.string())})
        raise OSError("disk went away half-way")

    with pytest.raises(OSError, match="half-way"):
        writes.replace_partition(_engine(), table=job.output.table, key="customer_id", job_id=job.job_id,
                                partition_date=DAY, batches=batches())
    after = _rows()
    assert len(after) == len(before) and {r["run_id"] for r in after} == {"good"}


def test_database_error_mid_persist_is_a_store_error_and_rolls_back(any_db: str, home: Path) -> None:
    write_partition(home, n=800)
    job = load_job(write_job(home))
    local.run_partition(job, DAY, run_id="good")
    dup = pa.table({"customer_id": pa.array([5, 5], pa.int64()), "partition_date": [DAY, DAY],
                    "prediction": ["1", "0"], "score": [0.9, 0.1], "model_name": ["churn"] * 2,
                    "model_version": [9, 9], "run_id": ["bad"] * 2,
                    "scored_at": pa.array([dt.datetime(2026, 11, 21)] * 2, pa.timestamp("us")),
                    "flags": pa.array([None, None], pa.string())})
    with pytest.raises(StoreError, match="previous copy of the partition is unchanged"):
        writes.replace_partition(_engine(), table=job.output.table, key="customer_id", job_id=job.job_id,
                                partition_date=DAY, batches=[dup])
    assert {r["run_id"] for r in _rows()} == {"good"}


def test_tampered_model_is_refused_and_recorded(home: Path) -> None:
    write_partition(home, n=500)
    job = load_job(write_job(home))
    artifact = Registry().resolve("churn", "champion").artifact
    artifact.write_bytes(artifact.read_bytes() + b"evil")
    with pytest.raises(ModelIntegrityError, match="sha256"):
        local.run_partition(job, DAY, run_id="t1")
    row = ledger.get(_engine(), "churn_test", "t1")
    assert row["status"] == "failed" and row["failed_stage"] == "score" and "sha256" in row["error"]
    with _engine().connect() as conn:
        assert not sa.inspect(conn).has_table("churn_test_predictions")


def test_too_many_quarantined_rows_publish_nothing(home: Path) -> None:
    folder = write_partition(home, n=2000)
    job = load_job(write_job(home, validation={"max_quarantine_share": 0.0}))
    with pytest.raises(ValidationFailedError, match=r"above the job's max_quarantine_share of 0\.0%"):
        local.run_partition(job, DAY, run_id="v1")
    row = ledger.get(_engine(), "churn_test", "v1")
    assert row["status"] == "failed" and row["failed_stage"] == "validate"
    assert row["rows_in"] == pq.ParquetDataset(folder).read().num_rows and row["rows_quarantined"] > 0
    with _engine().connect() as conn:
        assert not sa.inspect(conn).has_table("churn_test_predictions")


def test_dry_run_writes_no_predictions(home: Path) -> None:
    write_partition(home, n=500)
    job = load_job(write_job(home))
    summary = local.run_partition(job, DAY, run_id="d1", dry_run=True)
    assert summary["status"] == "success" and summary["rows_written"] == 0 and summary["rows_scored"] > 0
    with _engine().connect() as conn:
        assert not sa.inspect(conn).has_table("churn_test_predictions")


def test_cli_runs_a_partition_and_explains_errors(home: Path) -> None:
    write_partition(home, n=500)
    write_job(home)
    ok = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "churn_test", "--date", str(DAY)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "success"
    missing = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "churn_test", "--date", "2026-01-01"],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert "partition 2026-01-01 not found" in missing.stderr and "date=2026-01-01" in missing.stderr
