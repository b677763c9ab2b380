"""Drift: PSI against the card's training statistics, the check at score time, the record at finalize."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline import drift, ledger, steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.errors import DriftError
from pipeline.registry import ModelVersion
from pipeline.staging import RunSpec, StagedWriter
from pipeline.store import engines, operational

DAY = "2026-11-20"
INPUTS = [{"name": "age", "type": "float", "nullable": True},
          {"name": "plan", "type": "category", "nullable": False, "categories": ["a", "b"]}]
TRAINING = {
    "stats": {
        "age": {"kind": "numeric", "null_share": 0.0, "bin_edges": [0.0, 25.0, 50.0, 75.0, 100.0],
                "bin_shares": [0.25, 0.25, 0.25, 0.25]},
        "plan": {"kind": "categorical", "null_share": 0.0, "shares": {"a": 0.5, "b": 0.5}},
        "not_staged": {"kind": "numeric", "bin_edges": [0.0, 1.0, 2.0], "bin_shares": [0.5, 0.5]},
    },
    "score_stats": {"kind": "numeric", "bin_edges": [0.0, 0.5, 1.0], "bin_shares": [0.5, 0.5]},
    "prediction_shares": {"0": 0.5, "1": 0.5},
}
CARD = {"name": "m", "version": 1, "inputs": INPUTS, "training": TRAINING}
# 40 rows like training: ten ages per quarter, half a / half b, half the scores on each side of 0.5 (enough rows
# for the chi-square test to tell a real shift: 8 rows all "a" against 50/50 is PSI 4.6 but no evidence)
AGES = [10.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 90.0] * 5
PLANS = ["a", "b"] * 20
SCORES = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9] * 5


def _ctx(tmp_path: Path, *, plans: list[str] = PLANS, ages: list[float | None] = AGES, min_rows: int = 1,
         on_breach: str = "flag", engine: Any = None, dry_run: bool = False) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
        "source": {"path": str(tmp_path / "data"), "batch_rows": 3},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "drift": {"min_rows": min_rows, "on_breach": on_breach, "psi_threshold": 0.2},
    }, Path("t.yaml"))
    (tmp_path / "stage").mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=dry_run, staging_dir=str(tmp_path / "stage"))
    ctx = RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", CARD), engine=engine)
    n = len(ages)
    with StagedWriter(ctx.path(steps.VALID)) as writer:
        writer.write(pa.table({"id": list(range(n)), "age": pa.array(ages, pa.float64()), "plan": plans,
                               steps.FLAGS: pa.nulls(n, pa.string())}))
    with StagedWriter(ctx.path(steps.SCORED)) as writer:
        writer.write(pa.table({"id": list(range(n)), "prediction": ["0" if s < 0.5 else "1" for s in SCORES[:n]],
                               "score": SCORES[:n], "flags": pa.nulls(n, pa.string())}))
    return ctx


def _engine(tmp_path: Path) -> Any:
    engine = engines.engine_for(f"sqlite:///{tmp_path}/x.db")
    operational.ensure_ledger(engine)
    return engine


def _drift_rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT job_id, partition_date, run_id, model_name, model_version, feature, drifted, row_count "
            "FROM scoring_drift ORDER BY feature")).mappings()]


def test_psi_is_zero_for_identical_shares_and_grows_with_a_shift() -> None:
    assert drift.psi([0.25] * 4, [0.25] * 4) == 0.0
    shifted = drift.psi([0.5, 0.5], [0.9, 0.1])
    assert shifted > 0.1
    assert math.isclose(shifted, 0.4 * math.log(1.8) + 0.4 * math.log(5), rel_tol=1e-12)
    assert drift.psi([0.5, 0.5], [0.6, 0.4]) < shifted
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])), "empty bins are floored, not infinite"


def test_compute_gives_one_result_per_feature_with_drifted_flags(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, plans=["a"] * 40)
    results = drift.compute(CARD, ctx.path(steps.VALID), ctx.path(steps.SCORED), threshold=0.2, batch_rows=3)
    by_name = {r["feature"]: r for r in results}
    assert [r["feature"] for r in results] == ["age", "plan", "__score__", "__prediction__"], \
        "inputs in card order (only those staged), then the score and the predicted classes"
    assert [r["kind"] for r in results] == ["numeric", "categorical", "score", "prediction"]
    assert {r["row_count"] for r in results} == {40}
    assert by_name["age"]["value"] == pytest.approx(0.0, abs=1e-3) and not by_name["age"]["drifted"]
    assert by_name["plan"]["value"] > 0.2 and by_name["plan"]["drifted"]
    assert by_name["__score__"]["value"] == pytest.approx(0.0, abs=1e-3) and not by_name["__score__"]["drifted"]
    assert all(r["statistic"] == "psi" and r["threshold"] == 0.2 for r in results)


def test_compute_counts_missing_values_and_values_beyond_training(tmp_path: Path) -> None:
    ages: list[float | None] = [None, None, None, None, 500.0, 500.0, -3.0, 30.0] * 5
    ctx = _ctx(tmp_path, ages=ages)
    results = drift.compute(CARD, [ctx.path(steps.VALID)], [ctx.path(steps.SCORED)], threshold=0.2,
                            batch_rows=100)
    age = next(r for r in results if r["feature"] == "age")
    assert age["row_count"] == 40 and age["drifted"] and age["p_value"] < 1e-6
    expected = drift.psi([0.25, 0.25, 0.25, 0.25, 0.0], [1 / 8, 1 / 8, 0.0, 2 / 8, 4 / 8])
    assert age["value"] == pytest.approx(expected, abs=1e-6)


def test_check_below_min_rows_writes_an_empty_result(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, plans=["a"] * 40, min_rows=100, on_breach="block")
    assert drift.check(ctx, 40) == []
    assert ctx.spec.read_json(steps.DRIFT_STATE) == []


def test_check_judges_and_stages_the_results_and_never_refuses(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, plans=["a"] * 40, on_breach="block")
    results = drift.check(ctx, 40)  # the gate before the output step refuses, not the score stage
    assert [r["feature"] for r in drift.drifted(results)] == ["plan"]
    assert ctx.spec.read_json(steps.DRIFT_STATE) == results
    assert all(r["alpha_used"] == pytest.approx(0.01 / 4) for r in results), "Bonferroni over the 4 features"


def _open_attempt(ctx: RunContext, rows_in: int = 40, quarantined: int = 0) -> None:
    spec = ctx.spec
    ledger.start_attempt(ctx.engine, job_id=spec.job_id, run_id=spec.run_id, partition_date=dt.date.fromisoformat(DAY),
                         mode="persist", dry_run=spec.dry_run, model_name="m", model_version=1)
    ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, rows_in=rows_in, rows_quarantined=quarantined,
                  rows_scored=rows_in - quarantined)


def test_the_gate_with_block_records_alerts_and_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = _engine(tmp_path)
    ctx = _ctx(tmp_path, plans=["a"] * 40, on_breach="block", engine=engine)
    _open_attempt(ctx)
    drift.check(ctx, 40)
    with pytest.raises(DriftError) as err:
        drift.gate(ctx, {"x": 1})
    message = str(err.value)
    assert message.startswith(f"partition {DAY} of job t was NOT published: its inputs or scores drifted from the "
                              "training data of m v1: plan (PSI 4.60, n 40, p "), message
    assert "drift.on_breach is block: the partition's previously published state is unchanged" in message
    assert "investigate the shift" in message and "re-run the partition" in message
    assert err.value.counts == {"x": 1} and err.value.retryable is False
    assert any("DRIFT ALERT job t partition" in r.getMessage() and "NOT published (drift.on_breach: block)"
               in r.getMessage() for r in caplog.records)
    rows = _drift_rows(engine)
    assert [r["feature"] for r in rows] == ["__prediction__", "__score__", "age", "plan"]
    assert [r["feature"] for r in rows if r["drifted"]] == ["plan"]
    assert {(r["job_id"], str(r["partition_date"]), r["run_id"], r["model_name"], r["model_version"])
            for r in rows} == {("t", DAY, "r1", "m", 1)}
    stored = drift.drifted_rows(engine, "t", dt.date.fromisoformat(DAY), "r1")
    assert stored[0]["feature"] == "plan" and stored[0]["row_count"] == 40 and stored[0]["p_value"] < 1e-6


@pytest.mark.parametrize(("policy", "breach", "alerted"), [("flag", "drift", True), ("ignore", None, False)])
def test_the_gate_with_flag_or_ignore_lets_the_run_publish(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                           policy: str, breach: str | None, alerted: bool) -> None:
    engine = _engine(tmp_path)
    ctx = _ctx(tmp_path, plans=["a"] * 40, on_breach=policy, engine=engine)
    _open_attempt(ctx)
    drift.check(ctx, 40)
    found = drift.gate(ctx)
    assert [(b["kind"], b["policy"]) for b in found] == [("drift", policy)]
    assert ctx.spec.read_json(drift.QUALITY_STATE) == {"breaches": found}
    results, names, flagged = drift.finish(ctx, ledger.get(engine, "t", "r1"))
    assert names == ["plan"] and flagged == breach
    assert (drift.alert(ctx.job, DAY, "r1", drift.drifted(results)) is not None) is alerted


def test_a_quarantine_share_above_the_limit_is_a_breach_of_its_own_policy(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    ctx = _ctx(tmp_path, engine=engine)  # inputs like training: no drift
    _open_attempt(ctx, rows_in=50, quarantined=10)
    drift.check(ctx, 40)
    job = ctx.job.model_copy(update={"validation": ctx.job.validation.model_copy(update={"on_breach": "flag"})})
    found = drift.breaches(job, ledger.get(engine, "t", "r1"), drift.judge(drift.check(ctx, 40), job.drift))
    assert found == [{"kind": "quarantine", "policy": "flag", "text": "10 of 50 rows (20.0%) quarantined, above "
                      "validation.max_quarantine_share 5.0%"}]
    assert drift.flagged(found) == "quarantine"
    assert drift.flagged([*found, {"kind": "drift", "policy": "flag"}]) == "drift,quarantine"
    assert drift.flagged([{"kind": "drift", "policy": "ignore"}, {"kind": "quarantine", "policy": "block"}]) is None


def test_record_replaces_the_partitions_drift_rows_unless_dry_run(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    ctx = _ctx(tmp_path, plans=["a"] * 40, engine=engine)
    drift.check(ctx, 40)
    assert drift.record(ctx) == ["plan"]
    assert drift.record(ctx) == ["plan"]
    assert len(_drift_rows(engine)) == 4, "recording twice replaces, never duplicates"
    assert drift.record(ctx, []) == []
    assert _drift_rows(engine) == []
    dry = ctx.with_spec(RunSpec.from_dict({**ctx.spec.to_dict(), "dry_run": True}))
    assert drift.record(dry, [{"feature": "age", "drifted": True, "value": 0.5, "row_count": 400,
                               "p_value": 1e-9}]) == ["age"]
    assert _drift_rows(engine) == [], "a dry run stores nothing"
