"""Realised performance (issue 14, point 3): outcomes joined to earlier predictions, metrics per model
version and partition equal to scikit-learn's on the same rows, alerts below a floor, idempotent."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn import metrics as m

from pipeline import local, outcomes
from pipeline.config import load_job
from pipeline.demo import data as demo_data
from pipeline.store import engines
from tests.conftest import DAY, ROOT, with_challenger, write_job, write_partition

HORIZON = 30


def _job(home: Path, **outcome):
    cfg = {"path": str(home / "outcomes"), "label": "churned", "horizon_days": HORIZON, **outcome}
    return load_job(write_job(home, model={"name": "churn", "challengers": ["challenger"]}, outcomes=cfg))


def _write_outcomes(home: Path, share: float = 0.9) -> pd.DataFrame:
    """Labels for most of the partition's customers, dated DAY + HORIZON (as the demo's generator labels them)."""
    frame = pd.concat([pd.read_parquet(p) for p in sorted((home / "data" / "churn" / f"date={DAY}").glob("*.parquet"))])
    frame = frame.assign(churned=demo_data.churn_label(frame.reset_index(drop=True), seed=3))
    labelled = frame.sample(frac=share, random_state=1)[["customer_id", "churned"]]
    folder = home / "outcomes" / f"date={DAY + dt.timedelta(days=HORIZON)}"
    folder.mkdir(parents=True, exist_ok=True)
    labelled.to_parquet(folder / "part-0000.parquet", index=False)
    return labelled


def _table(sql: str, **params) -> pd.DataFrame:
    with engines.for_connection("scoring_db").connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_metrics_equal_scikit_learns_on_the_same_rows_and_a_floor_alerts(
        any_db: str, home: Path, challenger_models: Path, caplog: pytest.LogCaptureFixture) -> None:
    challenger = with_challenger(home, challenger_models)
    write_partition(home, n=1500)
    job = _job(home, floors={"roc_auc": 0.99, "accuracy": 0.5}, ceilings={"log_loss": 5.0})
    summary = local.run_partition(job, DAY, run_id="r1")
    labels = _write_outcomes(home)
    with caplog.at_level(logging.ERROR, logger="pipeline.outcomes"):
        rows = outcomes.evaluate(job, DAY)
    got = {(r["role"], r["model_version"], r["metric"]): r for r in rows}
    for role, table, version in (("champion", "churn_test_predictions", 1),
                                 ("challenger", "churn_test_predictions_shadow", challenger)):
        joined = _table(f"SELECT customer_id, prediction, score FROM {table} WHERE partition_date = :d",
                        d=DAY).merge(labels, on="customer_id")
        y, p = joined["churned"].astype(int).to_numpy(), joined["score"].to_numpy()
        expected = {"roc_auc": m.roc_auc_score(y, p), "log_loss": m.log_loss(y, p),
                    "accuracy": m.accuracy_score(y.astype(str), joined["prediction"]),
                    "brier": m.brier_score_loss(y, p), "calibration_gap": p.mean() - y.mean()}
        for metric, value in expected.items():
            row = got[(role, version, metric)]
            assert row["value"] == pytest.approx(value, rel=1e-12), (role, metric)
            assert row["rows_labelled"] == len(joined) and row["rows_predicted"] == summary["rows_scored"]
        assert got[(role, version, "roc_auc")]["breached"] and not got[(role, version, "log_loss")]["breached"]
        assert not got[(role, version, "accuracy")]["breached"]
    assert "PERFORMANCE ALERT job churn_test partition 2026-11-20" in caplog.text and "below its floor 0.99" in caplog.text
    outcomes.evaluate(job, DAY)  # again: replaced, not added
    stored = _table("SELECT * FROM scoring_performance")
    assert len(stored) == len(rows) == 10 and not stored.duplicated(["model_version", "role", "metric"]).any()
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "outcomes", "churn_test", "--date", str(DAY)],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "roc_auc" in out.stdout and "BREACHED" in out.stdout, out.stdout + out.stderr
    # then the challenger's verdict against the champion, in words (pipeline.verdicts): not a failure of its own
    assert f"churn_test {DAY} shadow challenger: v{challenger} " in out.stdout, out.stdout


def test_outcomes_not_there_yet_or_ambiguous_say_so(home: Path) -> None:
    write_partition(home, n=300)
    job = _job(home)
    local.run_partition(job, DAY, run_id="r1")
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "outcomes", "churn_test", "--date", str(DAY)],
                         cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no outcome files for 2026-12-20 (judging partition 2026-11-20)" in out.stderr
    assert "Traceback" not in out.stderr
    labels = _write_outcomes(home)
    twice = pd.concat([labels, labels.head(1).assign(churned=1 - labels.head(1)["churned"])])
    twice.to_parquet(home / "outcomes" / f"date={DAY + dt.timedelta(days=HORIZON)}" / "part-0000.parquet")
    with pytest.raises(outcomes.OutcomesError, match="has two different labels"):
        outcomes.evaluate(job, DAY)


def test_regressor_and_multiclass_metrics_are_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    truth, value = rng.normal(size=50), rng.normal(size=50)
    got = outcomes.metrics("regression", None, pd.Series(truth), pd.Series(value.astype(str)), pd.Series(value))
    assert got == pytest.approx({"mae": m.mean_absolute_error(truth, value),
                                 "rmse": np.sqrt(m.mean_squared_error(truth, value))})
    labels = pd.Series(rng.choice(["a", "b", "c"], 40))
    predicted = pd.Series(rng.choice(["a", "b", "c"], 40))
    assert outcomes.metrics("multiclass_classification", None, labels, predicted, pd.Series(np.ones(40))) == {
        "accuracy": m.accuracy_score(labels, predicted)}


def test_outcomes_from_a_table_give_the_same_metrics_as_from_files(home: Path) -> None:
    write_partition(home, n=600)
    job = load_job(write_job(home, outcomes={"path": str(home / "outcomes"), "label": "churned",
                                             "horizon_days": HORIZON}))
    local.run_partition(job, DAY, run_id="r1")
    labels = _write_outcomes(home)
    from_files = {(r["role"], r["metric"]): r["value"] for r in outcomes.evaluate(job, DAY)}
    engine = engines.for_connection("scoring_db")
    labels.assign(outcome_date=DAY + dt.timedelta(days=HORIZON)).rename(columns={"churned": "label"}).to_sql(
        "churn_outcomes", engine, index=False)
    job = load_job(write_job(home, outcomes={"table": "churn_outcomes", "label": "label", "horizon_days": HORIZON}))
    from_table = {(r["role"], r["metric"]): r["value"] for r in outcomes.evaluate(job, DAY)}
    assert from_table == pytest.approx(from_files) and ("champion", "roc_auc") in from_table
