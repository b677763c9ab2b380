"""The promotion gate (issue 28, point 4) against a real registry with anchors in a real database (SQLite and
PostgreSQL): refused while the realised comparison is missing, too small or not distinguishable, promoted once it
says 'better'; every promotion, rollback and refusal is a row of scoring_model_audit with who, when, why and the
figures; a rollback restores the previous champion; the analysts' read-only login sees the audit (PostgreSQL); the
`<job>_promote` DAG does the same under `airflow dags test`; and the issue's synthetic scenario through the real
runner and evaluation: a truly better challenger is promoted on the day its verdict turns 'better', a truly worse
one never."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from pipeline import outcomes, promotion
from pipeline.errors import ConfigError
from pipeline.registry import Registry
from pipeline.store import engines, grants, job_tables, operational, sqlfiles
from tests.conftest import (
    DAY,
    REGISTRY_ENV,
    scoring_cli,
    with_challenger,
    write_job,
)
from tests.e2e.conftest import dags_test, migrated_home  # noqa: F401 - the fixture
from tests.integration.test_ab_verdicts import SIZES, _job, scored_days
from tests.integration.test_reader_login import own_db  # noqa: F401 - the fixture

JOB = "churn_ab"


def scoring(*args: str) -> Any:
    return scoring_cli("models", *args)


def verdict_row(engine: sa.engine.Engine, day: dt.date, verdict: str, rows: int, difference: float,
                half_width: float, champion: int = 1, version: int = 2) -> None:
    """One cumulative verdict row of ``version`` against ``champion``, written with pipeline.verdicts' own SQL."""
    params = {"job_id": JOB, "partition_date": day, "scope": "period", "design": "shadow", "arm": "challenger",
              "model_name": "churn", "model_version": version, "champion_version": champion, "period": None,
              "first_partition": day - dt.timedelta(days=6), "days": 7, "metric": "log_loss", "confidence": 0.95,
              "min_rows": 1000, "rows": rows, "champion_rows": rows, "value": 0.45 + difference,
              "value_ci_low": None, "value_ci_high": None, "champion_value": 0.45, "champion_ci_low": None,
              "champion_ci_high": None, "difference": difference, "difference_ci_low": difference - half_width,
              "difference_ci_high": difference + half_width, "p_value": 0.01, "verdict": verdict,
              "reason": f"v{version} {verdict}", "loss_sum": 1.0, "loss_sumsq": 1.0, "champion_loss_sum": 1.0,
              "champion_loss_sumsq": 1.0, "diff_sum": None, "diff_sumsq": None, "outcome_date": None,
              "computed_at": dt.datetime(2026, 11, 30, 3, 0)}
    with engine.begin() as conn:
        conn.execute(sa.text(sqlfiles.plain("store/verdicts.sql", "insert")), params)


@pytest.fixture
def gated(any_db: str, home: Path, challenger_models: Path, monkeypatch: pytest.MonkeyPatch) -> sa.engine.Engine:
    """churn v1 champion, v2 challenger, anchored in a registry database that is the job's own (SQLite or
    PostgreSQL); a job scoring the challenger in the shadow; the job's database migrated. Its engine."""
    with_challenger(home, challenger_models)
    monkeypatch.setenv(REGISTRY_ENV, any_db)
    engines.engine_for.cache_clear()
    adopted = Registry().anchor("churn")
    assert [a.version for a in adopted] == [1, 2]
    write_job(home, JOB, model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
              verdict={"confidence": 0.95, "min_rows": 1000})
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    return engine


def audit(engine: sa.engine.Engine) -> list[dict[str, Any]]:
    return list(reversed(promotion.history(engine, "churn")))  # oldest first


