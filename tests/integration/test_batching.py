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


def test_a_csv_whose_numeric_column_is_all_blank_quarantines_its_rows(home: Path) -> None:
    _export(home, "csv", slice(0, None), n=3)  # every value of the column is a blank: invalid numbers, by row
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "format": "csv"},
                             validation={"max_quarantine_share": 1.0}))
    summary = local.run_partition(job, DAY, run_id="all-blank")
    assert summary["rows_quarantined"] == summary["rows_in"] == 3 and summary["rows_scored"] == 0


def _messy(home: Path, fmt: str) -> None:
    """Two files of one partition with every kind of mess validation decides on, spread over the rows."""
    frame = demo_data.customers(DAY, n=700, seed=21).reset_index(drop=True)
    frame["avg_session_minutes"] = frame["avg_session_minutes"].map(lambda v: None if v != v else f"{v}")
    frame.loc[100:159, "avg_session_minutes"] = " "      # a run of blanks where numbers belong
    frame.loc[[3, 250, 611], "avg_session_minutes"] = "unknown"  # text where a number belongs (not a marker)
    frame.loc[[5, 400], "monthly_charges"] = -10.0      # out of the contract's range
    frame.loc[[7, 333], "region"] = None                 # a required value missing
    frame.loc[[9, 500], "plan"] = "platinum-x"           # an unknown category
    frame.loc[650, "customer_id"] = frame.loc[10, "customer_id"]  # a key twice, across the two files
    folder = home / "data" / "churn" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate((frame.iloc[:350], frame.iloc[350:])):
        if fmt == "csv":
            part.to_csv(folder / f"part-000{i}.csv", index=False)
        else:
            part.to_parquet(folder / f"part-000{i}.parquet", index=False)


def _outcome(run_id: str) -> tuple:
    """What a run left: predictions, quarantine (reasons and original values) and its ledger counts."""
    import sqlalchemy as sa

    from pipeline import ledger
    from pipeline.store import engines

    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        table = conn.execute(sa.text("SELECT customer_id, prediction, score, flags FROM churn_test_predictions "
                                     "WHERE run_id = :r ORDER BY customer_id"), {"r": run_id}).all()
        quarantine = conn.execute(sa.text("SELECT entity_key, reasons, row_values FROM scoring_quarantine WHERE "
                                          "run_id = :r ORDER BY entity_key, reasons, row_values"), {"r": run_id}).all()
        row = conn.execute(sa.text("SELECT status, rows_in, rows_valid, rows_quarantined, rows_scored, rows_written, "
                                   "warnings FROM scoring_runs WHERE run_id = :r"), {"r": run_id}).one()
    return ([tuple(r) for r in table], [(k, r, ledger.as_json(v)) for k, r, v in quarantine], tuple(row))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_same_messy_partition_gives_identical_tables_quarantines_and_ledgers_whatever_the_batch_size(
        home: Path, fmt: str) -> None:
    _messy(home, fmt)
    outcomes = {}
    for batch_rows in (7, 1000, 250_000):
        job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "format": fmt,
                                               "batch_rows": batch_rows},
                                 validation={"max_quarantine_share": 0.5}))
        assert local.run_partition(job, DAY, run_id=f"b{batch_rows}")["status"] == "success"
        outcomes[batch_rows] = _outcome(f"b{batch_rows}")
    table, quarantine, ledger_row = outcomes[7]
    assert len(table) > 500 and len(quarantine) >= 60 + 3 + 2 + 2, (len(table), len(quarantine))
    assert outcomes[1000] == outcomes[250_000] == outcomes[7]
