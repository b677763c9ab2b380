"""Champion/challenger shadow scoring (issue 14, point 2): challengers score the same valid rows beside
the champion, into a shadow table only, with a daily comparison; a failing challenger never fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy.stats import spearmanr

from pipeline import local
from pipeline.config import load_job
from pipeline.errors import ConfigError
from pipeline.ledger import as_json
from pipeline.store import engines
from tests.conftest import DAY, ROOT, with_challenger, write_job, write_partition

TOP_N = 50
STAGES = {"ingest", "validate", "preprocess", "score", "drift_gate", "persist", "finalize"}  # one per step of the plan


def _shadow_in_the_ledger(row: dict, sharded: bool = False) -> None:
    """The challengers' part of the score step has its seconds in part_seconds (issue 26), inside the score
    step's entry of stage_seconds, whose keys stay one per step of the plan."""
    parts, stages = as_json(row["part_seconds"]), as_json(row["stage_seconds"])
    assert set(parts) == {"shadow"} and isinstance(parts["shadow"], float) and parts["shadow"] > 0, parts
    assert set(stages) == STAGES | ({"plan", "combine"} if sharded else set()), stages
    assert parts["shadow"] <= stages["score"]


def _job(home: Path, challengers: list, **source):
    src = {"path": str(home / "data" / "churn"), "batch_rows": 300, **source}
    return load_job(write_job(home, source=src, model={"name": "churn", "challengers": challengers,
                                                       "compare_top_n": TOP_N}))


def _frame(sql: str, **params) -> pd.DataFrame:
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


def _expected(champion: pd.DataFrame, challenger: pd.DataFrame) -> dict:
    """The comparison computed here, from the two tables, independently of pipeline.shadow."""
    both = champion.merge(challenger, on="customer_id", suffixes=("_1", "_2"))
    diff = (both["score_1"] - both["score_2"]).abs()
    top = min(TOP_N, len(both))

    def best(col: str) -> set:
        return set(both.sort_values([col, "customer_id"], ascending=[False, True]).head(top)["customer_id"])

    edges = np.unique(np.quantile(both["score_1"], np.linspace(0.1, 0.9, 9)))
    shares = [np.maximum(np.bincount(np.searchsorted(edges, both[c], side="right"), minlength=len(edges) + 1)
                         / len(both), 1e-6) for c in ("score_1", "score_2")]
    return {"rows_compared": len(both), "agreement": float((both["prediction_1"] == both["prediction_2"]).mean()),
            "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
            "spearman": float(spearmanr(both["score_1"], both["score_2"]).statistic),
            "top_n": top, "top_n_overlap": len(best("score_1") & best("score_2")) / top,
            "psi": float(np.sum((shares[1] - shares[0]) * np.log(shares[1] / shares[0])))}


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_challenger_rows_land_only_in_the_shadow_table_and_the_comparison_is_right(
        any_db: str, home: Path, challenger_models: Path) -> None:
    version = with_challenger(home, challenger_models)
    write_partition(home, n=1500)
    job = _job(home, ["challenger"])
    summary = local.run_partition(job, DAY, run_id="first")
    assert summary["status"] == "success"
    _shadow_in_the_ledger(summary)
    local.run_partition(job, DAY, run_id="again")  # a re-run replaces the shadow rows and the comparison
    champion = _frame("SELECT customer_id, prediction, score, model_version FROM churn_test_predictions")
    shadow = _frame("SELECT customer_id, prediction, score, model_version, run_id FROM churn_test_predictions_shadow")
    assert set(champion["model_version"]) == {1} and set(shadow["model_version"]) == {version}
    assert len(shadow) == len(champion) == summary["rows_scored"] and set(shadow["run_id"]) == {"again"}
    assert not shadow["customer_id"].duplicated().any()
    rows = _frame("SELECT * FROM scoring_shadow_comparisons")
    assert len(rows) == 1
    got = rows.iloc[0]
    assert got["status"] == "compared" and got["challenger_ref"] == "challenger" and got["run_id"] == "again"
    assert got["champion_version"] == 1 and got["challenger_version"] == version
    for name, value in _expected(champion, shadow).items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert 0 < got["agreement"] <= 1 and got["mean_abs_diff"] > 0, "two different models"
    view = _frame("SELECT * FROM churn_test_predictions_compare")
    assert len(view) == 1 and "error" not in view.columns
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "compare", "churn", "--date", str(DAY),
                          "--job", "churn_test"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"challenger challenger (v{version}) vs champion v1" in out.stdout
    assert f"agreement {got['agreement']:.4f}" in out.stdout and f"top-{TOP_N} overlap" in out.stdout


