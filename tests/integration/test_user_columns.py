"""An export with the user's own column names, end to end on SQLite and PostgreSQL.

The churn demo's partition is rewritten as a user's export would have it: the key column is
``customer ID`` (or ``customerID``, or a name holding a double quote) with text keys, one
input column has the export's own name and is mapped by ``source.rename``, and numeric text
may be blank. The predictions table, its analyst views and the quarantine are then queried
with the quoted key column.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.ledger import as_json
from pipeline.store import analyst, engines, job_tables, operational, writes
from tests.conftest import DAY, write_job, write_partition

SESSION = "Avg Session (min)"  # the export's name of the contract's avg_session_minutes
RENAME = {SESSION: "avg_session_minutes"}


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _export(home: Path, key: str, day: dt.date = DAY, n: int = 400, keep: slice | None = None,
            blanks: int = 0, fmt: str = "parquet") -> tuple[list[str], list[str]]:
    """The demo partition with text keys in column ``key`` and avg_session_minutes under SESSION.

    Args:
        keep: rows to keep of each file (a later day with fewer customers).
        blanks: this many rows of each file get a single space as their (text) session minutes.
    Returns: the export's keys, and the keys of the rows with a blank.
    """
    folder = write_partition(home, day, n=n)
    keys: list[str] = []
    blank_keys: list[str] = []
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        if keep is not None:
            table = table.slice(keep.start, keep.stop - keep.start)
        ids = pc.binary_join_element_wise("C-", pc.cast(table["customer_id"], pa.string()), "")
        table = table.set_column(table.schema.get_field_index("customer_id"), key, ids)
        session = table["avg_session_minutes"]
        if blanks:  # an export that writes numbers as text, with a blank for "unknown"
            text = pc.cast(session, pa.string()).to_pylist()
            text[:blanks] = [" "] * blanks
            session = pa.array(text, pa.string())
        table = table.set_column(table.schema.get_field_index("avg_session_minutes"), SESSION, session)
        if fmt == "csv":
            path.unlink()
            pacsv.write_csv(table, path.with_suffix(".csv"))
        else:
            pq.write_table(table, path)
        keys.extend(table[key].to_pylist())
        blank_keys.extend(table[key][:blanks].to_pylist())
    return keys, blank_keys


def _job(home: Path, key: str, fmt: str = "parquet", **validation: Any) -> Any:
    source = {"path": str(home / "data" / "churn"), "format": fmt, "batch_rows": 700, "rename": RENAME}
    return load_job(write_job(home, entity_key=key, source=source,
                              validation={"max_quarantine_share": 0.2, **validation}))


def _quoted(key: str) -> str:
    return '"' + key.replace('"', '""') + '"'


def _predicted(key: str, table: str = "churn_test_predictions", day: dt.date | None = DAY) -> list[Any]:
    where = "" if day is None else " WHERE partition_date = :d"
    with _engine().connect() as conn:
        return list(conn.execute(sa.text(f"SELECT {_quoted(key)} FROM {table}{where}"), {"d": day}).scalars())


def _quarantine() -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons, row_values FROM scoring_quarantine "
                                    "WHERE job_id = 'churn_test'")).mappings()
        return [{**r, "row_values": as_json(r["row_values"])} for r in rows]


@pytest.mark.parametrize("key", ["customer ID", "customerID", 'cust "ID"'])
def test_a_mixed_case_key_and_a_renamed_column_land_in_the_table_and_the_views(any_db: str, home: Path,
                                                                                key: str) -> None:
    keys, _ = _export(home, key)
    job = _job(home, key)
    summary = local.run_partition(job, DAY, run_id="r1")
    assert summary["status"] == "success" and summary["rows_in"] == len(keys) > 300
    scored = _predicted(key)
    quarantined = _quarantine()
    assert len(scored) == summary["rows_scored"] == summary["rows_written"] == len(set(scored))
    assert len(quarantined) == summary["rows_quarantined"]
    assert sorted(scored + [q["entity_key"] for q in quarantined]) == sorted(keys), "every key, once"
    assert all(k.startswith("C-") for k in scored)
    assert all(key in q["row_values"] and "avg_session_minutes" in q["row_values"] for q in quarantined)
    with _engine().connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("churn_test_predictions")]
        daily = conn.execute(sa.text("SELECT rows_scored FROM churn_test_predictions_daily")).scalar_one()
    assert columns[:2] == ["partition_date", key]
    assert sorted(_predicted(key, "churn_test_predictions_latest", None)) == sorted(scored)
    assert daily == len(scored)

    # a re-run replaces the partition: the same rows, once
    local.run_partition(job, DAY, run_id="r2")
    assert sorted(_predicted(key)) == sorted(scored)


def test_the_latest_view_keeps_each_text_key_once_across_days(any_db: str, home: Path) -> None:
    key = "customer ID"
    first, _ = _export(home, key)
    later = DAY + dt.timedelta(days=1)
    second, _ = _export(home, key, later, keep=slice(0, 50))  # 50 rows of each of the 2 files
    job = _job(home, key)
    local.run_partition(job, DAY, run_id="d1")
    local.run_partition(job, later, run_id="d2")
    day1, day2 = set(_predicted(key)), set(_predicted(key, day=later))
    assert len(second) == 100 and day2 <= set(second) and day1 <= set(first)
    with _engine().connect() as conn:
        latest = {k: (str(d), run) for k, d, run in conn.execute(sa.text(
            f"SELECT {_quoted(key)}, partition_date, run_id FROM churn_test_predictions_latest"))}
    assert set(latest) == day1 | day2 and len(latest) == len(day1 | day2)
    assert {k for k, (_, run) in latest.items() if run == "d2"} == day2
    assert all(latest[k] == (str(DAY), "d1") for k in day1 - day2)


def test_blank_numeric_text_is_scored_with_the_policy_and_quarantined_without(any_db: str, home: Path) -> None:
    key = "customerID"
    _, blank_keys = _export(home, key, blanks=3, fmt="csv")  # 3 blank session minutes in each of the 2 files
    assert len(blank_keys) == 6
    strict = local.run_partition(_job(home, key, fmt="csv"), DAY, run_id="strict")
    by_key = {q["entity_key"]: q for q in _quarantine()}
    assert {k for k, q in by_key.items() if "invalid_number:avg_session_minutes" in q["reasons"]} == set(blank_keys)
    assert all(by_key[k]["row_values"]["avg_session_minutes"] == " " for k in blank_keys), "the original text"
    assert not set(blank_keys) & set(_predicted(key))

    lenient = local.run_partition(_job(home, key, fmt="csv", blank_is_missing=["avg_session_minutes"]), DAY,
                                  run_id="lenient")
    scored = set(_predicted(key))
    assert set(blank_keys) <= scored, "avg_session_minutes is nullable: the model's own missing-value handling"
    assert not set(blank_keys) & {q["entity_key"] for q in _quarantine()}
    assert lenient["rows_scored"] == strict["rows_scored"] + len(blank_keys) == len(scored)
    assert lenient["rows_quarantined"] == strict["rows_quarantined"] - len(blank_keys)
    with _engine().connect() as conn:
        scores = conn.execute(sa.text(f"SELECT score FROM churn_test_predictions WHERE {_quoted(key)} IN "
                                      f"({', '.join(repr(k) for k in blank_keys)})")).scalars().all()
    assert len(scores) == len(blank_keys) and all(0.0 <= s <= 1.0 for s in scores)


def test_a_key_with_a_quote_goes_through_the_bulk_write_path(any_db: str, home: Path) -> None:
    """PostgreSQL: ADBC's COPY names the key column itself; SQLite: executemany with the quoted name."""
    key = 'we"ird key; --'
    engine = _engine()
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, "odd_predictions", key, "str")
    now = dt.datetime(2026, 11, 21, 3, 0)

    def batch(keys: list[str], day: dt.date) -> pa.Table:
        n = len(keys)
        return pa.table({key: keys, "partition_date": pa.array([day] * n, pa.date32()),
                         "prediction": ["1"] * n, "score": [0.5] * n, "model_name": ["m"] * n,
                         "model_version": pa.array([1] * n, pa.int32()), "run_id": ["r"] * n,
                         "scored_at": pa.array([now] * n, pa.timestamp("us")), "flags": pa.nulls(n, pa.string())})

    written = writes.replace_partition(engine, table="odd_predictions", key=key, job_id="odd", partition_date=DAY,
                                      batches=[batch(["a", "b"], DAY), batch(["c"], DAY)])
    later = DAY + dt.timedelta(days=1)
    writes.replace_partition(engine, table="odd_predictions", key=key, job_id="odd", partition_date=later,
                            batches=[batch(["b"], later)])
    assert written == 3 and analyst.count_partition(engine, "odd_predictions", DAY) == 3
    with engine.connect() as conn:
        latest = dict(conn.execute(sa.text(
            f"SELECT {_quoted(key)}, partition_date FROM odd_predictions_latest")).tuples().all())
    assert {k: str(d) for k, d in latest.items()} == {"a": str(DAY), "b": str(later), "c": str(DAY)}


def test_a_sharded_run_finds_duplicates_of_a_renamed_key_across_shards(home: Path) -> None:
    _export(home, "Customer Ref")
    files = sorted((home / "data" / "churn" / f"date={DAY}").glob("*.parquet"))
    assert len(files) >= 2
    first, second = pq.read_table(files[0]), pq.read_table(files[1])
    twin = first["Customer Ref"][0].as_py()
    second = second.set_column(0, "Customer Ref", pa.array([twin, *second["Customer Ref"].to_pylist()[1:]]))
    pq.write_table(second, files[1])  # one key in two files, so in two shards
    source = {"path": str(home / "data" / "churn"), "batch_rows": 700, "shards": 2,
              "rename": {**RENAME, "Customer Ref": "customer_ref"}}
    job = load_job(write_job(home, entity_key="customer_ref", source=source,
                             validation={"max_quarantine_share": 0.2}))
    local.run_partition(job, DAY, run_id="sharded")
    twins = [q for q in _quarantine() if q["entity_key"] == twin]
    assert len(twins) == 2 and all("duplicate_key:customer_ref" in q["reasons"] for q in twins)
    assert twin not in _predicted("customer_ref")
