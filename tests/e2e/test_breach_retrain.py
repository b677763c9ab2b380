"""A breach is an asset event: a drifted partition emits ``<job_id>.breach``, the scheduler runs the demo's
retraining DAG from it, the new version is registered as the challenger, and the next run shadows it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import run
from pipeline.demo import data as demo_data
from pipeline.registry import Registry
from tests.conftest import DAY, with_challenger, write_job, write_partition
from tests.e2e.conftest import dags_test

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
N_VERDICT = 4000  # rows of the verdict test's day: enough for a truly better challenger to be told apart


def _labelled_days(home: Path, *days: dt.date, n: int = 800) -> Path:
    """Partitions and their outcomes (dated the next day), as the demo's generator writes them."""
    root = home / "data" / "churn"
    for day in days:
        frame = demo_data.customers(day, n=n)
        demo_data.write_partition(root, day, frame)
        demo_data.write_outcomes(demo_data.outcomes_root(root), day, frame, horizon_days=1)
    return demo_data.outcomes_root(root)


def _demo_job(home: Path, outcomes: Path, job_id: str = "churn_daily", **overrides: object) -> Path:
    return write_job(home, job_id=job_id, schedule=None,
                     model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
                     outcomes={"path": str(outcomes), "label": "churned", "horizon_days": 1}, **overrides)


def _events_after(airflow_home: Path, asset: str, after: int) -> list[tuple[dict, str, str, str]]:
    """(extra, source dag, source task, source run) of the events of ``asset`` with an id above ``after``: the
    metadata database of ``airflow dags test`` is shared by the tests of a worker."""
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT e.extra, e.source_dag_id, e.source_task_id, e.source_run_id FROM asset_event e JOIN asset a ON "
            "a.id = e.asset_id WHERE a.name = :a AND e.id > :n ORDER BY e.id"), {"a": asset, "n": after}).all()
    return [(r[0] if isinstance(r[0], dict) else json.loads(r[0]), r[1], r[2], r[3]) for r in rows]


def _last_event(airflow_home: Path) -> int:
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        return conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM asset_event")).scalar_one()


