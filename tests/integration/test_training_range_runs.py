"""Issue 25, point 8, end to end: a model registered from its training frame in one call scores a customer whose
charges are a few cents below the training minimum (flagged ``out_of_training_range:<col>``, counted in the report),
and a contract type it never saw when its encoder ignores unknowns (flagged ``unknown_category:<col>``); a bound
the user declares still quarantines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pipeline import local, onboard, settings
from pipeline.registry import Registry
from pipeline.store import engines
from tests.conftest import DAY
from tests.integration.test_byo_models import (
    KEY,
    byo_job,
    expected_scores,
    pipeline_logistic,
    training_frame,
    write_export,
)


def _registered(name: str, overrides: dict[str, Any] | None = None) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    model, target, frame = pipeline_logistic(training_frame())
    mv = onboard.register_model(Registry(), name, model, frame.drop(columns=["Spend", "Tier"]), target=target,
                                key=KEY, alias="champion", overrides=overrides)
    return model, frame, mv.card


def _next_days_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the next days: the training rows, three of them just outside what training saw."""
    rows = frame.dropna(subset=["TotalCharges"]).head(300).copy().reset_index(drop=True)
    low = frame["TotalCharges"].min()
    rows.loc[0, "TotalCharges"] = round(low - 0.03, 2)  # a few cents below the training minimum
    rows.loc[1, "Tenure Months"] = frame["Tenure Months"].max() + 1
    rows.loc[2, "Contract"] = "Three year"  # never seen: the one-hot encoder ignores it
    return rows


def _stored(job: Any) -> pd.DataFrame:
    engine = engines.for_connection("scoring_db")
    quoted = engine.dialect.identifier_preparer.quote(KEY)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {quoted} AS k, score, flags FROM {job.output.table} "
                                    "WHERE partition_date = :d"), {"d": DAY}).all()
    return pd.DataFrame(rows, columns=["k", "score", "flags"]).set_index("k")


def test_outside_the_training_range_is_scored_and_flagged(home: Path) -> None:
    model, frame, card = _registered("observed")
    inputs = {c["name"]: c for c in card["inputs"]}
    assert "min" not in inputs["TotalCharges"] and inputs["TotalCharges"]["observed_min"] == frame["TotalCharges"].min()
    assert inputs["Contract"]["handles_unknown"] is True and card["entity_key_type"] == "string"
    rows = _next_days_rows(frame)
    write_export(home, rows)
    job = byo_job(home, "observed")
    summary = local.run_partition(job, DAY, run_id="observed")
    assert summary["status"] == "success" and summary["rows_scored"] == 300 and summary["rows_quarantined"] == 0
    table = _stored(job).loc[rows[KEY]]
    _, score = expected_scores(model, rows)
    assert np.max(np.abs(table["score"].to_numpy() - score)) <= 1e-9, "scored as the estimator scores them"
    flags = table["flags"].dropna().to_dict()
    assert flags == {rows[KEY][0]: "out_of_training_range:TotalCharges",
                     rows[KEY][1]: "out_of_training_range:Tenure Months",
                     rows[KEY][2]: "unknown_category:Contract"}
    report = json.loads((settings.reports_dir() / job.job_id / str(DAY) / "observed.json").read_text())
    assert report["rows_flagged"] == 3 and report["unexpected_counts"] == {
        "out_of_training_range:TotalCharges": 1, "out_of_training_range:Tenure Months": 1,
        "unknown_category:Contract": 1}
    assert "id='flagged'" in (settings.reports_dir() / job.job_id / str(DAY) / "observed.html").read_text()


def test_a_declared_bound_quarantines(home: Path) -> None:
    low = training_frame()["TotalCharges"].min()
    model, frame, card = _registered("declared", {"inputs": {"TotalCharges": {"min": float(low)}}})
    assert next(c for c in card["inputs"] if c["name"] == "TotalCharges")["min"] == low
    rows = _next_days_rows(frame)
    write_export(home, rows)
    job = byo_job(home, "declared")
    summary = local.run_partition(job, DAY, run_id="declared")
    assert summary["status"] == "success" and summary["rows_scored"] == 299 and summary["rows_quarantined"] == 1
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        quarantined = conn.execute(sa.text("SELECT entity_key, reasons FROM scoring_quarantine "
                                           "WHERE job_id = 'byo_declared'")).all()
    assert [(str(k), r) for k, r in quarantined] == [(rows[KEY][0], "be_between:TotalCharges")]
