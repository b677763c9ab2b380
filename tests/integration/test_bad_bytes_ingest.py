"""A stray byte in a file quarantines its row, never the partition (issue 25: 1, with ingest's side of it).

CSV and Parquet files of the demo partition get a value that is not UTF-8 (in a category column and in
the entity key) and a NUL; on SQLite and PostgreSQL the run publishes every other row, quarantines those
with ``invalid_utf8:<col>`` / ``nul_in_text:<col>``, and the quarantine gives the exact bytes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.ledger import as_json
from pipeline.store import engines
from pipeline.textsafe import restore
from tests.conftest import DAY, clean_customers, write_job

N = 300


def _quarantine() -> dict[str, tuple[str, dict[str, Any]]]:
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons, row_values FROM scoring_quarantine "
                                    "WHERE job_id = 'churn_test'")).all()
    out = {}
    for _key, reasons, values in rows:
        values = restore(as_json(values))
        out[str(values["customer_id"])] = (reasons, values)
    return out


def _published() -> int:
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM churn_test_predictions")).scalar_one())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_bad_bytes_and_a_nul_quarantine_their_rows_only(home: Path, any_db: str, fmt: str) -> None:
    frame = clean_customers(N)
    frame["customer_id"] = frame["customer_id"].astype(str)
    folder = home / "data" / "churn" / f"date={DAY}"
    folder.mkdir(parents=True)
    ids = list(frame["customer_id"])
    bad_plan, bad_key, nul = ids[3], ids[7], ids[11]
    if fmt == "csv":  # placeholders written by pandas, then the bytes put in their place
        plan = frame.loc[3, "plan"]
        marked = frame.copy()
        marked.loc[3, "plan"], marked.loc[7, "customer_id"] = "@PLAN@", "@KEY@"
        marked.loc[11, "region"] = "@REGION@"
        text = (marked.to_csv(index=False).encode().replace(b"@PLAN@", plan.encode() + b"\xe9")
                .replace(b"@KEY@", bad_key.encode() + b"\xff")
                .replace(b"@REGION@", frame.loc[11, "region"].encode() + b"\x00x"))
        (folder / "part-0000.csv").write_bytes(text)
        expected_plan = plan.encode() + b"\xe9"
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)

        def raw(column: str, row: int, value: bytes) -> None:
            nonlocal table
            values = [v.encode() if v is not None else None for v in table.column(column).to_pylist()]
            values[row] = value
            table = table.set_column(table.schema.get_field_index(column), column,
                                     pa.array(values, pa.binary()).view(pa.string()))

        expected_plan = frame.loc[3, "plan"].encode() + b"\xe9"
        raw("plan", 3, expected_plan)
        raw("customer_id", 7, bad_key.encode() + b"\xff")
        raw("region", 11, f"{frame.loc[11, 'region']}\x00x".encode())
        pq.write_table(table, folder / "part-0000.parquet")
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "format": fmt, "batch_rows": 100}))
    summary = local.run_partition(job, DAY, run_id=f"bytes-{fmt}")
    assert summary["status"] == "success", summary["error"]
    quarantine = _quarantine()
    assert (summary["rows_in"], summary["rows_quarantined"]) == (len(frame), 3), quarantine
    assert _published() == len(frame) - 3
    assert "invalid_utf8:plan" in quarantine[bad_plan][0]
    assert quarantine[bad_plan][1]["plan"].encode("utf-8", "surrogateescape") == expected_plan
    [(key, (reasons, values))] = [(k, v) for k, v in quarantine.items() if k.startswith(bad_key)]
    assert "invalid_utf8:customer_id" in reasons
    assert values["customer_id"].encode("utf-8", "surrogateescape") == bad_key.encode() + b"\xff"
    assert "nul_in_text:region" in quarantine[nul][0] and "\x00" in quarantine[nul][1]["region"]