def _scoring(sql: str, **params: object) -> list[dict]:
    with run.engine(run.find_job("churn_daily")).connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def test_a_drift_breach_runs_the_retraining_dag_whose_challenger_the_next_run_shadows(
        home: Path, tmp_path: Path, stack_factory, airflow_pg_db: str) -> None:
    import psycopg

    from tests.e2e.test_airflow_runs import _pg_stack

    outcomes = _labelled_days(home, DAY - dt.timedelta(days=3), DAY - dt.timedelta(days=2))
    write_partition(home, n=1000, shift=1.0)  # the breached day: usage drifted
    write_partition(home, day=DAY + dt.timedelta(days=1), n=600)  # the next night's: as usual
    _demo_job(home, outcomes)  # drift.on_breach: flag (the default), challengers: [challenger]
    registry = Registry()
    assert registry.aliases("churn") == {"champion": 1}, "no challenger yet"
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    stack = _pg_stack(stack_factory, airflow_home, airflow_pg_db)
    stack.start(["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"])
    stack.wait_for("the DAGs to be parsed", lambda: stack.parsed("churn_daily", "demo_retrain"))
    for dag_id in ("churn_daily", "demo_retrain"):
        stack.cli("dags", "unpause", dag_id)
    stack.cli("dags", "trigger", "churn_daily", "--conf", json.dumps({"partition_date": DAY.isoformat()}))
    metadata = airflow_pg_db.replace("postgresql+psycopg://", "postgresql://")

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(metadata) as conn:
            return conn.execute(sql).fetchall()

    def retrained() -> bool:
        states = [s for (s,) in query("SELECT state FROM dag_run WHERE dag_id = 'demo_retrain'")]
        assert "failed" not in states, f"demo_retrain failed; logs in {airflow_home}"
        return states == ["success"]

    stack.wait_for("the retraining DAG to run on the breach event", retrained, timeout=420)
    stack.wait_for("the scoring run to end", lambda: query(
        "SELECT state FROM dag_run WHERE dag_id = 'churn_daily'") == [("success",)], timeout=120)
    [(breached_run,)] = query("SELECT run_id FROM dag_run WHERE dag_id = 'churn_daily'")
    # the event: kind, partition, versions and the drifted features' figures
    [(extra, source_dag, source_task)] = query(
        "SELECT e.extra, e.source_dag_id, e.source_task_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.name = 'churn_daily.breach' AND a.uri = 'scoring://churn_daily/breach' AND a.\"group\" = 'scoring'")
    assert (source_dag, source_task) == ("churn_daily", "announce_breach")
    assert {k: extra[k] for k in ("job_id", "kind", "partition_date", "model_name", "versions")} == {
        "job_id": "churn_daily", "kind": "drift", "partition_date": DAY.isoformat(), "model_name": "churn",
        "versions": {"scored": 1}}
    figures = extra["figures"]
    assert figures["policy"] == "flag" and figures["published"] is True and figures["psi_threshold"] == 0.2
    drifted = {d["feature"]: d for d in figures["drifted"]}
    assert "support_tickets_90d" in drifted and drifted["support_tickets_90d"]["psi"] > 0.2
    assert drifted["support_tickets_90d"]["p_value"] < 0.01 and drifted["support_tickets_90d"]["threshold"] == 0.2
    assert extra["breaches"] == [{k: v for k, v in extra.items() if k != "breaches"}]
    recorded = _scoring("SELECT feature FROM scoring_drift WHERE run_id = :r AND drifted = :t",
                        r=breached_run, t=True)
    assert {r["feature"] for r in recorded} == set(drifted), "the event names what scoring_drift recorded"
    # the retraining: a new version, alias challenger; the champion unchanged
    registry = Registry()
    assert registry.aliases("churn") == {"champion": 1, "challenger": 2}
    card = registry.resolve("churn", "challenger").card
    assert card["training"]["data"] == (
        f"job churn_daily partitions {DAY - dt.timedelta(days=3)} .. {DAY - dt.timedelta(days=2)} (2 day(s)) joined "
        f"to their outcomes; retrained on a drift breach of partition {DAY}")
    [(value,)] = query("SELECT value FROM xcom WHERE dag_id = 'demo_retrain' AND key = 'return_value'")
    registered = value if isinstance(value, dict) else json.loads(value)
    assert (registered["version"], registered["alias"], registered["breach"]["kind"]) == (2, "challenger", "drift")
    # the next night: the challenger scores in the champion's shadow; no drift, no breach event
    after = DAY + dt.timedelta(days=1)
    stack.cli("dags", "trigger", "churn_daily", "--conf", json.dumps({"partition_date": after.isoformat()}))
    stack.wait_for("the next scoring run", lambda: sorted(s for (s,) in query(
        "SELECT state FROM dag_run WHERE dag_id = 'churn_daily'")) == ["success", "success"], timeout=240)
    [next_run] = [r for (r,) in query("SELECT run_id FROM dag_run WHERE dag_id = 'churn_daily'") if r != breached_run]
    compared = _scoring("SELECT status, challenger_version, rows_compared FROM scoring_shadow_comparisons "
                        "WHERE run_id = :r", r=next_run)
    [ledger] = _scoring("SELECT rows_scored, breach FROM scoring_runs WHERE run_id = :r", r=next_run)
    assert compared == [{"status": "compared", "challenger_version": 2, "rows_compared": ledger["rows_scored"]}]
    assert ledger["breach"] is None
    states = dict(query(f"SELECT task_id, state FROM task_instance WHERE run_id = '{next_run}'"))
    assert states["announce_breach"] == "skipped", states
    assert len(query("SELECT e.id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                     "WHERE a.name = 'churn_daily.breach'")) == 1, "no breach: no second event"
    assert query("SELECT state FROM dag_run WHERE dag_id = 'demo_retrain'") == [("success",)]
    shutil.rmtree(airflow_home / "logs", ignore_errors=True)


def test_a_blocked_drift_breach_is_still_an_event(home: Path, migrated_home: Path) -> None:
    """drift.on_breach block: nothing is published and the run fails at the drift gate, but the breach
    happened: announce_breach (trigger rule all_done) emits it, with ``published`` false."""
    write_partition(home, n=1000, shift=1.0)
    write_job(home, drift={"on_breach": "block"})
    before = _last_event(migrated_home)
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "was NOT published" in text, text[-4000:]
    with run.engine(run.find_job("churn_test")).connect() as conn:
        [ledger] = conn.execute(sa.text("SELECT run_id, status, failed_stage FROM scoring_runs")).mappings().all()
    assert (ledger["status"], ledger["failed_stage"]) == ("failed", "drift_gate")
    run_id = ledger["run_id"]
    with sa.create_engine(f"sqlite:///{migrated_home / 'airflow.db'}").connect() as conn:
        states = dict(conn.execute(sa.text("SELECT task_id, state FROM task_instance WHERE run_id = :r AND "
                                           "dag_id = 'churn_test'"), {"r": run_id}).all())
    assert (states["persist"], states["finalize"], states["announce_persist"], states["announce_breach"]) == (
        "failed", "upstream_failed", "upstream_failed", "success"), states
    [(extra, dag_id, task_id, source_run)] = _events_after(migrated_home, "churn_test.breach", before)
    assert (dag_id, task_id, source_run) == ("churn_test", "announce_breach", run_id)
    assert extra["kind"] == "drift" and extra["partition_date"] == DAY.isoformat()
    assert extra["figures"]["policy"] == "block" and extra["figures"]["published"] is False
    assert "support_tickets_90d" in {d["feature"] for d in extra["figures"]["drifted"]}


def test_a_performance_breach_of_the_outcomes_dag_is_an_event(home: Path, migrated_home: Path) -> None:
    """churn_test_outcomes, run for the outcome date DAY + 1, evaluates partition DAY (horizon 1 day); a floor no
    model reaches makes a performance breach, emitted by announce_breach with the metric, its value and floor."""
    from pipeline import local
    from pipeline.config import load_job

    frame = demo_data.customers(DAY, n=1200)
    demo_data.write_partition(home / "data" / "churn", DAY, frame)
    outcomes = demo_data.outcomes_root(home / "data" / "churn")
    demo_data.write_outcomes(outcomes, DAY, frame, horizon_days=1)
    job = load_job(write_job(home, model={"name": "churn", "ref": "champion"},
                             outcomes={"path": str(outcomes), "label": "churned", "horizon_days": 1,
                                       "floors": {"roc_auc": 0.99}}))
    local.run_partition(job, DAY, run_id="scored")
    before = _last_event(migrated_home)
    out = dags_test(migrated_home, "churn_test_outcomes", (DAY + dt.timedelta(days=1)).isoformat())
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    [(extra, dag_id, task_id, _)] = _events_after(migrated_home, "churn_test.breach", before)
    assert (dag_id, task_id) == ("churn_test_outcomes", "announce_breach")
    assert (extra["kind"], extra["partition_date"], extra["versions"]) == ("performance", DAY.isoformat(),
                                                                          {"champion": 1})
    [breached] = extra["figures"]["breached"]
    with run.engine(job).connect() as conn:
        auc = conn.execute(sa.text("SELECT value FROM scoring_performance WHERE metric = 'roc_auc' AND role = "
                                   "'champion' AND partition_date = :d"), {"d": DAY}).scalar_one()
    assert breached == {"metric": "roc_auc", "value": pytest.approx(auc), "floor": 0.99, "role": "champion",
                        "model_version": 1, "rows_labelled": breached["rows_labelled"],
                        "outcome_date": (DAY + dt.timedelta(days=1)).isoformat()}
    assert breached["rows_labelled"] > 1000


def test_a_decisive_verdict_of_the_outcomes_dag_is_an_event(home: Path, migrated_home: Path,
                                                            challenger_models: Path) -> None:
    """Outcomes drawn from the challenger's own scores (so it is truly better, the log loss being a proper
    scoring rule): its verdict over the period turns "better", and announce_breach emits it (kind ab_verdict) with
    the difference and its interval."""
    import numpy as np
    import pandas as pd

    from pipeline import local
    from pipeline.config import load_job

    challenger = with_challenger(home, challenger_models)
    write_partition(home, n=N_VERDICT)
    outcomes = home / "outcomes"
    job = load_job(write_job(home, model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
                             outcomes={"path": str(outcomes), "label": "churned", "horizon_days": 1},
                             verdict={"confidence": 0.95, "min_rows": 500}))
    local.run_partition(job, DAY, run_id="scored")
    with run.engine(job).connect() as conn:
        shadow = pd.read_sql(sa.text("SELECT customer_id, score FROM churn_test_predictions_shadow WHERE "
                                     "partition_date = :d AND model_version = :v"), conn,
                             params={"d": DAY, "v": challenger})
    labels = (np.random.default_rng(5).uniform(size=len(shadow)) < shadow["score"].to_numpy()).astype(int)
    demo_data.write_partition(outcomes, DAY + dt.timedelta(days=1),
                              pd.DataFrame({"customer_id": shadow["customer_id"], "churned": labels}), files=1)
    before = _last_event(migrated_home)
    out = dags_test(migrated_home, "churn_test_outcomes", DAY.isoformat(),
                    conf=json.dumps({"partition_date": DAY.isoformat()}))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    [(extra, dag_id, task_id, _)] = _events_after(migrated_home, "churn_test.breach", before)
    assert (dag_id, task_id) == ("churn_test_outcomes", "announce_breach")
    assert (extra["kind"], extra["partition_date"], extra["versions"]) == (
        "ab_verdict", DAY.isoformat(), {"challenger": challenger, "champion": 1})
    figures = extra["figures"]
    assert (figures["verdict"], figures["scope"], figures["design"], figures["metric"]) == (
        "better", "period", "shadow", "log_loss")
    low, high = figures["interval"]
    assert low < figures["difference"] < high < 0 and figures["rows"] >= 500 and figures["confidence"] == 0.95
    assert figures["difference"] == pytest.approx(figures["value"] - figures["champion_value"])
    assert [b["kind"] for b in extra["breaches"]] == ["ab_verdict"], "no floor: no performance breach"
