"""A row's fate never depends on how rows were batched (issue 13, point 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import local
from pipeline.config import load_job
from pipeline.demo import data as demo_data
from tests.conftest import DAY, write_job


def _export(home: Path, fmt: str, blanks: slice, n: int = 200) -> None:
    frame = demo_data.customers(DAY, n=int(n / 0.9), seed=5).head(n)
    frame = frame[(frame["monthly_charges"] >= 0) & frame["region"].notna()].reset_index(drop=True)
    frame["avg_session_minutes"] = frame["avg_session_minutes"].map(lambda v: None if v != v else f"{v}")
    frame.loc[blanks, "avg_session_minutes"] = " "  # a run of blanks where numbers belong
    folder = home / "data" / "churn" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(folder / "part-0000.csv", index=False)
    else:
        frame.to_parquet(folder / "part-0000.parquet", index=False)


@pytest.mark.parametrize("batch_rows", [250_000, 1000, 60, 7])
def test_a_run_of_blank_numbers_is_quarantined_whatever_the_batch_size(home: Path, batch_rows: int) -> None:
    _export(home, "parquet", slice(100, 159))  # 60 blank rows in a 200-row file: some batches are all blank
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": batch_rows},
                             validation={"max_quarantine_share": 0.5}))
    summary = local.run_partition(job, DAY, run_id=f"b{batch_rows}")
    assert (summary["rows_in"], summary["rows_quarantined"]) == (summary["rows_scored"] + 60, 60)


def test_a_csv_whose_numeric_column_is_all_blank_quarantines_its_rows(home: Path) -> None:
    _export(home, "csv", slice(0, None), n=3)  # every value of the column is a blank: invalid numbers, by row
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "format": "csv"},
                             validation={"max_quarantine_share": 1.0}))
    summary = local.run_partition(job, DAY, run_id="all-blank")
    assert summary["rows_quarantined"] == summary["rows_in"] == 3 and summary["rows_scored"] == 0
