"""Keys read as what they are (issue 25: 7): a CSV's zero-padded ids stay text unless the job says integer.

Two CSV files of one partition hold `0100005` and `100005`, sharded across two shards: as text (the
default for a CSV) they are two customers, both scored, the predictions table's key column is text;
with `entity_key_type: integer` they are one key seen twice, quarantined as a duplicate by the plan
that spans the shards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.store import engines
from tests.conftest import DAY, clean_customers, write_job


def _export(home: Path) -> tuple[str, str, int]:
    frame = clean_customers(400)
    frame["customer_id"] = frame["customer_id"].astype(str)
    first, second = frame.iloc[:200].copy(), frame.iloc[200:].copy()
    padded, plain = "0" + first["customer_id"].iloc[5], first["customer_id"].iloc[5]
    first.iloc[5, first.columns.get_loc("customer_id")] = padded
    second.iloc[7, second.columns.get_loc("customer_id")] = plain
    folder = home / "data" / "churn" / f"date={DAY}"
    folder.mkdir(parents=True)
    first.to_csv(folder / "part-0000.csv", index=False)
    second.to_csv(folder / "part-0001.csv", index=False)
    return padded, plain, len(frame)


def _run(home: Path, job_id: str, **top: Any) -> dict[str, Any]:
    job = load_job(write_job(home, job_id=job_id, source={"path": str(home / "data" / "churn"), "format": "csv",
                                                          "shards": 2, "batch_rows": 100}, **top))
    summary = local.run_partition(job, DAY, run_id=job_id)
    assert summary["status"] == "success", summary["error"]
    return summary


@pytest.mark.parametrize("key_type", [None, "integer"])
def test_zero_padded_csv_keys_are_two_customers_unless_the_job_says_integer(home: Path, any_db: str,
                                                                             key_type: str | None) -> None:
    padded, plain, rows = _export(home)
    engine = engines.for_connection("scoring_db")
    if key_type is None:
        summary = _run(home, "keys_text")
        assert (summary["rows_scored"], summary["rows_quarantined"]) == (rows, 0)
        with engine.connect() as conn:
            keys = {r[0] for r in conn.execute(sa.text("SELECT customer_id FROM keys_text_predictions"))}
            kind = [c["type"] for c in sa.inspect(conn).get_columns("keys_text_predictions")
                    if c["name"] == "customer_id"]
        assert {padded, plain} <= keys and all(isinstance(k, str) for k in keys)
        assert "INT" not in str(kind[0]).upper()
    else:
        summary = _run(home, "keys_int", entity_key_type="integer")
        assert (summary["rows_scored"], summary["rows_quarantined"]) == (rows - 2, 2)
        with engine.connect() as conn:
            reasons = [r[0] for r in conn.execute(sa.text(
                "SELECT reasons FROM scoring_quarantine WHERE job_id = 'keys_int'"))]
        assert reasons == ["duplicate_key:customer_id"] * 2


def test_a_sql_sources_text_keys_are_one_customer_when_the_job_says_integer(home: Path) -> None:
    """A query returning the key as text (`0100005`, `100005`) with `entity_key_type: integer`, in 2 shards:
    the plan finds the duplicate in the type the shards' ingest gives the key, so both copies are quarantined."""
    import pandas as pd

    padded, plain, rows = _export(home)
    folder = home / "data" / "churn" / f"date={DAY}"
    frame = pd.concat([pd.read_csv(p, dtype={"customer_id": str}) for p in sorted(folder.glob("*.csv"))],
                      ignore_index=True)
    frame.insert(0, "day", DAY.isoformat())
    frame.to_sql("feature_rows", engines.for_connection("scoring_db"), if_exists="replace", index=False)
    job = load_job(write_job(home, job_id="keys_sql", entity_key_type="integer", source={
        "kind": "sql", "query": "SELECT * FROM feature_rows WHERE day = :partition_date", "shards": 2,
        "batch_rows": 100}))
    summary = local.run_partition(job, DAY, run_id="keys_sql")
    assert summary["status"] == "success", summary["error"]
    assert (summary["rows_scored"], summary["rows_quarantined"]) == (rows - 2, 2)
