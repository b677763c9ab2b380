"""Any byte a file can hold is quarantined, not fatal (issue 25, point 1), on PostgreSQL.

A NUL character, a byte that is not UTF-8 and an encoded lone surrogate in a CSV and in a
Parquet file: the good rows publish, the bad ones are quarantined with their reason
(``nul_in_text:<col>``, ``invalid_utf8:<col>``), their ``row_values`` (jsonb) keep the values
as ``{"$text_escaped": ...}`` and ``pipeline.textsafe.restore`` gives the original bytes back.
Also: the ledger records a failure whose text quotes a NUL (the attempt never stays
``running``), a write the database refuses for its data is not retryable and never advises a
retry, and an empty re-run replacing a published day leaves a ledger warning (point 10d).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import ledger, local, persist
from pipeline.config import load_job
from pipeline.errors import DataRefusedError, ScoringError
from pipeline.store import engines, operational
from pipeline.textsafe import TEXT, restore
from tests.conftest import DAY, clean_customers, write_job

FOLDER = f"date={DAY}"
KEY = "customer_id"
# column -> (row position, the value's bytes as the file holds them, the reason the row gets)
ODD = {
    "region": (3, b"we\x00st", "nul_in_text:region"),                   # a NUL character
    "plan": (5, b"ba\xffsic", "invalid_utf8:plan"),                       # a byte that is not UTF-8
    "payment_method": (7, b"\xed\xa0\x80check", "invalid_utf8:payment_method"),  # an encoded lone surrogate
    "contract_type": (9, b"one-year\x00\xe9", "nul_in_text:contract_type; invalid_utf8:contract_type"),
}


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _job(home: Path, fmt: str, **validation: Any) -> Any:
    source = {"path": str(home / "data" / "churn"), "format": fmt, "batch_rows": 700}
    return load_job(write_job(home, validation={"max_quarantine_share": 0.5, **validation}, source=source))


def _folder(home: Path) -> Path:
    folder = home / "data" / "churn" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _quarantine() -> dict[str, dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons, row_values FROM scoring_quarantine "
                                    "WHERE job_id = 'churn_test'")).mappings()
        return {r["entity_key"]: {**r, "row_values": ledger.as_json(r["row_values"])} for r in rows}


def _published() -> set[int]:
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id FROM churn_test_predictions WHERE partition_date = :d"),
                            {"d": DAY})
        return {int(r[0]) for r in rows}


def _csv_with_odd_bytes(home: Path, frame: pd.DataFrame) -> None:
    """The frame as CSV, with ODD's bytes written into their cells (no encoder in between)."""
    text = frame.to_csv(index=False).encode()
    lines = text.split(b"\n")
    header = lines[0].split(b",")
    for column, (row, raw, _) in ODD.items():
        cells = lines[row + 1].split(b",")
        cells[header.index(column.encode())] = raw
        lines[row + 1] = b",".join(cells)
    (_folder(home) / "part-0000.csv").write_bytes(b"\n".join(lines))


def _string_array(values: list[bytes | None]) -> pa.Array:
    """A Parquet/Arrow string column holding exactly these bytes (a binary array viewed as text: nothing is
    validated, as a writer in another language can leave invalid UTF-8 in a string column)."""
    return pa.array(values, pa.binary()).view(pa.string())


