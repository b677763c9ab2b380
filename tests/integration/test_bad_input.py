"""Bad input never corrupts output: each broken partition through the real stages.

Every test asserts the exact outcome: which stage failed and what the message says, or
which rows were quarantined with which reason, and that the predictions table holds
exactly the valid rows (or was left untouched) with rows_in = scored + quarantined.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import ledger, local
from pipeline.config import load_job
from pipeline.demo.receiver import Receiver
from pipeline.errors import (
    ConfigError,
    DriftError,
    InputError,
    ModelIntegrityError,
    ModelNotFoundError,
    StoreError,
)
from pipeline.ledger import as_json
from pipeline.store import engines
from tests.conftest import DAY, clean_customers, write_job

FOLDER = f"date={DAY}"


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _frame(n: int = 400, seed: int = 3) -> pd.DataFrame:
    return clean_customers(n, seed)


def _write(home: Path, frames: list[pd.DataFrame | pa.Table], fmt: str = "parquet") -> list[Path]:
    folder = home / "data" / "churn" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"part-{i:04d}.{fmt}"
        if isinstance(frame, pa.Table):
            pq.write_table(frame, path)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        paths.append(path)
    return paths


def _job(home: Path, fmt: str = "parquet", **validation: Any) -> Any:
    doc: dict[str, Any] = {"max_quarantine_share": 0.5, **validation}
    source = {"path": str(home / "data" / "churn"), "format": fmt, "batch_rows": 700}
    return load_job(write_job(home, validation=doc, source=source))


def _quarantine() -> list[dict[str, Any]]:
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, reasons, row_values FROM scoring_quarantine "
                                    "WHERE job_id = 'churn_test' ORDER BY entity_key")).mappings()
        return [{**r, "row_values": as_json(r["row_values"])} for r in rows]


def _predictions() -> dict[int, dict[str, Any]]:
    with _engine().connect() as conn:
        if not sa.inspect(conn).has_table("churn_test_predictions"):
            return {}
        rows = conn.execute(sa.text("SELECT * FROM churn_test_predictions WHERE partition_date = :d"), {"d": DAY})
        return {int(r.customer_id): dict(r._mapping) for r in rows}


def _reconciles(summary: dict[str, Any], scored_keys: set[int]) -> None:
    assert summary["status"] == "success"
    assert summary["rows_in"] == summary["rows_scored"] + summary["rows_quarantined"]
    assert set(_predictions()) == scored_keys and summary["rows_written"] == len(scored_keys)


def _fails_before_writing(job: Any, error: type[Exception], stage: str, *fragments: str) -> str:
    with pytest.raises(error) as err:
        local.run_partition(job, DAY, run_id="bad")
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, text
    row = ledger.get(_engine(), "churn_test", "bad")
    assert row["status"] == "failed" and row["failed_stage"] == stage
    assert _predictions() == {} and _quarantine() == []
    return text


# -- partition-level problems -----------------------------------------------------------
def test_empty_partition_fails_by_default(home: Path) -> None:
    _write(home, [_frame().head(0), _frame().head(0)])
    _fails_before_writing(_job(home), InputError, "ingest", f"partition {DAY}", "hold no rows", "on_empty: succeed")


def test_empty_partition_can_succeed_with_a_warning(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(home, [_frame().head(0)])
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        summary = local.run_partition(_job(home, on_empty="succeed"), DAY, run_id="empty")
    assert any("is empty" in r.message and r.levelno == logging.WARNING for r in caplog.records)
    assert (summary["status"], summary["rows_in"], summary["rows_scored"], summary["rows_written"]) == (
        "success", 0, 0, 0)


def test_truncated_file_fails_naming_the_file(home: Path) -> None:
    good, bad = _write(home, [_frame(seed=1), _frame(seed=2)])
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    _fails_before_writing(_job(home), InputError, "ingest", f"partition {DAY}", f"cannot read file {bad}",
                          "re-export")


def test_missing_required_column_fails_naming_file_and_column(home: Path) -> None:
    good, bad = _write(home, [_frame(seed=1), _frame(seed=2).drop(columns=["tenure_months"])])
    _fails_before_writing(_job(home), InputError, "ingest", f"file {bad} has no column(s) tenure_months")


def test_column_of_an_unreadable_type_fails(home: Path) -> None:
    frame = _frame()
    frame["tenure_months"] = pd.to_datetime("2026-01-01") + pd.to_timedelta(frame.index, unit="D")
    [path] = _write(home, [frame])
    _fails_before_writing(_job(home), InputError, "ingest", f"file {path}, column 'tenure_months' has type "
                          "timestamp", "cannot be read as float64")


def test_text_column_where_numbers_are_expected_fails(home: Path) -> None:
    frame = _frame()
    frame["monthly_charges"] = "n/a"
    [path] = _write(home, [frame])
    _fails_before_writing(_job(home), InputError, "ingest", f"file {path}, column 'monthly_charges' holds text",
                          "'n/a'")


def test_schema_differing_between_files_fails_naming_both(home: Path) -> None:
    second = _frame(seed=2)
    second["age"] = second["age"].astype(str)
    first, other = _write(home, [_frame(seed=1), second])
    _fails_before_writing(_job(home), InputError, "ingest", "column 'age' has a different type in different files",
                          f"number in {first}", f"text in {other}")


# -- row-level problems -----------------------------------------------------------------
def test_nulls_ranges_nan_inf_and_duplicates_are_quarantined_with_reasons(home: Path) -> None:
    a, b = _frame(seed=1), _frame(seed=2)
    b["customer_id"] += 10_000_000
    a.loc[0, "tenure_months"] = None                 # required feature missing
    a.loc[1, "monthly_charges"] = -5.0               # below the contract's minimum
    a.loc[3, "data_usage_gb"] = float("inf")         # infinity in an optional feature
    b.loc[0, "customer_id"] = a.loc[10, "customer_id"]  # the same customer in two files
    table = pa.Table.from_pandas(a, preserve_index=False)  # pandas would write NaN as null: Arrow keeps it
    discount = table["discount_pct"].to_pylist()
    discount[2] = float("nan")                       # NaN in a required feature
    i = table.schema.get_field_index("discount_pct")
    _write(home, [table.set_column(i, "discount_pct", pa.array(discount, pa.float64())), b])
    summary = local.run_partition(_job(home), DAY, run_id="rows")
    q = {int(r["entity_key"]): r for r in _quarantine()}
    dup = int(a.loc[10, "customer_id"])
    assert {k: r["reasons"] for k, r in q.items()} == {
        int(a.loc[0, "customer_id"]): "not_null:tenure_months",
        int(a.loc[1, "customer_id"]): "be_between:monthly_charges",
        int(a.loc[2, "customer_id"]): "not_null:discount_pct; invalid_number:discount_pct",  # required, and NaN
        int(a.loc[3, "customer_id"]): "invalid_number:data_usage_gb",
        dup: "duplicate_key:customer_id",
    }
    assert [r["reasons"] for r in _quarantine() if int(r["entity_key"]) == dup] == ["duplicate_key:customer_id"] * 2
    assert q[int(a.loc[2, "customer_id"])]["row_values"]["discount_pct"] == "nan"
    assert q[int(a.loc[3, "customer_id"])]["row_values"]["data_usage_gb"] == "inf"
    assert summary["rows_quarantined"] == 6 and summary["rows_in"] == len(a) + len(b)
    keys = set(a["customer_id"]) | set(b["customer_id"])
    _reconciles(summary, {int(k) for k in keys} - set(q))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_blank_or_unparseable_value_in_a_numeric_column_quarantines_the_row(home: Path, fmt: str) -> None:
    frame = _frame()
    frame["age"] = frame["age"].map(lambda v: "" if pd.isna(v) else f"{v:g}").astype(object)
    frame.loc[5, "age"] = " "           # blank
    frame.loc[6, "age"] = "forty-two"   # unparseable
    frame.loc[7, "age"] = "  42 "       # fine once trimmed
    if fmt == "parquet":
        frame.loc[frame["age"] == "", "age"] = None
    _write(home, [frame], fmt)
    summary = local.run_partition(_job(home, fmt), DAY, run_id="text")
    q = {int(r["entity_key"]): r for r in _quarantine()}
    bad = {int(frame.loc[5, "customer_id"]), int(frame.loc[6, "customer_id"])}
    assert set(q) == bad and {r["reasons"] for r in q.values()} == {"invalid_number:age"}
    assert q[int(frame.loc[6, "customer_id"])]["row_values"]["age"] == "forty-two"
    assert _predictions()[int(frame.loc[7, "customer_id"])]["score"] is not None
    _reconciles(summary, set(frame["customer_id"].astype(int)) - bad)


def test_unknown_category_quarantined_by_default(home: Path) -> None:
    frame = _frame()
    frame.loc[[3, 4], "plan"] = "platinum-2027"
    _write(home, [frame])
    summary = local.run_partition(_job(home), DAY, run_id="cat")
    q = _quarantine()
    assert {r["reasons"] for r in q} == {"unknown_category:plan"} and len(q) == 2
    _reconciles(summary, set(frame["customer_id"].astype(int)) - {int(r["entity_key"]) for r in q})


def test_unknown_category_scored_and_flagged_when_the_job_says_so(home: Path) -> None:
    frame = _frame()
    frame.loc[[3, 4], "plan"] = "platinum-2027"
    _write(home, [frame])
    summary = local.run_partition(_job(home, unknown_categories="flag"), DAY, run_id="flag")
    assert _quarantine() == [] and summary["rows_scored"] == len(frame)
    predictions = _predictions()
    flagged = {k: p["flags"] for k, p in predictions.items() if p["flags"]}
    assert flagged == {int(frame.loc[i, "customer_id"]): "unknown_category:plan" for i in (3, 4)}
    _reconciles(summary, set(frame["customer_id"].astype(int)))


def test_job_file_expectations_quarantine_or_flag(home: Path) -> None:
    frame = _frame()
    _write(home, [frame])
    young = set(frame.loc[frame["age"] < 25, "customer_id"].astype(int))
    heavy = set(frame.loc[frame["support_tickets_90d"] > 4, "customer_id"].astype(int))
    assert young and heavy
    job = _job(home, expectations=[
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 25}},
        {"type": "expect_column_values_to_be_between", "on_fail": "flag",
         "kwargs": {"column": "support_tickets_90d", "max_value": 4}},
    ])
    summary = local.run_partition(job, DAY, run_id="extra")
    q = _quarantine()
    assert {int(r["entity_key"]) for r in q} == young
    # the contract already has be_between:age and be_between:support_tickets_90d: the job's get #2
    assert {r["reasons"].split("; ")[0] for r in q} == {"be_between:age#2"}
    flagged = {k for k, p in _predictions().items() if p["flags"] == "be_between:support_tickets_90d#2"}
    assert flagged == heavy - young
    _reconciles(summary, set(frame["customer_id"].astype(int)) - young)


def test_job_expectation_on_a_missing_column_is_a_config_error(home: Path) -> None:
    _write(home, [_frame()])
    job = _job(home, expectations=[{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "agee"}}])
    _fails_before_writing(job, ConfigError, "validate", "validation.expectations[0]", "agee", "columns: customer_id")


def test_the_report_is_html_people_can_open(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = _frame()
    frame.loc[1, "monthly_charges"] = -1.0
    _write(home, [frame])
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        local.run_partition(_job(home), DAY, run_id="report")
    [html] = list((home / "reports" / "churn_test" / str(DAY)).glob("*.html"))
    assert any(f"validation report: {html}" in r.message for r in caplog.records)
    text = html.read_text()
    assert "<table>" in text and "be_between:monthly_charges" in text and "expect_column_values_to_be_between" in text
    report = json.loads(html.with_suffix(".json").read_text())
    check = next(c for c in report["checks"] if c["reason"] == "be_between:monthly_charges")
    assert check["unexpected"] == 1 and check["sample"] == ["-1.0"]


# -- model and environment problems -----------------------------------------------------
def test_missing_model_version(home: Path) -> None:
    _write(home, [_frame()])
    with pytest.raises(ModelNotFoundError, match=r"no version or alias '7'\. Known versions: 1; aliases: champion->v1"):
        local.run_partition(_job(home), DAY, model_ref="7", run_id="unknown-version")
    row = ledger.get(_engine(), "churn_test", "unknown-version")  # the refused attempt is in the ledger too
    assert row["status"] == "failed" and row["failed_stage"] == "start" and "no version or alias '7'" in row["error"]
    assert row["model_version"] is None and str(row["partition_date"]) == str(DAY)


def test_model_saved_by_another_sklearn_version_is_refused_unless_overridden(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import joblib
    import sklearn.base

    from pipeline.registry import Registry

    registry = Registry()
    mv = registry.resolve("churn", "1")
    model = joblib.load(mv.artifact)
    old = home / "old.joblib"
    with monkeypatch.context() as m:
        m.setattr(sklearn.base, "__version__", "1.0.2")  # pickled as if by scikit-learn 1.0.2
        joblib.dump(model, old)
    card = {k: v for k, v in mv.card.items() if k not in ("sha256", "version", "name", "registered_at")}
    v2 = registry.register("churn", old, card, golden=mv.path / "golden.parquet")
    _write(home, [_frame()])
    job = _job(home)
    with pytest.raises(ModelIntegrityError, match=r"(?s)saved with another scikit-learn version.*from version 1\.0\.2.*SCORING_ALLOW_SKLEARN_VERSION_MISMATCH=1"):
        local.run_partition(job, DAY, model_ref=str(v2.version), run_id="old")
    monkeypatch.setenv("SCORING_ALLOW_SKLEARN_VERSION_MISMATCH", "1")
    with caplog.at_level(logging.WARNING):
        summary = local.run_partition(job, DAY, model_ref=str(v2.version), run_id="override")
    assert summary["status"] == "success" and summary["model_version"] == v2.version
    assert any("SCORING_ALLOW_SKLEARN_VERSION_MISMATCH" in r.message for r in caplog.records)


def test_unreachable_database_names_the_host_and_writes_nothing(home: Path) -> None:
    _write(home, [_frame()])
    job = _job(home)
    local.run_partition(job, DAY, run_id="good")
    before = _predictions()
    dead = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    with pytest.raises(StoreError, match=r"cannot reach the output database postgresql 127\.0\.0\.1:1/test after 3 "
                                         r"attempts.*Nothing was written"):
        local.run_partition(job, DAY, run_id="dead", url=dead)
    assert _predictions() == before


# -- drift ------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_drift_alert_fires_for_a_shifted_partition_only(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture, shift: float) -> None:
    from tests.conftest import write_partition

    write_partition(home, n=2000, shift=shift)
    with Receiver() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_DRIFT_HOOK", hook.url)
        job = load_job(write_job(home, drift={"psi_threshold": 0.2, "alert_connection": "drift_hook"}))
        with caplog.at_level(logging.ERROR, logger="pipeline.drift"):
            summary = local.run_partition(job, DAY, run_id=f"shift-{shift}")
        alerts = [p.rows[0] for p in hook.store.posts]
    with _engine().connect() as conn:
        drift = {r.feature: (r.value, r.drifted) for r in conn.execute(sa.text(
            "SELECT feature, value, drifted FROM scoring_drift WHERE job_id = 'churn_test'"))}
    assert {"tenure_months", "contract_type", "__score__", "__prediction__"} <= set(drift)
    errors = [r.message for r in caplog.records if r.levelno == logging.ERROR and "DRIFT ALERT" in r.message]
    if shift == 0.0:
        assert summary["drifted_features"] == [] and errors == [] and alerts == []
        assert max(v for v, _ in drift.values()) < 0.1
    else:
        assert "support_tickets_90d" in summary["drifted_features"] and "__score__" in summary["drifted_features"]
        assert drift["support_tickets_90d"][0] > 0.5 and drift["support_tickets_90d"][1] in (True, 1)
        assert len(errors) == 1 and "support_tickets_90d (PSI" in errors[0]
        [alert] = alerts
        assert alert["job_id"] == "churn_test" and "support_tickets_90d" in {d["feature"] for d in alert["drifted"]}
        assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"]  # warns only


def test_drift_blocks_publishing_when_the_job_says_so(home: Path) -> None:
    from tests.conftest import write_partition

    write_partition(home, n=2000, shift=1.0)
    job = load_job(write_job(home, drift={"block": True}))
    with pytest.raises(DriftError, match="was NOT published: its inputs or scores drifted"):
        local.run_partition(job, DAY, run_id="blocked")
    assert _predictions() == {}
    row = ledger.get(_engine(), "churn_test", "blocked")
    assert row["status"] == "failed" and row["failed_stage"] == "drift_gate"
    with _engine().connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM scoring_drift WHERE drifted = :t"), {"t": True}).scalar() >= 2


def test_quarantine_is_replaced_with_the_partition(home: Path) -> None:
    frame = _frame()
    frame.loc[1, "monthly_charges"] = -1.0
    _write(home, [frame])
    job = _job(home)
    local.run_partition(job, DAY, run_id="q1")
    frame.loc[1, "monthly_charges"] = 10.0
    frame.loc[2, "monthly_charges"] = -2.0
    _write(home, [frame])
    local.run_partition(job, DAY, run_id="q2")
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT entity_key, run_id FROM scoring_quarantine")).all()
    assert [tuple(r) for r in rows] == [(str(frame.loc[2, "customer_id"]), "q2")]


# -- found in review ------------------------------------------------------------------
def test_flags_appearing_only_in_a_later_batch(home: Path) -> None:
    frame = _frame(n=600)
    frame.loc[len(frame) - 3:, "plan"] = "platinum-2027"  # only the last batch has flagged rows
    _write(home, [frame])
    doc = {"max_quarantine_share": 0.5, "unknown_categories": "flag"}
    job = load_job(write_job(home, validation=doc, source={"path": str(home / "data" / "churn"), "batch_rows": 100}))
    summary = local.run_partition(job, DAY, run_id="late-flags")
    flagged = [k for k, p in _predictions().items() if p["flags"]]
    assert len(flagged) == 3 and summary["rows_scored"] == len(frame)


def test_large_integer_keys_stay_exact_next_to_a_null_key(home: Path) -> None:
    frame = _frame(n=50)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    keys = [9_007_199_254_740_993 + i for i in range(len(frame))]
    keys[4] = None
    table = table.set_column(table.schema.get_field_index("customer_id"), "customer_id", pa.array(keys, pa.int64()))
    _write(home, [table])
    summary = local.run_partition(_job(home), DAY, run_id="bigkeys")
    assert summary["rows_quarantined"] == 1 and _quarantine()[0]["reasons"] == "not_null:customer_id"
    assert set(_predictions()) == {k for k in keys if k is not None}


def test_csv_text_like_na_is_text_only_when_the_job_says_so(home: Path) -> None:
    """pandas' markers ('NaN', 'n/a', 'NA') are missing values by default (issue 25); `null_values: ['']` makes
    them text again: an invalid number, an unknown category."""
    frame = _frame()
    frame["age"] = frame["age"].astype(object)
    frame.loc[1, "age"] = "NaN"
    frame.loc[2, "age"] = "n/a"
    frame.loc[3, "region"] = "NA"
    _write(home, [frame], "csv")
    job = load_job(write_job(home, validation={"max_quarantine_share": 0.5},
                             source={"path": str(home / "data" / "churn"), "format": "csv", "batch_rows": 700,
                                     "null_values": [""]}))
    local.run_partition(job, DAY, run_id="na")
    q = {int(r["entity_key"]): r["reasons"] for r in _quarantine()}
    ids = frame["customer_id"].astype(int)
    assert q == {ids[1]: "invalid_number:age", ids[2]: "invalid_number:age", ids[3]: "unknown_category:region"}


def test_zero_byte_csv_is_an_empty_file_not_a_broken_one(home: Path) -> None:
    first, empty = _write(home, [_frame(), _frame().head(0)], "csv")
    empty.write_bytes(b"")
    summary = local.run_partition(_job(home, "csv"), DAY, run_id="zero")
    assert summary["status"] == "success" and summary["rows_in"] == len(_frame())


def test_duplicate_column_names_fail_the_partition_clearly(home: Path) -> None:
    folder = home / "data" / "churn" / FOLDER
    folder.mkdir(parents=True)
    path = folder / "part-0000.csv"
    text = _frame().to_csv(index=False)
    header, rest = text.split("\n", 1)
    path.write_text(header + ",age\n" + "\n".join(line + ",30" for line in rest.splitlines()) + "\n")
    _fails_before_writing(_job(home, "csv"), InputError, "ingest", f"file {path} has column(s) age more than once")


def test_an_expectation_that_cannot_run_is_a_config_error(home: Path) -> None:
    _write(home, [_frame()])
    job = _job(home, expectations=[{"type": "expect_column_values_to_be_between",
                                    "kwargs": {"column": "plan", "min_value": 1}}])
    _fails_before_writing(job, ConfigError, "validate", "could not run on the partition's rows", "plan")


def test_same_reason_code_twice_gets_its_own_code(home: Path) -> None:
    frame = _frame()
    _write(home, [frame])
    job = _job(home, expectations=[
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "age", "min_value": 25}},
        {"type": "expect_column_values_to_be_between", "on_fail": "flag", "kwargs": {"column": "age", "max_value": 70}},
    ])
    local.run_partition(job, DAY, run_id="codes")
    flags = {p["flags"] for p in _predictions().values() if p["flags"]}
    assert flags == {"be_between:age#3"}  # the contract's be_between:age, then the two job checks
    assert {r["reasons"].split("; ")[0] for r in _quarantine()} == {"be_between:age#2"}


def test_row_condition_and_partition_wide_uniqueness_are_refused_at_load(home: Path) -> None:
    with pytest.raises(ConfigError, match="row_condition"):
        _job(home, expectations=[{"type": "expect_column_values_to_not_be_null",
                                  "kwargs": {"column": "age", "row_condition": 'plan=="basic"'}}])
    with pytest.raises(ConfigError, match="needs the whole partition"):
        _job(home, expectations=[{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "age"}}])
