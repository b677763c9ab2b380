"""Outputs pinned across speed work (issue 15): the same partitions give the same rows, to the last bit.

The expected predictions and quarantine of a few demo partitions (one with every kind of
mess validation decides on, a cascade) were written by the code before issue 15 into
``tests/fixtures/pinned/``. Any change that alters a prediction, a score's last bit, a flag,
a route or a quarantine reason fails here. ``SCORING_PIN_OUTPUTS=1`` rewrites the files
(only when a change of output is intended, and said so in its commit).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.store import engines
from tests.conftest import DAY, ROOT, write_job, write_partition
from tests.integration.test_batching import _messy

PINNED = ROOT / "tests" / "fixtures" / "pinned"


def _dump(job_id: str, table: str, columns: str) -> list[list[str]]:
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text(f"SELECT customer_id, {columns} FROM {table} ORDER BY customer_id")).all()
        quarantine = conn.execute(sa.text("SELECT entity_key, reasons FROM scoring_quarantine WHERE job_id = :j "
                                          "ORDER BY entity_key, reasons"), {"j": job_id}).all()
    out = [[str(v) if not isinstance(v, float) else repr(v) for v in row] for row in rows]
    return out + [["quarantine", str(k), str(r)] for k, r in quarantine]


def _check(name: str, rows: list[list[str]]) -> None:
    path = PINNED / f"{name}.csv"
    if os.environ.get("SCORING_PIN_OUTPUTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        return
    with path.open(newline="") as fh:
        expected = [row for row in csv.reader(fh)]
    differ = [(e, g) for e, g in zip(expected, rows, strict=False) if e != g]
    assert len(rows) == len(expected) and not differ, (
        f"{name}: {len(rows)} rows against {len(expected)} pinned; first differences {differ[:3]}")


def _check_run_columns(job_id: str, table: str, run_id: str) -> None:
    """Every row carries the run's columns (PostgreSQL sends them once, as the load table's defaults)."""
    import pandas as pd

    with engines.for_connection("scoring_db").connect() as conn:
        runs = conn.execute(sa.text(f"SELECT DISTINCT partition_date, model_name, model_version, run_id, scored_at, "
                                    f"route, router_model, router_version FROM {table}")).all()
        started, finished = conn.execute(sa.text("SELECT started_at, finished_at FROM scoring_runs WHERE job_id = :j "
                                                 "AND run_id = :r"), {"j": job_id, "r": run_id}).one()
    assert len(runs) == 1, runs
    day, model, version, run, scored_at, *lineage = runs[0]
    assert (str(day)[:10], model, version, run, lineage) == (str(DAY), "churn", 1, run_id, [None, None, None])
    stamp, low, high = (pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v)
                        for v in (scored_at, started, finished))
    assert low <= stamp <= high, (scored_at, started, finished)


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_demo_partition_and_a_messy_one_score_exactly_as_pinned(any_db: str, home: Path) -> None:
    write_partition(home, n=4000)
    job = load_job(write_job(home))
    assert local.run_partition(job, DAY, run_id="pin-demo")["status"] == "success"
    _check("demo", _dump("churn_test", "churn_test_predictions", "prediction, score, flags"))
    _check_run_columns("churn_test", "churn_test_predictions", "pin-demo")
    _messy(home, "csv")
    for stale in (home / "data" / "churn" / f"date={DAY}").glob("*.parquet"):
        stale.unlink()
    job = load_job(write_job(home, "churn_messy", source={"path": str(home / "data" / "churn"), "format": "csv"},
                             validation={"max_quarantine_share": 0.5}))
    assert local.run_partition(job, DAY, run_id="pin-messy")["status"] == "success"
    _check("messy", _dump("churn_messy", "churn_messy_predictions", "prediction, score, flags"))


def test_a_cascade_scores_exactly_as_pinned(cascade_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_partition(cascade_home, n=3000)
    job = load_job(write_job(cascade_home, model={"name": "segments", "threads": 1},  # pinned with every core
                             cascade={"routes": {"frequent": {"name": "churn_frequent"},
                                                 "occasional": {"name": "churn_occasional"}}},
                             output={"table": "cascade_predictions", "connection": "scoring_db"}))
    with caplog.at_level("INFO"):
        assert local.run_partition(job, DAY, run_id="pin-cascade")["status"] == "success"
    assert "score: predicting with at most 1 thread(s)" in caplog.text, "model.threads reaches the score stage"
    _check("cascade", _dump("churn_test", "cascade_predictions", "prediction, score, flags, route, router_model"))