def _parquet_with_odd_bytes(home: Path, frame: pd.DataFrame) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column, (row, raw, _) in ODD.items():
        values = [None if pd.isna(v) else v.encode() for v in frame[column]]
        values[row] = raw
        i = table.schema.get_field_index(column)
        table = table.set_column(i, column, _string_array(values))
    pq.write_table(table, _folder(home) / "part-0000.parquet")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_odd_bytes_are_quarantined_and_restored_exactly(home: Path, pg_url: str, fmt: str) -> None:
    frame = clean_customers(200)
    (_csv_with_odd_bytes if fmt == "csv" else _parquet_with_odd_bytes)(home, frame)
    summary = local.run_partition(_job(home, fmt), DAY, run_id=f"odd-{fmt}")

    bad = {str(frame.loc[row, KEY]): (column, raw, reason) for column, (row, raw, reason) in ODD.items()}
    assert summary["status"] == "success", summary
    n = len(frame)
    assert (summary["rows_in"], summary["rows_quarantined"], summary["rows_written"]) == (n, len(bad), n - len(bad))
    assert _published() == {int(k) for k in frame[KEY]} - {int(k) for k in bad}
    quarantine = _quarantine()
    assert set(quarantine) == set(bad)
    for key, (column, raw, reason) in bad.items():
        row = quarantine[key]
        assert set(reason.split("; ")) <= set(row["reasons"].split("; ")), (key, row["reasons"])
        assert set(row["row_values"][column]) == {TEXT}  # the analyst sees the escape, not a changed text
        values = restore(row["row_values"])
        assert values[column].encode("utf-8", "surrogateescape") == raw
        assert str(values[KEY]) == key
        for other in ("contract_type", "payment_method", "region", "plan"):  # the row's other texts untouched
            if other != column:
                original = frame.loc[frame[KEY] == int(key), other].iloc[0]
                assert values[other] == (None if pd.isna(original) else original), (key, other)


def test_a_nul_in_a_row_quarantined_for_another_reason_is_stored(home: Path, pg_url: str) -> None:
    """The persist side alone: a row with a NUL (and a NaN) that validation quarantines for its range still
    lands in the jsonb quarantine, restorable, and the day publishes."""
    frame = clean_customers(200)
    frame.loc[4, "monthly_charges"] = -5.0
    table = pa.Table.from_pandas(frame, preserve_index=False)
    regions = frame["region"].tolist()
    regions[4] = "no\x00rth\\x00"
    table = table.set_column(table.schema.get_field_index("region"), "region", pa.array(regions, pa.string()))
    pq.write_table(table, _folder(home) / "part-0000.parquet")
    summary = local.run_partition(_job(home, "parquet"), DAY, run_id="nul-other")
    key = str(frame.loc[4, KEY])
    assert summary["status"] == "success" and summary["rows_written"] == len(frame) - 1
    row = _quarantine()[key]
    assert "be_between:monthly_charges" in row["reasons"]
    assert row["row_values"]["region"] == {TEXT: "no\\x00rth\\\\x00"}
    assert restore(row["row_values"])["region"] == "no\x00rth\\x00"


def test_a_failure_quoting_a_nul_is_recorded(home: Path, pg_url: str) -> None:
    """The ledger takes any error text: a UTF-16 CSV (NULs between its letters) fails the partition, and
    the attempt is marked failed with a readable error, never left running."""
    frame = clean_customers(50)
    (_folder(home) / "part-0000.csv").write_bytes(frame.to_csv(index=False).encode("utf-16"))
    with pytest.raises(ScoringError):
        local.run_partition(_job(home, "csv"), DAY, run_id="utf16")
    row = ledger.get(_engine(), "churn_test", "utf16")
    assert row["status"] == "failed" and row["failed_stage"] == "ingest"
    assert "\x00" not in row["error"]
    # and directly: whatever a stage quotes, the row is written
    ledger.update(_engine(), "churn_test", "utf16", row["attempt"], error="cell 'a\x00b' and byte \udcff",
                  warnings="w\x00")
    again = ledger.get(_engine(), "churn_test", "utf16")
    assert (again["error"], again["warnings"]) == ("cell 'a\\x00b' and byte \\udcff", "w\\x00")


