"""Issue 25, point 8: inferred bounds observe, declared bounds enforce; the estimator's own unknown categories;
and the text no database stores (bytes that were not UTF-8, NUL characters) is quarantined, named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import card as cards
from pipeline import steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.kernels.columns import BADTEXT_PREFIX
from pipeline.kernels.conform import contract_schema
from pipeline.kernels.validate import (
    RowValidator,
    candidates,
    contract_expectations,
    text_expectations,
    training_range,
)
from pipeline.registry import ModelVersion
from pipeline.staging import RunSpec, StagedWriter, read_batches
from pipeline.validate import validate_file

DAY = "2026-11-20"
# as registration now infers them from a telecom churn frame: observed, not declared
OBSERVED = [{"name": "MonthlyCharges", "type": "float", "nullable": False, "observed_min": 18.25,
             "observed_max": 118.75},
            {"name": "TotalCharges", "type": "float", "nullable": True, "observed_min": 18.8, "observed_max": 8684.8},
            {"name": "Contract", "type": "category", "nullable": False,
             "categories": ["Month-to-month", "One year", "Two year"]}]


@pytest.fixture(autouse=True)
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    return tmp_path / "reports"


def _ctx(tmp_path: Path, inputs: list[dict[str, Any]], table: pa.Table, **validation: Any) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "customerID",
        "source": {"path": str(tmp_path / "data"), "batch_rows": 2},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "validation": {"max_quarantine_share": 1.0, **validation},
    }, Path("t.yaml"))
    stage = tmp_path / "stage"
    stage.mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=False, staging_dir=str(stage))
    card = {"name": "m", "version": 1, "inputs": inputs}
    ctx = RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", card), engine=None)
    with StagedWriter(ctx.path(steps.INGESTED), table.schema) as writer:
        writer.write(table)
    spec.write_json(steps.INGEST_STATE, {"files": [], "duplicate_keys": [], "ignored_columns": []})
    return ctx


def _rows(path: Path) -> list[dict[str, Any]]:
    return [r for b in read_batches(path, 100) for r in b.to_pylist()]


def _charges(inputs: list[dict[str, Any]], rows: list[tuple[str, float, float | None, str]]) -> pa.Table:
    schema = contract_schema(inputs, "customerID", pa.string())
    data = {"customerID": [r[0] for r in rows], "MonthlyCharges": [r[1] for r in rows],
            "TotalCharges": [r[2] for r in rows], "Contract": [r[3] for r in rows]}
    for name in schema.names:
        data.setdefault(name, [None] * len(rows))
    return pa.table(data, schema)


ROWS = [("0001-A", 50.0, 500.0, "One year"),
        ("0002-B", 18.22, 18.79, "Month-to-month"),  # a few cents below both training minimums
        ("0003-C", 119.0, 9000.0, "Two year"),  # above both maximums
        ("0004-D", 18.25, None, "Month-to-month")]  # exactly the minimum


def test_observed_bounds_flag_and_score(tmp_path: Path, reports: Path) -> None:
    ctx = _ctx(tmp_path, OBSERVED, _charges(OBSERVED, ROWS))
    assert validate_file(ctx) == {"rows_valid": 4, "rows_quarantined": 0}
    flags = {r["customerID"]: r[steps.FLAGS] for r in _rows(ctx.path(steps.VALID))}
    assert flags == {"0001-A": None, "0004-D": None,
                     "0002-B": "out_of_training_range:MonthlyCharges; out_of_training_range:TotalCharges",
                     "0003-C": "out_of_training_range:MonthlyCharges; out_of_training_range:TotalCharges"}
    report = json.loads((reports / "t" / DAY / "r1.json").read_text())
    assert report["rows_flagged"] == 2 and report["rows_quarantined"] == 0
    assert report["unexpected_counts"] == {"out_of_training_range:MonthlyCharges": 2,
                                           "out_of_training_range:TotalCharges": 2}
    check = next(c for c in report["checks"] if c["reason"] == "out_of_training_range:MonthlyCharges")
    assert check["on_fail"] == "flag" and sorted(check["sample"]) == ["119.0", "18.22"]
    html = (reports / "t" / DAY / "r1.html").read_text()
    assert "id='flagged'" in html and "out_of_training_range:MonthlyCharges" in html


def test_declared_bounds_still_quarantine(tmp_path: Path) -> None:
    declared = [{**OBSERVED[0], "min": 18.25}, OBSERVED[1], OBSERVED[2]]
    ctx = _ctx(tmp_path, declared, _charges(declared, ROWS))
    assert validate_file(ctx) == {"rows_valid": 3, "rows_quarantined": 1}
    quarantined = {r["customerID"]: r["reasons"] for r in _rows(ctx.path(steps.QUARANTINE))}
    # the declared min covers the low side (no flag there); the total charges are flagged beside it
    assert quarantined == {"0002-B": "be_between:MonthlyCharges; out_of_training_range:TotalCharges"}


def test_an_old_card_means_what_it_meant(tmp_path: Path) -> None:
    """A card written before observed bounds (hand-written, or registered then) declares its min/max."""
    old = [{"name": "MonthlyCharges", "type": "float", "nullable": False, "min": 18.25, "max": 118.75},
           {"name": "TotalCharges", "type": "float", "nullable": True}, OBSERVED[2]]
    cards.parse({"inputs": old})
    ctx = _ctx(tmp_path, old, _charges(old, ROWS))
    assert validate_file(ctx) == {"rows_valid": 2, "rows_quarantined": 2}
    assert {r["customerID"]: r["reasons"] for r in _rows(ctx.path(steps.QUARANTINE))} == {
        "0002-B": "be_between:MonthlyCharges", "0003-C": "be_between:MonthlyCharges"}


def test_training_range_drops_the_sides_a_declared_bound_covers() -> None:
    column = {"name": "x", "type": "float", "observed_min": 3.0, "observed_max": 100.0}
    assert training_range(column) == (3.0, 100.0)
    assert training_range({**column, "min": 0.0}) == (3.0, 100.0)  # declared wider: the flag still says more
    assert training_range({**column, "min": 5.0}) == (None, 100.0)
    assert training_range({**column, "min": 3.0, "max": 90.0}) is None
    assert training_range({"name": "x", "type": "float", "min": 1.0}) is None
    reasons = [(e["reason"], e["on_fail"]) for e in contract_expectations([{**column, "max": 120.0}], "k")]
    assert reasons == [("not_null:k", "quarantine"), ("be_between:x", "quarantine"),
                       ("out_of_training_range:x", "flag"), ("invalid_number:x", "quarantine")]


def test_unknown_categories_the_estimator_handles_are_flagged(tmp_path: Path) -> None:
    handled = [OBSERVED[0], OBSERVED[1], {**OBSERVED[2], "handles_unknown": True}]
    rows = [("1", 50.0, 60.0, "Monthly"), ("2", 50.0, 60.0, "One year")]
    ctx = _ctx(tmp_path, handled, _charges(handled, rows))
    assert validate_file(ctx) == {"rows_valid": 2, "rows_quarantined": 0}
    flags = {r["customerID"]: r[steps.FLAGS] for r in _rows(ctx.path(steps.VALID))}
    assert flags == {"1": "unknown_category:Contract", "2": None}
    # without the card's mark an unknown category is quarantined, as before
    assert [e["on_fail"] for e in contract_expectations(OBSERVED, "k") if e["reason"].startswith("unknown")] == [
        "quarantine"]


# -- text no database stores ---------------------------------------------------------------
def test_nul_and_invalid_utf8_quarantine_every_text_column(tmp_path: Path) -> None:
    inputs = [OBSERVED[0], {**OBSERVED[2], "handles_unknown": True}]
    schema = contract_schema(inputs, "customerID", pa.string())
    data: dict[str, Any] = {n: [None] * 5 for n in schema.names}
    data.update({"customerID": ["1", "2\x00", "3", "4", "5"], "MonthlyCharges": [50.0] * 5,
                 "Contract": ["One year", "One year", "One\x00year", "Two \ufffd", "Two year"],
                 "note": ["fine", None, "ok", "x", "a\x00b"]})
    table = pa.table({n: data[n] for n in schema.names}, schema).append_column("note", pa.array(data["note"]))
    table = table.append_column(BADTEXT_PREFIX + "Contract", pa.array([None, None, None, b"Two \xff", None],
                                                                      pa.binary()))
    ctx = _ctx(tmp_path, inputs, table)
    assert validate_file(ctx) == {"rows_valid": 1, "rows_quarantined": 4}
    quarantined = {r["customerID"]: r["reasons"] for r in _rows(ctx.path(steps.QUARANTINE))}
    assert quarantined == {"2\x00": "nul_in_text:customerID",
                           "3": "nul_in_text:Contract; unknown_category:Contract",
                           "4": "invalid_utf8:Contract; unknown_category:Contract",
                           "5": "nul_in_text:note"}


def test_text_checks_are_screened_by_arrow_as_gx_decides() -> None:
    schema = pa.schema([("k", pa.string()), ("n", pa.int64()), ("s", pa.large_string()),
                        (BADTEXT_PREFIX + "s", pa.binary()), ("__raw__n", pa.string())])
    checks = text_expectations(schema)
    assert [c["reason"] for c in checks] == ["nul_in_text:k", "invalid_utf8:s", "nul_in_text:s"]
    batch = pa.table({"k": ["a", "\x00", None, "b\x00c", ""], "n": [1, 2, 3, 4, 5],
                      "s": pa.array(["x", "y", "\x00", None, "\ufffd"], pa.large_string()),
                      BADTEXT_PREFIX + "s": pa.array([None, None, None, None, b"\xfe"], pa.binary()),
                      "__raw__n": [None] * 5}, schema)
    masks = [candidates(c, batch) for c in checks]
    assert [m.tolist() for m in masks] == [[False, True, False, True, False], [False, False, False, False, True],
                                           [False, False, True, False, False]]
    validator = RowValidator(checks, "text")
    screened = validator.check(batch, masks)
    alone = RowValidator(checks, "text_alone").check(batch, [None] * len(checks))
    assert screened.bad.tolist() == alone.bad.tolist() == [1, 2, 3, 4]
    assert screened.reasons == alone.reasons == ["nul_in_text:k", "nul_in_text:s", "nul_in_text:k",
                                                 "invalid_utf8:s"]


# -- registration ---------------------------------------------------------------------------
def _frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"id": np.arange(n), "code": [f"{i:05d}" for i in range(n)],
                         "MonthlyCharges": rng.uniform(18.25, 118.75, n).round(2),
                         "Contract": rng.choice(["Month-to-month", "One year", "None"], n),
                         "y": rng.integers(0, 2, n)})


def _ohe(handle_unknown: str) -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    encoder = make_column_transformer((OneHotEncoder(handle_unknown=handle_unknown), ["Contract"]),
                                      remainder="passthrough")
    return make_pipeline(encoder, LogisticRegression())


def _ordinal() -> Any:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    encoder = make_pipeline(SimpleImputer(strategy="most_frequent"),
                            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1))
    return make_pipeline(make_column_transformer((encoder, ["Contract"]), remainder="passthrough"),
                         HistGradientBoostingClassifier(max_iter=10))


@pytest.mark.parametrize(("build", "handled"), [
    (lambda: _ohe("ignore"), True), (lambda: _ohe("infrequent_if_exist"), True), (lambda: _ohe("error"), False),
    (_ordinal, True)], ids=["ohe-ignore", "ohe-infrequent", "ohe-error", "ordinal-encoded"])
def test_registration_records_what_the_frame_shows(build: Any, handled: bool) -> None:
    from pipeline.onboard import infer_card

    frame = _frame()
    model = build().fit(frame[["MonthlyCharges", "Contract"]], frame["y"])
    card, _ = infer_card(model, frame[["id", "MonthlyCharges", "Contract", "y"]], target="y", key="id")
    inputs = {c["name"]: c for c in card["inputs"]}
    assert card["entity_key_type"] == "integer"
    charges = inputs["MonthlyCharges"]
    assert "min" not in charges and "max" not in charges
    assert (charges["observed_min"], charges["observed_max"]) == (frame["MonthlyCharges"].min(),
                                                                  frame["MonthlyCharges"].max())
    assert inputs["Contract"].get("handles_unknown", False) is handled
    # 'None' is a real category of the frame: the markers the column honours leave it out
    assert "None" not in inputs["Contract"]["missing_values"] and "NA" in inputs["Contract"]["missing_values"]
    cards.parse(card)


def test_native_categories_and_declared_overrides() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipeline.onboard import infer_card

    frame = _frame().assign(Contract=lambda f: f["Contract"].astype("category"))
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=10)
    model.fit(frame[["MonthlyCharges", "Contract"]], frame["y"])
    overrides = {"inputs": {"MonthlyCharges": {"min": 0, "max": 500}}}
    card, _ = infer_card(model, frame[["code", "MonthlyCharges", "Contract", "y"]], target="y", key="code",
                         overrides=overrides)
    inputs = {c["name"]: c for c in card["inputs"]}
    assert card["entity_key_type"] == "string"  # 00123 stays 00123
    assert inputs["Contract"]["handles_unknown"] is True
    assert (inputs["MonthlyCharges"]["min"], inputs["MonthlyCharges"]["max"]) == (0, 500)  # declared: enforced
    assert "observed_min" in inputs["MonthlyCharges"]
    no = {"inputs": {"Contract": {"handles_unknown": False}}}
    card, _ = infer_card(model, frame[["MonthlyCharges", "Contract", "y"]], target="y", overrides=no)
    assert "entity_key_type" not in card
    assert not next(c for c in card["inputs"] if c["name"] == "Contract")["handles_unknown"]


def test_card_refuses_observed_bounds_that_do_not_fit() -> None:
    from pipeline.errors import ModelIntegrityError

    with pytest.raises(ModelIntegrityError, match="observed_min 5.0 is above observed_max 1.0"):
        cards.parse({"inputs": [{"name": "x", "type": "float", "observed_min": 5, "observed_max": 1}]})
    with pytest.raises(ModelIntegrityError, match="handles_unknown is for category columns"):
        cards.parse({"inputs": [{"name": "x", "type": "float", "handles_unknown": True}]})
    with pytest.raises(ModelIntegrityError, match="entity_key_type"):
        cards.parse({"entity_key_type": "uuid", "inputs": [{"name": "x", "type": "float"}]})


def _fit_categories(model: Any, native: bool) -> tuple[Any, pd.DataFrame]:
    frame = _frame().drop(columns=["code"])
    if native:
        frame["Contract"] = frame["Contract"].astype("category")
    return model.fit(frame[["MonthlyCharges", "Contract"]], frame["y"]), frame


@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "target_encoder", "dropped", "function_transformer"])
def test_the_table_of_estimators(kind: str) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, TargetEncoder

    from pipeline.onboard import infer_card

    if kind == "lightgbm":
        model, native = pytest.importorskip("lightgbm").LGBMClassifier(n_estimators=5, verbose=-1), True
    elif kind == "xgboost":
        model, native = pytest.importorskip("xgboost").XGBClassifier(n_estimators=5, enable_categorical=True), True
    elif kind == "target_encoder":
        model = make_pipeline(make_column_transformer((TargetEncoder(), ["Contract"]), remainder="passthrough"),
                              LogisticRegression())
        native = False
    elif kind == "dropped":  # the model never reads the column: any value of it scores
        model = make_pipeline(make_column_transformer(("passthrough", ["MonthlyCharges"]), remainder="drop"),
                              LogisticRegression())
        native = False
    else:  # text handed on by a function: not known to handle an unknown value
        codes = {"Month-to-month": 0.0, "One year": 1.0, "None": 2.0}
        model = make_pipeline(make_column_transformer(
            (FunctionTransformer(lambda x: x.replace(codes).astype(float)), ["Contract"]), remainder="passthrough"),
            LogisticRegression())
        native = False
    model, frame = _fit_categories(model, native)
    card, _ = infer_card(model, frame, target="y", key="id")
    contract = next(c for c in card["inputs"] if c["name"] == "Contract")
    assert contract.get("handles_unknown", False) is (kind != "function_transformer")


def test_an_override_file_that_dropped_inferred_bounds_still_does() -> None:
    """``min: null`` removed the inferred (then enforced) bound; it removes the observed one now."""
    from pipeline.onboard import infer_card

    frame = _frame()
    model = _ohe("ignore").fit(frame[["MonthlyCharges", "Contract"]], frame["y"])
    card, _ = infer_card(model, frame[["MonthlyCharges", "Contract", "y"]], target="y",
                         overrides={"inputs": {"MonthlyCharges": {"min": None}}})
    charges = next(c for c in card["inputs"] if c["name"] == "MonthlyCharges")
    assert "observed_min" not in charges and "min" not in charges and charges["observed_max"] > 100


def test_shard_reports_merge_with_checks_only_some_shards_have(tmp_path: Path, reports: Path) -> None:
    """A shard whose files held bad bytes has an invalid_utf8 check the others lack: the merge keeps it."""
    from pipeline.validate import _merged_shards, report_stem

    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=False, staging_dir=str(tmp_path), shards=2)
    flag = {"reason": "out_of_training_range:x", "on_fail": "flag", "expectation": "e", "kwargs": {}}
    bad = {"reason": "invalid_utf8:s", "on_fail": "quarantine", "expectation": "e", "kwargs": {}}
    parts = [{"checks": [{**flag, "unexpected": 1, "sample": ["-1"]}], "unexpected_counts": {"out_of_training_range:x": 1},
              "rows_in": 5, "rows_flagged": 1},
             {"checks": [{**flag, "unexpected": 2, "sample": ["9"]}, {**bad, "unexpected": 1, "sample": ["\ufffd"]}],
              "unexpected_counts": {"out_of_training_range:x": 2, "invalid_utf8:s": 1}, "rows_in": 5,
              "rows_flagged": 2, "rows_quarantined": 1}]
    for i, part in enumerate(parts):
        stem = report_stem(spec.for_shard(i))
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_name(stem.name + ".json").write_text(json.dumps(part))
    merged = _merged_shards(spec)
    assert {c["reason"]: c["unexpected"] for c in merged["checks"]} == {"out_of_training_range:x": 3,
                                                                        "invalid_utf8:s": 1}
    assert merged["rows_flagged"] == 3 and merged["unexpected_counts"]["invalid_utf8:s"] == 1


def test_a_hand_written_claim_of_handling_unknowns_is_checked(tmp_path: Path) -> None:
    """A card saying handles_unknown for an estimator that raises on an unknown value would fail whole partitions
    at scoring: registration refuses it, naming the column."""
    import joblib

    from pipeline.errors import ModelIntegrityError
    from pipeline.modelcheck import check_registration

    frame = _frame()
    contract = [{"name": "MonthlyCharges", "type": "float"},
                {"name": "Contract", "type": "category", "categories": ["Month-to-month", "None", "One year"],
                 "handles_unknown": True}]
    for handle_unknown, refused in (("error", True), ("ignore", False)):
        artifact = tmp_path / f"{handle_unknown}.joblib"
        joblib.dump(_ohe(handle_unknown).fit(frame[["MonthlyCharges", "Contract"]], frame["y"]), artifact)
        card = {"inputs": contract, "task": "binary_classification", "classes": [0, 1], "positive_class": 1}
        if refused:
            with pytest.raises(ModelIntegrityError, match="inputs.Contract.handles_unknown is true, but"):
                check_registration(card, artifact, None)
        else:
            check_registration(card, artifact, None)
