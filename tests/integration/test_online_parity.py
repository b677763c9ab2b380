"""Online parity (issue 27, point 2): every row of a partition's export, sent to the online door as the upstream
system exports it (each value as text, then as typed JSON), gets the score the nightly run stored, bit for bit,
with the same prediction and flags; a row the batch quarantined gets the same reasons. For the demo's model
and for each bring-your-own kind (a scikit-learn Pipeline with a ColumnTransformer, HistGradientBoosting with
native categoricals, LightGBM), on SQLite and PostgreSQL.

Rows whose key the partition holds more than once are left out: the batch quarantines them as
``duplicate_key`` across the partition, while the door, sent one row at a time, sees no duplicate."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import local, onboard
from pipeline.config import JobConfig, load_job
from pipeline.registry import Registry
from pipeline.serve.door import Door, RowResult
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition
from tests.integration import test_byo_models as byo

FLAG_AGE = {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 20,
                                                                     "max_value": 80}, "on_fail": "flag"}
INTEGER = re.compile(r"^-?\d+$")
DECIMAL = re.compile(r"^-?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")


def _read_export(folder: Path) -> list[dict[str, str]]:
    """Every row of the partition's CSV files as text, as an upstream system exports them (bytes that are not
    UTF-8 read back as Python reads them: lone surrogates)."""
    rows: list[dict[str, str]] = []
    for path in sorted(folder.glob("*.csv")):
        text = path.read_bytes().decode("utf-8", "surrogateescape")
        rows += list(csv.DictReader(io.StringIO(text, newline="")))
    return rows


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """The row as a typed JSON export sends it: integers, decimals, booleans, null for an empty field."""
    def one(text: str) -> Any:
        if text == "":
            return None
        if INTEGER.match(text):
            return int(text)
        if DECIMAL.match(text):
            return float(text)
        return {"True": True, "False": False}.get(text, text)

    return json.loads(json.dumps({k: one(v) for k, v in row.items()}, ensure_ascii=False), strict=False)


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(out.getvalue().encode("utf-8", "surrogateescape"))


def _stored(job: JobConfig, key: str) -> dict[str, tuple[Any, ...]]:
    engine = engines.for_connection("scoring_db")
    quoted = engine.dialect.identifier_preparer.quote(key)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {quoted}, prediction, score, flags, model_name, model_version FROM "
                                    f"{job.output.table} WHERE partition_date = :d"), {"d": DAY})
        return {str(r[0]): tuple(r[1:]) for r in rows}


def _stored_quarantine(job: JobConfig) -> list[tuple[str | None, str]]:
    with engines.for_connection("scoring_db").connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons FROM scoring_quarantine WHERE job_id = :j AND "
                                    "partition_date = :d"), {"j": job.job_id, "d": DAY})
        return [(None if k is None else str(k), r) for k, r in rows]


def _key_text(value: Any) -> str:
    """A key as the tables hold it in text ('' for a missing one)."""
    return "" if value is None else str(value)


def _duplicated(rows: list[dict[str, Any]], key: str) -> set[str]:
    counts = Counter(_key_text(r[key]) for r in rows)
    return {k for k, n in counts.items() if n > 1 and k != ""}


def _scored_online(door: Door, rows: list[dict[str, Any]], chunk: int) -> list[RowResult]:
    """Every row through ``Door.score``: one at a time (chunk 1) or in requests of ``chunk`` rows."""
    out: list[RowResult] = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        results = door.score(part, f"parity-{start}")
        assert [r.index for r in results] == list(range(len(part)))
        assert [r.inputs for r in results] == part
        out += results
    return out


def _assert_parity(job: JobConfig, door: Door, export: list[dict[str, Any]], *, typed: bool, chunk: int,
                   convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Counter:
    """Every row's online answer equals the batch's; returns how many rows were scored / quarantined.

    ``export``: a CSV export's rows as text (``typed``: sent as ``_typed`` makes them), or ``convert`` says how
    a row is sent."""
    key = job.entity_key
    stored, quarantine = _stored(job, key), _stored_quarantine(job)
    duplicated = _duplicated(export, key)
    assert all(k in {q for q, _ in quarantine} for k in duplicated), "the batch quarantined every duplicated key"
    reasons = {k: r for k, r in quarantine if k is not None and k not in duplicated}
    sent = [r for r in export if _key_text(r[key]) not in duplicated]
    convert = convert or (_typed if typed else dict)
    results = _scored_online(door, [convert(r) for r in sent], chunk)
    seen: Counter = Counter()
    null_keys = []
    for row, result in zip(sent, results, strict=True):
        k = _key_text(row[key])
        if k == "":
            null_keys.append("; ".join(result.reasons))
            continue
        if k in stored:
            prediction, score, flags, model_name, model_version = stored[k]
            assert (result.status, result.prediction, result.flags) == ("scored", prediction,
                                                                        flags.split("; ") if flags else []), k
            assert result.score == score, (k, result.score, score)  # bit for bit
            assert (result.model_name, result.model_version) == (model_name, model_version), "the model that scored it"
        else:
            assert result.status == "quarantined" and "; ".join(result.reasons) == reasons[k], k
            assert result.model_name == job.model.name, "a quarantined row names the job's model (a cascade's router)"
        seen[result.status] += 1
    assert sorted(null_keys) == sorted(r for k, r in quarantine if k is None)
    assert seen["scored"] + seen["quarantined"] + len(null_keys) == len(sent)
    return seen


# -- the demo's model -----------------------------------------------------------------------
def _broken_export(folder: Path) -> None:
    """The demo's CSV export with rows the batch quarantines or flags: out of declared range, markers, bad numbers,
    unknown category, blank and bad-byte text, a NUL, a missing key, a key in both files."""
    files = sorted(folder.glob("*.csv"))
    first = _read_export_file(files[0])
    second = _read_export_file(files[1])
    edits: list[dict[str, str]] = [
        {"monthly_charges": "-5"}, {"age": "NA"}, {"tenure_months": "abc"}, {"region": ""},
        {"monthly_charges": " "}, {"customer_id": ""}, {"customer_id": second[0]["customer_id"]},
        {"support_tickets_90d": "1e400"}, {"contract_type": "weekly"}, {"plan": "basic\x00"},
        {"region": "nord\udce9"}, {"data_usage_gb": "NULL"}, {"age": "19"}, {"total_charges": "n/a"},
        {"num_products": "2.0000000000000004"}, {"days_since_last_login": "1e-320"}, {"customer_id": ""},
    ]
    for i, edit in enumerate(edits):
        first[3 + 5 * i].update(edit)
    _write_rows(files[0], first)


def _read_export_file(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8", "surrogateescape"), newline="")))


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_every_row_of_the_demo_partition_scores_online_as_in_the_nightly_run(any_db: str, home: Path) -> None:
    folder = write_partition(home, n=500, files=2, fmt="csv")
    _broken_export(folder)
    job = load_job(write_job(home, job_id="online_parity", source={
        "path": str(home / "data" / "churn"), "format": "csv", "batch_rows": 128},
        validation={"max_quarantine_share": 0.5, "expectations": [FLAG_AGE]}))
    row = local.run_partition(job, DAY, run_id="parity")
    assert row["status"] == "success" and row["rows_quarantined"] >= 12
    door = Door(job)
    assert door.load().version == row["model_version"]
    export = _read_export(folder)
    one_by_one = _assert_parity(job, door, export, typed=False, chunk=1)
    in_requests = _assert_parity(job, door, export, typed=True, chunk=40)
    assert one_by_one == in_requests
    assert one_by_one["quarantined"] >= 10 and one_by_one["scored"] > 400


def _as_text(row: dict[str, Any]) -> dict[str, Any]:
    """A typed row with every value sent as text (a float as Python writes it), missing values as null."""
    return {k: None if v is None else str(v) for k, v in row.items()}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_parquet_partition_scores_online_as_in_the_nightly_run(any_db: str, home: Path) -> None:
    """A Parquet job: no missing-value markers, the key an integer as the file declares it; NaN and
    out-of-range numbers, a missing category and a repeated key, each as the batch judges them."""
    import pyarrow.parquet as pq

    from pipeline.demo import data as demo_data

    frame = demo_data.customers(DAY, n=400)
    for i, (column, value) in enumerate([("monthly_charges", -5.0), ("age", float("nan")), ("region", None),
                                         ("contract_type", "weekly"), ("support_tickets_90d", float("inf")),
                                         ("age", 19.0), ("customer_id", int(frame.loc[300, "customer_id"]))]):
        frame.loc[5 + 7 * i, column] = value
    files = demo_data.write_partition(home / "data" / "churn", DAY, frame, files=2)
    job = load_job(write_job(home, job_id="online_parquet", validation={
        "max_quarantine_share": 0.5, "expectations": [FLAG_AGE]}))
    row = local.run_partition(job, DAY, run_id="parquet")
    assert row["status"] == "success" and row["rows_quarantined"] >= 5
    door = Door(job)
    door.load()
    export = [r for path in files for r in pq.read_table(path).to_pylist()]
    typed = _assert_parity(job, door, export, typed=True, chunk=1, convert=dict)
    assert _assert_parity(job, door, export, typed=False, chunk=50, convert=_as_text) == typed
    assert typed["quarantined"] >= 4 and typed["scored"] > 300


# -- a cascade --------------------------------------------------------------------------------
CASCADES = {
    "default_model_and_gate": {"routes": {"frequent": {"name": "churn_frequent"}},
                               "default": {"name": "churn_occasional"}, "gate": 0.999},
    "unrouted_quarantined": {"routes": {"frequent": {"name": "churn_frequent"}}, "default": "quarantine"},
}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("shape", list(CASCADES))
def test_a_cascade_scores_online_as_in_the_nightly_run(any_db: str, cascade_home: Path, shape: str) -> None:
    folder = write_partition(cascade_home, n=400, files=2, fmt="csv")
    _broken_export(folder)
    job = load_job(write_job(cascade_home, job_id=f"online_{shape}", model={"name": "segments"},
                             cascade=CASCADES[shape], output={"table": f"online_{shape}_predictions",
                                                              "connection": "scoring_db"},
                             source={"path": str(cascade_home / "data" / "churn"), "format": "csv",
                                     "batch_rows": 128},
                             validation={"max_quarantine_share": 0.9}))
    row = local.run_partition(job, DAY, run_id=f"online-{shape}")
    assert row["status"] == "success"
    door = Door(job)
    served = door.load()
    assert served.name == "segments" and set(served.routes) >= {"frequent"}
    export = _read_export(folder)
    one_by_one = _assert_parity(job, door, export, typed=False, chunk=1)
    assert _assert_parity(job, door, export, typed=True, chunk=40) == one_by_one
    assert one_by_one["quarantined"] >= 3 and one_by_one["scored"] > 100
    models = {r[3] for r in _stored(job, job.entity_key).values()}
    if shape == "unrouted_quarantined":
        assert any(":no_route:" in reasons for _, reasons in _stored_quarantine(job)), "rows with no route compared"
    else:
        assert {"segments", "churn_occasional"} <= models, f"rows kept by the router and scored by the default: {models}"


# -- bring your own model -------------------------------------------------------------------
def _byo_export(home: Path, frame: Any) -> Path:
    """Rows of the training data and new ones (some just outside the training ranges), as a CSV export with
    blanks for missing numbers, and a few broken values."""
    import pandas as pd

    rows = pd.concat([frame.head(150), byo.training_frame(n=150, seed=9)], ignore_index=True)
    rows[byo.KEY] = [f"C-{i:05d}" for i in range(len(rows))]
    folder = byo.write_export(home, rows, fmt="csv")
    path = folder / "part-0000.csv"
    export = _read_export_file(path)
    for i, edit in enumerate([{"Tenure Months": "abc"}, {"Contract": "NA"}, {"TotalCharges": "-1e400"},
                              {"Paperless": "True"}, {"Tenure Months": "500"}, {"Contract": "Weekly"}]):
        export[7 + 11 * i].update(edit)
    _write_rows(path, export)
    return folder


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("kind", ["pipeline_logistic", "hgb_native_categories", "lightgbm"])
def test_each_bring_your_own_kind_scores_online_as_in_the_nightly_run(any_db: str, home: Path, kind: str) -> None:
    frame = byo.training_frame()
    model, target, frame = byo.KINDS[kind](frame)
    onboard.register_model(Registry(), kind, model, frame.drop(columns=[c for c in ("Churn", "Spend", "Tier")
                                                                        if c != target]),
                           target=target, key=byo.KEY, alias="champion", data="generated in the test")
    folder = _byo_export(home, frame)
    job = byo.byo_job(home, kind, fmt="csv", max_quarantine_share=0.5)
    row = local.run_partition(job, DAY, run_id=f"online-{kind}")
    assert row["status"] == "success" and row["rows_quarantined"] >= 3
    door = Door(job)
    door.load()
    export = _read_export(folder)
    one_by_one = _assert_parity(job, door, export, typed=False, chunk=1)
    assert _assert_parity(job, door, export, typed=True, chunk=25) == one_by_one
    assert one_by_one["quarantined"] >= 3 and one_by_one["scored"] > 250