def test_duplicate_keys_refused_by_the_database_are_not_retried(home: Path, pg_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The unique index of the day cannot be built (duplicate keys reached persist): the failure is not
    retryable, names the partition and the table, advises no retry; the published copy is unchanged."""
    frame = clean_customers(100)
    frame.to_parquet(_folder(home) / "part-0000.parquet", index=False)
    job = _job(home, "parquet")
    assert local.run_partition(job, DAY, run_id="good")["status"] == "success"
    before = _published()

    batches = persist.prediction_batches

    def doubled(ctx: Any) -> Any:
        for batch in batches(ctx):
            yield batch
            yield batch.slice(0, 3)  # three keys twice

    monkeypatch.setattr(persist, "prediction_batches", doubled)
    with pytest.raises(DataRefusedError) as err:
        local.run_partition(job, DAY, run_id="dups")
    text = str(err.value)
    assert err.value.retryable is False
    assert f"partition {DAY}" in text and "churn_test_predictions" in text and "23505" in text
    assert "retry" not in text.lower() and "re-run the partition" in text
    row = ledger.get(_engine(), "churn_test", "dups")
    assert row["status"] == "failed" and row["failed_stage"] == "persist" and "retry" not in row["error"].lower()
    assert _published() == before


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_an_empty_rerun_replacing_published_rows_warns_in_the_ledger(home: Path, db: str,
                                                                     caplog: pytest.LogCaptureFixture,
                                                                     request: pytest.FixtureRequest) -> None:
    if db == "postgresql":
        request.getfixturevalue("pg_url")
    folder = _folder(home)
    clean_customers(120).to_parquet(folder / "part-0000.parquet", index=False)
    job = _job(home, "parquet", on_empty="succeed")
    first = local.run_partition(job, DAY, run_id="full")
    assert first["rows_written"] == len(clean_customers(120)) and persist.EMPTIED not in (first["warnings"] or "")

    clean_customers(120).head(0).to_parquet(folder / "part-0000.parquet", index=False)
    with caplog.at_level(logging.WARNING):
        empty = local.run_partition(job, DAY, run_id="emptied")
    assert (empty["status"], empty["rows_written"]) == ("success", 0)
    assert f"{persist.EMPTIED}: partition {DAY} of churn_test_predictions held {first['rows_written']} published rows" in empty["warnings"]
    assert any(persist.EMPTIED in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert _published() == set()

    again = local.run_partition(job, DAY, run_id="still-empty")  # nothing published was lost this time
    assert persist.EMPTIED not in (again["warnings"] or "")


def test_row_values_are_plain_json_for_analysts(home: Path, pg_url: str) -> None:
    """PostgreSQL's own JSON functions read the marker (no client library needed to spot an escaped value)."""
    test_a_nul_in_a_row_quarantined_for_another_reason_is_stored(home, pg_url)
    with _engine().connect() as conn:
        escaped = conn.execute(sa.text(
            "SELECT entity_key, row_values -> 'region' ->> '$text_escaped' FROM scoring_quarantine "
            "WHERE row_values -> 'region' ? '$text_escaped'")).all()
    assert [tuple(r) for r in escaped] == [(str(clean_customers(200).loc[4, KEY]), "no\\x00rth\\\\x00")]
    assert json.dumps(escaped[0][1])


def test_a_receivers_reply_with_a_nul_is_recorded_on_postgresql(pg_url: str) -> None:
    """A push receiver answering with a NUL in its text: the delivery ledger keeps the reply, shown escaped."""
    from pipeline import deliveries

    engine = sa.create_engine(pg_url)
    operational.ensure_ledger(engine)
    day = dt.date(2026, 11, 20)
    deliveries.plan(engine, job_id="j", partition_date=day, sink="webhook:http://127.0.0.1:1/x", run_id="r1",
                    plan_sig="p", keys=["k0"], row_counts=[5], model_name="m", model_version=1)
    deliveries.mark(engine, job_id="j", partition_date=day, batch_no=0, status="dead_letter", attempts=1,
                    run_id="r1", key="k0", error="HTTP 500: bad\x00reply")
    assert deliveries.batches(engine, "j", day)[0]["last_error"] == "HTTP 500: bad\\x00reply"
