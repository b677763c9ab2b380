"""The score stage: the verified model over ``features`` -> ``scored`` (key, prediction, score, flags)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

from pipeline import steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.errors import ModelIntegrityError
from pipeline.registry import Registry, sha256_of
from pipeline.score import score_file, scored_schema
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_schema

TRAIN = pd.DataFrame({"x1": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
                      "x2": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]})
LABELS = [0, 0, 0, 1, 0, 1, 1, 1]
CARD = {"inputs": [{"name": "x1", "type": "float"}, {"name": "x2", "type": "float"}],
        "preprocess": {"name": "identity", "version": 1}}
# id, x1, x2, __flags (as preprocess writes features with the identity transform)
FEATURES = [(10, 0.5, 1.0, None), (11, 6.5, 0.0, "unknown_category:plan"), (12, 3.0, 1.0, None),
            (13, 4.5, 0.0, None), (14, 9.0, 1.0, None)]
FEATURE_SCHEMA = pa.schema([("id", pa.int64()), ("x1", pa.float64()), ("x2", pa.float64()),
                            (steps.FLAGS, pa.string())])


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A tiny fitted LogisticRegression registered as m v1 in SCORING_MODELS_DIR."""
    estimator = LogisticRegression().fit(TRAIN, LABELS)
    artifact = tmp_path / "model.joblib"
    joblib.dump(estimator, artifact)
    monkeypatch.setenv("SCORING_MODELS_DIR", str(tmp_path / "models"))
    mv = Registry().register("m", artifact, CARD)
    assert mv.card["sha256"] == sha256_of(mv.artifact)
    return estimator, mv


def _ctx(tmp_path: Path, mv: Any, rows: list[tuple[Any, ...]] = FEATURES, min_rows: int = 1000) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
        "source": {"path": str(tmp_path / "data"), "batch_rows": 2},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "drift": {"min_rows": min_rows},
    }, Path("t.yaml"))
    (tmp_path / "stage").mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date="2026-11-20", model_name="m",
                   model_version=mv.version, dry_run=False, staging_dir=str(tmp_path / "stage"))
    ctx = RunContext(job=job, spec=spec, model=mv, engine=None)
    with StagedWriter(ctx.path(steps.FEATURES), FEATURE_SCHEMA) as writer:
        if rows:
            writer.write(pa.table({n: [r[i] for r in rows] for i, n in enumerate(FEATURE_SCHEMA.names)},
                                  FEATURE_SCHEMA))
    return ctx


def _scored(ctx: RunContext) -> list[dict[str, Any]]:
    return [r for b in read_batches(ctx.path(steps.SCORED), 100) for r in b.to_pylist()]


def test_every_row_is_scored_with_the_models_probabilities(tmp_path: Path, model: tuple[Any, Any]) -> None:
    estimator, mv = model
    ctx = _ctx(tmp_path, mv)
    assert score_file(ctx) == {"rows_scored": 5}
    assert staged_schema(ctx.path(steps.SCORED)) == scored_schema("id", pa.int64())
    rows = _scored(ctx)
    assert [r["id"] for r in rows] == [10, 11, 12, 13, 14]
    assert [r["flags"] for r in rows] == [None, "unknown_category:plan", None, None, None]
    frame = pd.DataFrame([r[1:3] for r in FEATURES], columns=["x1", "x2"])
    expected = estimator.predict_proba(frame)[:, 1]
    np.testing.assert_allclose([r["score"] for r in rows], expected, rtol=0, atol=1e-12)
    assert [r["prediction"] for r in rows] == [str(p) for p in estimator.predict(frame)]
    assert {r["prediction"] for r in rows} == {"0", "1"}, "the test rows cover both classes"


def test_score_state_and_skipped_drift_are_staged(tmp_path: Path, model: tuple[Any, Any]) -> None:
    ctx = _ctx(tmp_path, model[1], min_rows=1000)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    score_file(ctx)
    scored_at = dt.datetime.fromisoformat(ctx.spec.read_json(steps.SCORE_STATE)["scored_at"])
    assert before <= scored_at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert ctx.spec.read_json(steps.DRIFT_STATE) == [], "5 rows < drift.min_rows: not checked"


def test_zero_features_give_an_empty_scored_file(tmp_path: Path, model: tuple[Any, Any]) -> None:
    ctx = _ctx(tmp_path, model[1], rows=[])
    assert score_file(ctx) == {"rows_scored": 0}
    assert staged_schema(ctx.path(steps.SCORED)) == scored_schema("id", pa.int64())
    assert _scored(ctx) == []


def test_a_tampered_artifact_is_refused_before_unpickling(tmp_path: Path, model: tuple[Any, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, mv = model
    with mv.artifact.open("ab") as fh:
        fh.write(b"tampered")
    loaded: list[Any] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: loaded.append(a))
    ctx = _ctx(tmp_path, mv)
    with pytest.raises(ModelIntegrityError, match="Refusing to unpickle") as err:
        score_file(ctx)
    assert f"has sha256 {sha256_of(mv.artifact)}" in str(err.value)
    assert f"card says {mv.card['sha256']}" in str(err.value)
    assert loaded == [], "joblib.load must not be called"
    assert not ctx.path(steps.SCORED).exists()


def test_golden_rows_that_do_not_reproduce_are_refused(tmp_path: Path, model: tuple[Any, Any]) -> None:
    estimator, mv = model
    golden = TRAIN.assign(expected_score=estimator.predict_proba(TRAIN)[:, 1])
    golden.to_parquet(mv.golden)
    assert score_file(_ctx(tmp_path, mv)) == {"rows_scored": 5}, "matching golden rows pass"
    golden.assign(expected_score=golden["expected_score"] + 1e-3).to_parquet(mv.golden)
    with pytest.raises(ModelIntegrityError, match=r"does not reproduce .* \(largest difference 0\.001\)"):
        score_file(_ctx(tmp_path, mv))
