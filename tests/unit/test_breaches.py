"""The breach event's payloads (pipeline.breaches), one per kind, and the demo's retraining refusing the champion."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline import breaches
from pipeline.config import load_job, parse_job
from pipeline.errors import ConfigError
from tests.conftest import DAY

JOB = parse_job({
    "job_id": "shop_daily", "schedule": "0 2 * * *", "start_date": "2026-11-01", "entity_key": "id",
    "source": {"path": "data/x"}, "model": {"name": "m", "ref": "champion"},
    "output": {"table": "shop_predictions", "connection": "scoring_db"},
    "drift": {"psi_threshold": 0.25, "alpha": 0.01, "on_breach": "flag"},
    "outcomes": {"path": "data/y", "label": "bought", "horizon_days": 2, "floors": {"roc_auc": 0.75},
                 "ceilings": {"log_loss": 0.4}},
}, Path("shop_daily.yaml"))


def test_names_of_the_breach_asset() -> None:
    assert breaches.asset_name("shop_daily") == "shop_daily.breach"
    assert breaches.asset_uri("shop_daily") == "scoring://shop_daily/breach"
    # the DAG side writes the same names without importing the stage modules
    text = (Path(__file__).resolve().parents[2] / "dags" / "_scoring" / "assets.py").read_text()
    assert 'name=f"{job_id}.breach", uri=f"scoring://{job_id}/breach"' in text


def test_a_drift_payload_names_the_drifted_features_with_psi_p_value_and_threshold() -> None:
    rows = [{"feature": "tickets", "kind": "input", "value": Decimal("0.31"), "threshold": 0.25, "row_count": 2000,
             "p_value": 1e-12},
            {"feature": "__score__", "kind": "score", "value": 0.9, "threshold": 0.25, "row_count": 2000,
             "p_value": 0.0}]
    p = breaches.drift_payload(JOB, DAY, "m", 3, rows, published=True)
    assert p == {
        "job_id": "shop_daily", "kind": "drift", "partition_date": "2026-11-20", "model_name": "m",
        "versions": {"scored": 3},
        "figures": {"drifted": [
            {"feature": "__score__", "kind": "score", "psi": 0.9, "p_value": 0.0, "threshold": 0.25, "rows": 2000},
            {"feature": "tickets", "kind": "input", "psi": 0.31, "p_value": 1e-12, "threshold": 0.25, "rows": 2000}],
            "psi_threshold": 0.25, "alpha": 0.01, "policy": "flag", "published": True},
    }
    assert json.loads(json.dumps(p)) == p, "an asset event's extra is JSON"


def _perf(metric: str, value: float, bound: float | None, breached: bool, role: str = "champion",
          version: int = 3) -> dict:
    return {"job_id": "shop_daily", "partition_date": DAY, "model_name": "m", "model_version": version, "role": role,
            "metric": metric, "value": value, "rows_predicted": 900, "rows_labelled": 850, "bound": bound,
            "breached": breached, "outcome_date": DAY + dt.timedelta(days=2), "computed_at": dt.datetime(2026, 11, 22)}


def test_a_performance_payload_has_each_breached_metric_with_its_floor_or_ceiling() -> None:
    rows = [_perf("roc_auc", 0.71, 0.75, True), _perf("log_loss", 0.45, 0.4, True), _perf("accuracy", 0.8, None, False),
            _perf("roc_auc", 0.8, 0.75, False, "challenger", 4)]
    p = breaches.performance_payload(JOB, DAY, rows)
    assert p is not None and p["kind"] == "performance" and p["versions"] == {"champion": 3}
    assert p["figures"]["breached"] == [
        {"metric": "roc_auc", "value": 0.71, "floor": 0.75, "role": "champion", "model_version": 3,
         "rows_labelled": 850, "outcome_date": "2026-11-22"},
        {"metric": "log_loss", "value": 0.45, "ceiling": 0.4, "role": "champion", "model_version": 3,
         "rows_labelled": 850, "outcome_date": "2026-11-22"}]
    assert breaches.performance_payload(JOB, DAY, [r for r in rows if not r["breached"]]) is None
    assert json.loads(json.dumps(p)) == p


def _verdict(verdict: str, scope: str = "period") -> dict:
    return {"job_id": "shop_daily", "partition_date": DAY, "scope": scope, "design": "ab", "arm": "challenger",
            "model_name": "m", "model_version": 4, "champion_version": 3, "metric": "log_loss", "confidence": 0.95,
            "min_rows": 1000, "rows": 5000, "champion_rows": 45000, "value": 0.30, "champion_value": 0.32,
            "difference": -0.02, "difference_ci_low": -0.03, "difference_ci_high": -0.01, "verdict": verdict,
            "reason": "v4 better than v3: log_loss -0.02 [-0.03, -0.01] at 95% on 5000/45000 rows"}


def test_a_verdict_payload_has_the_difference_and_its_interval_and_only_decisive_period_verdicts_count() -> None:
    p = breaches.verdict_payload(JOB, _verdict("better"))
    assert p["kind"] == "ab_verdict" and p["versions"] == {"challenger": 4, "champion": 3}
    assert p["figures"] == {"verdict": "better", "arm": "challenger", "design": "ab", "scope": "period",
                            "metric": "log_loss", "value": 0.30, "champion_value": 0.32, "difference": -0.02,
                            "interval": [-0.03, -0.01], "confidence": 0.95, "rows": 5000, "champion_rows": 45000,
                            "min_rows": 1000, "reason": _verdict("better")["reason"]}
    rows = [_verdict("not_yet"), _verdict("worse", scope="day"), _verdict("worse")]
    assert [v["figures"]["verdict"] for v in breaches.verdict_payloads(JOB, rows)] == ["worse"]


def test_an_event_carries_every_breach_and_the_first_ones_fields() -> None:
    found = breaches.outcome_payloads(JOB, DAY, [_perf("roc_auc", 0.7, 0.75, True)], [_verdict("better")])
    assert [f["kind"] for f in found] == ["performance", "ab_verdict"]
    extra = breaches.event_extra(found)
    assert extra["kind"] == "performance" and extra["breaches"] == found
    assert {"job_id", "kind", "partition_date", "model_name", "versions", "figures"} <= set(extra)
    assert breaches.outcome_payloads(JOB, DAY, [_perf("roc_auc", 0.8, 0.75, False)], [_verdict("not_yet")]) == []
    with pytest.raises(ValueError, match="no breach"):
        breaches.event_extra([])
    with pytest.raises(ValueError, match="unknown breach kind 'latency'"):
        breaches.payload("latency", "j", DAY, "m", {}, {})


def test_the_demo_retraining_never_registers_the_champion(home: Path) -> None:
    from pipeline.demo import retrain
    from pipeline.registry import Registry

    job = JOB.model_copy(update={"job_id": "churn_daily"})
    before = Registry().aliases("churn")
    with pytest.raises(ConfigError, match="registered as a challenger, never as the champion"):
        retrain.retrain(job, {"kind": "drift", "partition_date": DAY.isoformat()}, alias="champion")
    assert Registry().aliases("churn") == before


def test_the_demo_retraining_trains_on_the_latest_labelled_days_and_registers_the_challenger(home: Path) -> None:
    from pipeline.demo import data as demo_data
    from pipeline.demo import retrain
    from pipeline.registry import Registry
    from tests.conftest import write_job

    root = home / "data" / "churn"
    for back in (4, 3, 2, 1):  # 4 days of partitions; the outcomes of the last one have not arrived
        day = DAY - dt.timedelta(days=back)
        frame = demo_data.customers(day, n=800)
        demo_data.write_partition(root, day, frame)
        if back > 1:
            demo_data.write_outcomes(demo_data.outcomes_root(root), day, frame, horizon_days=1)
    job = load_job(write_job(
        home, job_id="churn_daily", model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
        outcomes={"path": str(demo_data.outcomes_root(root)), "label": "churned", "horizon_days": 1}))
    assert retrain.labelled_days(job, DAY, 2) == [DAY - dt.timedelta(days=3), DAY - dt.timedelta(days=2)]
    champion = Registry().aliases("churn")["champion"]
    mv = retrain.retrain(job, {"kind": "drift", "partition_date": DAY.isoformat()}, days=2)
    registry = Registry()
    assert registry.aliases("churn") == {"champion": champion, "challenger": mv.version} and mv.version > champion
    assert mv.card["training"]["data"].startswith(f"job churn_daily partitions {DAY - dt.timedelta(days=3)} .. "
                                                  f"{DAY - dt.timedelta(days=2)} (2 day(s)) joined to their outcomes")
    assert 1000 < mv.card["training"]["rows"] < 1600 and mv.card["metrics"]["roc_auc"] > 0.6
    assert registry.resolve("churn", "challenger").version == mv.version  # anchored: it resolves and verifies


@pytest.mark.parametrize("policy", ["flag", "block", "ignore"])
def test_a_runs_drift_breach_comes_from_its_ledger_row_and_scoring_drift(home: Path, policy: str) -> None:
    """flag (published, marked) and block (not published, the gate failed) are breaches; ignore, a dry run and a
    partition that did not drift are not."""
    from pipeline import local
    from pipeline.errors import DriftError
    from tests.conftest import write_job, write_partition

    write_partition(home, n=1000, shift=1.0)
    job = load_job(write_job(home, drift={"on_breach": policy}))
    if policy == "block":
        with pytest.raises(DriftError, match="was NOT published"):
            local.run_partition(job, DAY, run_id="r1")
    else:
        local.run_partition(job, DAY, run_id="r1")
    found = breaches.for_run(job, DAY, "r1")
    if policy == "ignore":
        assert found is None
    else:
        assert found is not None and found["kind"] == "drift" and found["versions"] == {"scored": 1}
        assert found["figures"]["policy"] == policy and found["figures"]["published"] is (policy == "flag")
        assert "support_tickets_90d" in {d["feature"] for d in found["figures"]["drifted"]}
    assert breaches.for_run(job, DAY, "no-such-run") is None
    if policy == "flag":
        local.run_partition(job, DAY, run_id="r2", dry_run=True)
        assert breaches.for_run(job, DAY, "r2") is None, "a dry run records no drift: no event"
        quiet = DAY - dt.timedelta(days=1)
        write_partition(home, day=quiet, n=1000)
        local.run_partition(job, quiet, run_id="r3")
        assert breaches.for_run(job, quiet, "r3") is None


def test_the_demo_command_line_writes_outcomes_and_retrains_by_hand(home: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    from pipeline.demo import cli
    from pipeline.demo import data as demo_data
    from pipeline.registry import Registry
    from tests.conftest import write_job

    root = home / "data" / "churn"
    first = DAY - dt.timedelta(days=3)
    assert cli.main(["data", "--start", first.isoformat(), "--days", "3", "--customers", "600", "--out",
                     str(root)]) == 0
    dated = sorted(p.name for p in demo_data.outcomes_root(root).iterdir())
    assert dated == [f"date={first + dt.timedelta(days=i)}" for i in (30, 31, 32)], "each partition's, 30 days on"
    path = write_job(home, job_id="churn_daily", outcomes={"path": str(demo_data.outcomes_root(root)),
                                                           "label": "churned", "horizon_days": 30})
    capsys.readouterr()
    assert cli.main(["retrain", "--partition", DAY.isoformat(), "--days", "2", "--job-file", str(path)]) == 0
    assert "registered churn v2 as challenger" in capsys.readouterr().out
    mv = Registry().resolve("churn", "challenger")
    assert mv.version == 2 and Registry().aliases("churn")["champion"] == 1
    assert mv.card["training"]["data"].endswith(f"joined to their outcomes; retrained by hand up to partition {DAY}")
    assert cli.main(["data", "--start", DAY.isoformat(), "--customers", "300", "--out", str(root),
                     "--horizon-days", "-1"]) == 0
    assert not (demo_data.outcomes_root(root) / f"date={DAY + dt.timedelta(days=30)}").exists()
