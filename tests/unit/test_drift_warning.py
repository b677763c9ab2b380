"""A model card without training statistics: drift is not checked, and the run says so (log and ledger)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline import drift, ledger, local, steps
from pipeline.config import load_job, parse_job
from pipeline.context import RunContext
from pipeline.registry import ModelVersion, Registry
from pipeline.staging import RunSpec, StagedWriter
from pipeline.store import engines, operational
from tests.conftest import DAY, write_job, write_partition

INPUTS = [{"name": "age", "type": "float", "nullable": True}]
NO_STATS = "drift_not_checked: model m v3 has no training statistics"


def _ctx(tmp_path: Path, card: dict[str, Any], *, min_rows: int = 1, engine: Any = None) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
        "source": {"path": str(tmp_path / "data"), "batch_rows": 3},
        "model": {"name": "m", "ref": "3"}, "output": {"table": "t_predictions"},
        "drift": {"min_rows": min_rows, "psi_threshold": 0.2},
    }, Path("t.yaml"))
    (tmp_path / "stage").mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY.isoformat(), model_name="m",
                   model_version=3, dry_run=False, staging_dir=str(tmp_path / "stage"))
    ctx = RunContext(job=job, spec=spec, model=ModelVersion("m", 3, tmp_path / "model", card), engine=engine)
    with StagedWriter(ctx.path(steps.VALID)) as writer:
        writer.write(pa.table({"id": [1, 2, 3, 4], "age": [10.0, 20.0, 30.0, 40.0],
                               steps.FLAGS: pa.nulls(4, pa.string())}))
    with StagedWriter(ctx.path(steps.SCORED)) as writer:
        writer.write(pa.table({"id": [1, 2, 3, 4], "prediction": ["0", "0", "1", "1"],
                               "score": [0.1, 0.2, 0.7, 0.9], "flags": pa.nulls(4, pa.string())}))
    return ctx


def _engine(tmp_path: Path) -> Any:
    engine = engines.engine_for(f"sqlite:///{tmp_path}/x.db")
    operational.ensure_ledger(engine)
    return engine


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "pipeline.run"]


@pytest.mark.parametrize("training", [
    None,
    {},
    {"stats": {}, "score_stats": {}},
    {"stats": {"age": {"kind": "numeric", "bin_edges": [0.0, 1.0], "bin_shares": [1.0]}}},  # one bin: unusable
    {"stats": {"age": {"kind": "categorical", "shares": {}}}, "rows": 100},
], ids=["no-training", "empty", "empty-stats", "one-bin", "no-shares"])
def test_a_card_without_statistics_warns_and_flags_the_counts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, training: dict[str, Any] | None) -> None:
    card: dict[str, Any] = {"name": "m", "version": 3, "inputs": INPUTS}
    if training is not None:
        card["training"] = training
    ctx = _ctx(tmp_path, card, engine=_engine(tmp_path))
    counts: dict[str, Any] = {"rows_scored": 4}
    with caplog.at_level(logging.INFO):
        assert drift.check(ctx, 4, counts) == []
    assert counts == {"rows_scored": 4, "warnings": NO_STATS}
    assert ctx.spec.read_json(steps.DRIFT_STATE) == []
    [warning] = _warnings(caplog)
    assert "[job=t partition=2026-11-20 run=r1] drift NOT checked: model m v3 has no training statistics" in warning
    assert ("register the model with its training data, `scoring models register m --artifact ... "
            "--training-data ...`, to get drift statistics") in warning.lower()
    ledger.start_attempt(ctx.engine, job_id="t", run_id="r1", partition_date=DAY, mode="persist", dry_run=False,
                         model_name="m", model_version=3)
    ledger.update(ctx.engine, "t", "r1", 1, **counts)
    assert ledger.get(ctx.engine, "t", "r1")["warnings"] == NO_STATS


def test_a_warning_is_added_to_those_already_counted(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, {"name": "m", "version": 3, "inputs": INPUTS})
    counts: dict[str, Any] = {"warnings": "something_else"}
    drift.check(ctx, 4, counts)
    assert counts["warnings"] == f"something_else; {NO_STATS}"
    assert drift.check(ctx, 4) == [], "without counts (a caller that records nothing) it still only warns"


def test_fewer_rows_than_min_rows_is_info_not_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ctx = _ctx(tmp_path, {"name": "m", "version": 3, "inputs": INPUTS}, min_rows=100)
    counts: dict[str, Any] = {"rows_scored": 4}
    with caplog.at_level(logging.INFO):
        assert drift.check(ctx, 4, counts) == []
    assert counts == {"rows_scored": 4}
    assert _warnings(caplog) == []
    assert any("fewer than drift.min_rows (100): not checked" in r.getMessage() for r in caplog.records
               if r.levelno == logging.INFO)


def test_a_card_with_statistics_gives_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    training = {"score_stats": {"kind": "numeric", "bin_edges": [0.0, 0.5, 1.0], "bin_shares": [0.5, 0.5]}}
    ctx = _ctx(tmp_path, {"name": "m", "version": 3, "inputs": INPUTS, "training": training})
    counts: dict[str, Any] = {"rows_scored": 4}
    with caplog.at_level(logging.INFO):
        results = drift.check(ctx, 4, counts)
    assert [r["feature"] for r in results] == ["__score__"]
    assert counts == {"rows_scored": 4}
    assert _warnings(caplog) == []
    assert drift.has_statistics(ctx.card) and not drift.has_statistics({"training": {"prediction_shares": {"1": 1}}})


def _register_without_statistics(home: Path) -> None:
    registry = Registry()
    mv = registry.resolve("churn", 1)
    card = copy.deepcopy(mv.card)
    del card["training"]
    assert registry.register("churn", mv.artifact, card, golden=mv.golden).version == 2


def _ledger_warnings(job_id: str, run_id: str) -> Any:
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT warnings FROM scoring_runs WHERE job_id = :j AND run_id = :r"),
                            {"j": job_id, "r": run_id}).scalar_one()


@pytest.mark.parametrize("shards", [1, 3], ids=["unsharded", "sharded"])
def test_a_run_with_a_model_without_statistics_flags_its_ledger_row(
        home: Path, caplog: pytest.LogCaptureFixture, shards: int) -> None:
    _register_without_statistics(home)
    write_partition(home, n=1500, files=3)
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 700,
                                           "shards": shards}))
    with caplog.at_level(logging.INFO):
        summary = local.run_partition(job, DAY, run_id="no-stats", model_ref="2")
    expected = "drift_not_checked: model churn v2 has no training statistics"
    assert summary["status"] == "success" and summary["model_version"] == 2
    assert summary["warnings"] == expected
    assert _ledger_warnings("churn_test", "no-stats") == expected
    assert summary["drifted_features"] == []
    assert sum("drift NOT checked: model churn v2" in m for m in _warnings(caplog)) == 1
    champion = local.run_partition(job, DAY, run_id="with-stats")
    assert champion["model_version"] == 1 and champion["warnings"] is None, "a card with statistics flags nothing"
    assert _ledger_warnings("churn_test", "with-stats") is None