def test_a_tampered_or_unknown_challenger_is_recorded_failed_while_the_champion_publishes(
        home: Path, challenger_models: Path) -> None:
    version = with_challenger(home, challenger_models)
    artifact = home / "models" / "churn" / f"v{version}" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    write_partition(home, n=800)
    job = _job(home, ["challenger", "nope"])
    summary = local.run_partition(job, DAY, run_id="r1")
    assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 700
    _shadow_in_the_ledger(summary)  # the part ran and recorded its failed challengers: timed like any
    rows = _frame("SELECT challenger_ref, status, error, challenger_version FROM scoring_shadow_comparisons "
                  "ORDER BY challenger_ref").to_dict("records")
    assert [(r["challenger_ref"], r["status"]) for r in rows] == [("challenger", "failed"), ("nope", "failed")]
    assert "sha256" in rows[0]["error"] and rows[0]["challenger_version"] == version
    assert "nope" in rows[1]["error"] and pd.isna(rows[1]["challenger_version"])
    assert _frame("SELECT count(*) AS n FROM churn_test_predictions_shadow")["n"][0] == 0
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "compare", "churn", "--date", str(DAY),
                          "--job", "churn_test"], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stdout.count("FAILED") == 2 and "Traceback" not in out.stderr


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_sharded_run_compares_exactly_as_an_unsharded_one(any_db: str, home: Path, challenger_models: Path) -> None:
    with_challenger(home, challenger_models)
    write_partition(home, n=1500, files=3)
    metrics = ["rows_compared", "agreement", "mean_abs_diff", "max_abs_diff", "spearman", "top_n_overlap", "psi"]
    _shadow_in_the_ledger(local.run_partition(_job(home, ["challenger"]), DAY, run_id="whole"))
    whole = _frame("SELECT * FROM scoring_shadow_comparisons")[metrics].iloc[0]
    whole_rows = _frame("SELECT customer_id, score FROM churn_test_predictions_shadow ORDER BY customer_id")
    _shadow_in_the_ledger(local.run_partition(_job(home, ["challenger"], shards=3), DAY, run_id="sharded"),
                          sharded=True)  # a shard's label without the shard: the slowest shard's
    sharded = _frame("SELECT * FROM scoring_shadow_comparisons")[metrics].iloc[0]
    assert sharded.to_dict() == pytest.approx(whole.to_dict(), rel=1e-12)
    pd.testing.assert_frame_equal(
        _frame("SELECT customer_id, score FROM churn_test_predictions_shadow ORDER BY customer_id"), whole_rows)


def test_challengers_need_an_output_table_and_names_that_fit(home: Path) -> None:
    with pytest.raises(ConfigError, match="model.challengers need output.table"):
        load_job(write_job(home, model={"name": "churn", "challengers": ["2"]},
                           output={"mode": "push", "push": {"sink": {"kind": "files", "uri": "out"}}}))
    with pytest.raises(ConfigError, match="_compare"):
        load_job(write_job(home, model={"name": "churn", "challengers": [2]},
                           output={"table": "t" * 56, "connection": "scoring_db"}))
    job = load_job(write_job(home, model={"name": "churn", "challengers": [2, "challenger"]}))
    assert job.model.challengers == ["2", "challenger"]