def test_refused_until_better_then_promoted_and_rolled_back_every_step_audited(gated: sa.engine.Engine) -> None:
    engine, me = gated, getpass.getuser()
    ask = ("promote", "churn", "--to-challenger", "challenger", "--if-better", "--reason", "v2 looked better")

    nothing = scoring(*ask)
    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr
    assert "no realised comparison of v2 against the current champion v1" in nothing.stderr
    assert f"scoring outcomes {JOB}" in nothing.stderr

    verdict_row(engine, dt.date(2026, 11, 20), "not_yet", rows=600, difference=-0.01, half_width=0.02)
    few = scoring(*ask)
    assert few.returncode == 1 and "too few labelled rows to decide: 600 for v2 and 600 for v1" in few.stderr

    verdict_row(engine, dt.date(2026, 11, 22), "not_yet", rows=3000, difference=-0.005, half_width=0.01)
    close = scoring(*ask)
    assert close.returncode == 1 and "not yet distinguishable from the champion v1 at 3000/3000 rows" in close.stderr
    assert Registry().aliases("churn")["champion"] == 1, "nothing moved"

    verdict_row(engine, dt.date(2026, 11, 25), "better", rows=6000, difference=-0.03, half_width=0.01)
    done = scoring(*ask)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "churn: champion -> v2"
    assert "is better than the champion v1: log_loss 0.42 vs champion 0.45" in done.stdout
    assert Registry().aliases("churn")["champion"] == 2

    back = scoring("rollback", "churn", "--reason", "complaints from the CRM team")
    assert back.returncode == 0 and "rolled back to v1" in back.stdout
    assert Registry().aliases("churn")["champion"] == 1

    rows = audit(engine)
    assert [(r["event"], r["gate"], r["from_version"], r["to_version"]) for r in rows] == [
        ("refused", "if_better", 1, 2), ("refused", "if_better", 1, 2), ("refused", "if_better", 1, 2),
        ("promote", "if_better", 1, 2), ("rollback", "none", 2, 1)]
    assert all(r["requested_by"] == me and r["source"] == "cli" and r["alias"] == "champion" for r in rows)
    assert [r["reason"] for r in rows] == ["v2 looked better"] * 4 + ["complaints from the CRM team"]
    assert [r["job_id"] for r in rows] == [JOB] * 4 + [None]
    assert rows[0]["figures"] is None, "no verdict: no figures"
    assert rows[1]["figures"]["rows"] == 600 and rows[1]["figures"]["verdict"] == "not_yet"
    assert rows[3]["figures"]["verdict"] == "better" and rows[3]["figures"]["partition_date"] == "2026-11-25"
    assert rows[3]["figures"]["difference_ci_high"] == pytest.approx(-0.02)
    assert "too few labelled rows" in rows[1]["decision"] and "is better than" in rows[3]["decision"]
    ats = [r["at"] for r in rows]
    assert ats == sorted(ats) and all(isinstance(a, dt.datetime) for a in ats)
    history = Registry().history("churn")
    assert [(h["event"], h["from"], h["to"], h["by"]) for h in history[-2:]] == [("promote", 1, 2, me),
                                                                                  ("rollback", 2, 1, me)]

    listing = scoring("audit", "churn")
    assert listing.returncode == 0 and len([ln for ln in listing.stdout.splitlines() if "\tchurn\t" in ln]) == 5
    assert "\tchampion\trollback\tv2 -> v1\tby " in listing.stdout
    as_json = json.loads(scoring("audit", "churn", "--json").stdout)
    assert as_json[0]["event"] == "rollback" and as_json[1]["figures"]["verdict"] == "better"


def test_a_worse_challenger_is_never_promoted_and_a_stale_verdict_does_not_count(gated: sa.engine.Engine) -> None:
    engine = gated
    verdict_row(engine, dt.date(2026, 11, 25), "worse", rows=8000, difference=0.04, half_width=0.01)
    worse = scoring("promote", "churn", "--to-challenger", "2", "--if-better")
    assert worse.returncode == 1 and "churn v2 is WORSE than the champion v1" in worse.stderr
    assert "difference 0.04 [0.03, 0.05]" in worse.stderr
    # a verdict of v2 against v3, when v1 is the champion: not this pair's
    verdict_row(engine, dt.date(2026, 11, 26), "better", rows=8000, difference=-0.04, half_width=0.01, champion=3)
    stale = scoring("promote", "churn", "--to-challenger", "challenger", "--if-better")
    assert stale.returncode == 1 and "WORSE" in stale.stderr, "the newest verdict of the CURRENT pair decides"
    assert Registry().aliases("churn")["champion"] == 1
    assert [r["event"] for r in audit(engine)] == ["refused", "refused"]
    # an override is still possible, and audited as one
    override = scoring("promote", "churn", "2", "--reason", "the business decided")
    assert override.returncode == 0 and override.stdout.strip() == "churn: champion -> v2"
    last = audit(engine)[-1]
    assert (last["event"], last["gate"], last["reason"], last["job_id"]) == ("promote", "none", "the business decided",
                                                                             None)
    assert "override without the gate" in last["decision"]


def test_the_job_is_named_when_not_exactly_one_judges_the_challenger(gated: sa.engine.Engine, home: Path) -> None:
    write_job(home, "churn_other", model={"name": "churn", "ref": "champion", "challengers": ["2"]})
    both = scoring("promote", "churn", "--to-challenger", "challenger", "--if-better")
    assert both.returncode == 2 and "2 jobs score model churn v2 (challenger) beside the champion" in both.stderr
    assert "churn_ab, churn_other" in both.stderr and "--job JOB" in both.stderr
    named = scoring("promote", "churn", "--to-challenger", "challenger", "--if-better", "--job", "churn_other")
    assert named.returncode == 1 and "job churn_other has no realised comparison" in named.stderr
    for path in home.glob("jobs/*.yaml"):
        path.unlink()
    none = scoring("promote", "churn", "--to-challenger", "challenger", "--if-better")
    assert none.returncode == 2 and "no job in" in none.stderr and "Jobs of churn: none" in none.stderr
    assert [r["job_id"] for r in audit(gated)] == ["churn_other"], "a usage error is not a gate's refusal"


def test_an_audit_row_that_cannot_be_written_leaves_the_alias_where_it_was(gated: sa.engine.Engine) -> None:
    registry = Registry()
    before = registry.history("churn")
    with engines.begin(registry.anchors.engine) as conn:  # the audit table gone (a broken database)
        conn.exec_driver_sql("DROP TABLE scoring_model_audit")
    with pytest.raises(sa.exc.DBAPIError):
        promotion.promote(registry, "churn", "2", if_better=False, reason="try")
    assert registry.aliases("churn")["champion"] == 1
    assert registry.history("churn") == before, "no history entry either"


def test_a_champion_moved_since_the_decision_is_refused_under_the_lock(gated: sa.engine.Engine) -> None:
    registry = Registry()
    with pytest.raises(ConfigError, match="points at v1 now, not at v2 as when the promotion was decided"):
        registry.promote("churn", 2, expect=2)
    assert registry.aliases("churn")["champion"] == 1


@pytest.mark.slow
def test_the_promote_dag_refuses_then_promotes_as_the_user_who_triggered_it(
        home: Path, challenger_models: Path, migrated_home: Path,  # noqa: F811 - the fixture
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`airflow dags test <job>_promote`: the same gate from the DAG's form, audited with source dag and the run id."""
    with_challenger(home, challenger_models)
    monkeypatch.setenv(REGISTRY_ENV, os.environ["AIRFLOW_CONN_SCORING_DB"])
    engines.engine_for.cache_clear()
    Registry().anchor("churn")
    write_job(home, JOB, model={"name": "churn", "ref": "champion", "challengers": ["challenger"]})
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    conf = json.dumps({"challenger": "challenger", "if_better": True, "reason": "asked from the form"})
    refused = dags_test(migrated_home, f"{JOB}_promote", "2026-12-01", conf)
    text = refused.stdout + refused.stderr
    assert "no realised comparison of v2 against the current champion v1" in text, text[-4000:]
    assert text.count("promotion gate REFUSED") == 1, "a refusal is not retried"
    assert "PromotionRefused: churn v2" in text, "the task fails with the gate's words"
    assert Registry().aliases("churn")["champion"] == 1
    verdict_row(engine, dt.date(2026, 11, 25), "better", rows=6000, difference=-0.03, half_width=0.01)
    done = dags_test(migrated_home, f"{JOB}_promote", "2026-12-02", conf)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert Registry().aliases("churn")["champion"] == 2
    rows = audit(engine)
    assert [(r["event"], r["source"], r["reason"], r["job_id"]) for r in rows] == [
        ("refused", "dag", "asked from the form", JOB), ("promote", "dag", "asked from the form", JOB)]
    assert all(r["requested_by"] == "dag_test" and r["run_id"].startswith("manual__") for r in rows), rows
    assert rows[1]["figures"]["verdict"] == "better"


@pytest.mark.postgres
def test_the_analysts_reader_login_sees_the_audit(own_db: tuple[str, str, dict[str, str]], home: Path,  # noqa: F811
                                                  challenger_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    admin_url, pipe_url, names = own_db
    analytics = names["analytics"]
    with_challenger(home, challenger_models)
    monkeypatch.setenv(REGISTRY_ENV, pipe_url)  # the registry database is the jobs' database
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", pipe_url)
    engines.engine_for.cache_clear()
    engine = engines.engine_for(engines.url_from_uri(pipe_url))
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, f"{JOB}_predictions", "customer_id", "int", schema=analytics, job_id=JOB)
    grants.grant_reader(engine, analytics, names["reader"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'GRANT "{names["reader"]}" TO "{names["alice"]}"')
    registry = Registry()
    registry.anchor("churn")
    write_job(home, JOB, model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
              output={"table": f"{JOB}_predictions", "connection": "scoring_db", "schema": analytics})
    refused = promotion.promote(registry, "churn", "challenger", reason="first try", by="carol", source="dag",
                                run_id="manual__1")
    assert refused.event == "refused"
    verdict_row(engine, dt.date(2026, 11, 25), "better", rows=6000, difference=-0.03, half_width=0.01)
    done = promotion.promote(registry, "churn", "challenger", reason="better now", by="carol", source="dag")
    assert done.event == "promote" and registry.aliases("churn")["champion"] == 2
    with engine.begin() as conn:  # the job ran with churn: its rollbacks (no job id) are the schema's too
        conn.exec_driver_sql(
            "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, status, started_at, mode, dry_run, "
            "model_name, model_version) VALUES (%(j)s, 'r1', 1, '2026-11-25', 'success', now(), 'persist', false, "
            "'churn', 2)", {"j": JOB})
    promotion.rollback(registry, "churn", reason="rolled back by hand", by="dave")
    shutil.copytree(home / "models" / "churn", home / "models" / "elsewhere")  # a model no job here scores
    assert promotion.promote(registry, "elsewhere", "2", if_better=False, by="eve").event == "promote"
    assert len(promotion.history(engine)) == 4, "the audit holds it; the analysts' view does not show it"
    alice_url = f"{admin_url.replace('postgres@', names['alice'] + '@')}?options=-csearch_path%3D{analytics}"
    with psycopg.connect(alice_url, autocommit=True) as alice:
        seen = alice.execute("SELECT event, from_version, to_version, requested_by, reason, source, run_id, job_id, "
                             "figures->>'verdict', at IS NOT NULL FROM scoring_promotion_audit ORDER BY at").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute("SELECT count(*) FROM public.scoring_model_audit")
    assert seen == [("refused", 1, 2, "carol", "first try", "dag", "manual__1", JOB, None, True),
                    ("promote", 1, 2, "carol", "better now", "dag", None, JOB, "better", True),
                    ("rollback", 2, 1, "dave", "rolled back by hand", "cli", None, None, None, True)]


@pytest.mark.slow
@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("truly_better", [True, False])
def test_the_issues_scenario_the_gate_promotes_a_truly_better_challenger_only_once_judged_better(
        any_db: str, home: Path, challenger_models: Path, monkeypatch: pytest.MonkeyPatch, truly_better: bool) -> None:
    """The partitions scored through the real runner with v2 in the shadow, outcomes drawn from the better
    version's scores, each day evaluated as `scoring outcomes` does (tests.integration.test_ab_verdicts); after each
    day the gate is asked: refused while not distinguishable, promoted on the day the verdict turns 'better';
    a truly worse v2 is never promoted."""
    with_challenger(home, challenger_models)
    monkeypatch.setenv(REGISTRY_ENV, any_db)
    engines.engine_for.cache_clear()
    Registry().anchor("churn")
    job = _job(home)
    answers, verdicts_seen = [], []
    for day, _, _ in scored_days(home, job, truly_better):
        verdicts_seen.append(outcomes.evaluate_all(job, day)[1][0]["verdict"])
        answer = scoring("promote", "churn", "--to-challenger", "challenger", "--if-better")
        answers.append(answer.returncode)
        if answer.returncode == 0:
            break
        assert answer.returncode == 1 and "Traceback" not in answer.stderr
    rows = audit(engines.for_connection("scoring_db"))
    if truly_better:
        assert verdicts_seen[0] == "not_yet" and verdicts_seen[-1] == "better", verdicts_seen
        assert answers == [1] * (len(answers) - 1) + [0] and Registry().aliases("churn")["champion"] == 2
        assert rows[-1]["event"] == "promote" and rows[-1]["figures"]["verdict"] == "better"
        assert rows[-1]["figures"]["rows"] >= 1000 and rows[-1]["figures"]["difference_ci_high"] < 0
    else:
        assert "better" not in verdicts_seen and answers == [1] * len(SIZES), verdicts_seen
        assert Registry().aliases("churn")["champion"] == 1
        assert "is WORSE than the champion v1" in rows[-1]["decision"]
    assert [r["event"] for r in rows[:-1]] == ["refused"] * (len(rows) - 1)


def test_a_registration_that_points_an_alias_is_in_the_audit_too(gated: sa.engine.Engine) -> None:
    """`register(alias=...)` (scoring models register --alias, the demo's training, the retraining on a breach)
    moves an alias like a promote: its row is in the audit, in the transaction of the move."""
    from pipeline.demo.train import train_churn

    before = len(audit(gated))
    mv = train_churn(Registry(), end=DAY - dt.timedelta(days=3), days=1, n=2000, alias="challenger")
    rows = audit(gated)
    assert len(rows) == before + 1
    row = rows[-1]
    assert (row["event"], row["gate"], row["source"], row["alias"]) == ("promote", "none", "register", "challenger")
    assert (row["from_version"], row["to_version"], row["requested_by"]) == (2, mv.version, getpass.getuser())
    assert "registered as challenger" in row["decision"] and "no realised comparison" in row["decision"]
