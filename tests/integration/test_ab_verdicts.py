"""Realised performance per arm and the verdict (issue 28, point 2): the synthetic scenario of the issue.

Outcomes are drawn from a known true probability: the scores of one of the two versions (so that version is
calibrated exactly and, the log loss being a proper scoring rule, truly better than the other). The partitions
are scored through the real runner with the real registry (anchored cards), the other version in the shadow;
each day is evaluated as `scoring outcomes` does. The verdict is "not yet distinguishable" on the small first
day and turns "better" once enough rows are in; with the roles swapped it never says "better".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import local, outcomes, partitions, verdicts
from pipeline.config import load_job
from pipeline.store import engines
from tests.conftest import DAY, ROOT, with_challenger, write_job, write_partition
from tests.integration.test_reader_login import own_db  # noqa: F401 - the fixture, by name

HORIZON = 7
SIZES = (300, 1500, 1500, 1500, 1500, 1500)  # rows scored per day: a small first day, then enough


def _job(home: Path, min_rows: int = 1000, split: dict | None = None):
    model = {"name": "churn", "split": split} if split else {"name": "churn", "challengers": ["challenger"]}
    return load_job(write_job(
        home, model=model,
        outcomes={"path": str(home / "outcomes"), "label": "churned", "horizon_days": HORIZON},
        verdict={"confidence": 0.95, "min_rows": min_rows}))


def _table(sql: str, **params) -> pd.DataFrame:
    with engines.for_connection("scoring_db").connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


def _scores(day: dt.date) -> pd.DataFrame:
    """Each customer's score of v1 and v2 on partition ``day`` (the published one and the shadow one) and the
    version that published it."""
    both = pd.concat([_table(f"SELECT customer_id, score, model_version, {published} AS published FROM {table} "
                             "WHERE partition_date = :d", d=day)
                      for table, published in (("churn_test_predictions", 1), ("churn_test_predictions_shadow", 0))])
    wide = both.pivot(index="customer_id", columns="model_version", values="score")
    own = both[both["published"] == 1].set_index("customer_id")["model_version"]
    return pd.DataFrame({"customer_id": wide.index, "s1": wide[1].to_numpy(), "s2": wide[2].to_numpy(),
                         "published": own.reindex(wide.index).to_numpy()})


def _write_outcomes(home: Path, day: dt.date, truth: pd.Series, keys: pd.Series, seed: int) -> pd.DataFrame:
    """Labels drawn from the true probability ``truth``, dated ``day`` + HORIZON (the positive class is 1)."""
    rng = np.random.default_rng(seed)
    labels = pd.DataFrame({"customer_id": keys, "churned": (rng.uniform(size=len(truth)) < truth).astype(int)})
    folder = home / "outcomes" / f"date={day + dt.timedelta(days=HORIZON)}"
    folder.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(folder / "part-0000.parquet", index=False)
    return labels


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p))


def scored_days(home: Path, job: Any, truly_better: bool, sizes: tuple[int, ...] = SIZES
                ) -> Iterator[tuple[dt.date, pd.DataFrame, pd.DataFrame]]:
    """The scenario's days, one after the other: each partition scored by the real runner, then its outcomes
    drawn with v2's scores (``truly_better``) or v1's as the true probability; (day, both scores, labels)."""
    for i, n in enumerate(sizes):
        day = DAY + dt.timedelta(days=i)
        write_partition(home, day, n=n)
        assert local.run_partition(job, day, run_id=f"r{i}")["status"] == "success"
        scores = _scores(day)
        truth = scores["s2"] if truly_better else scores["s1"]
        yield day, scores, _write_outcomes(home, day, truth, scores["customer_id"], seed=100 + i)


def _scenario(home: Path, truly_better: bool, split: dict | None = None,
              sizes: tuple[int, ...] = SIZES) -> tuple[list[dict], list[np.ndarray]]:
    """Score and evaluate every day; the verdict rows of each day and the per-row loss differences (v2 - v1)."""
    job = _job(home, split=split)
    seen, differences = [], []
    for day, scores, labels in scored_days(home, job, truly_better, sizes):
        y = labels["churned"].to_numpy()
        differences.append(_log_loss(scores["s2"].to_numpy(), y) - _log_loss(scores["s1"].to_numpy(), y))
        performance, judged = outcomes.evaluate_all(job, day)
        assert performance
        assert len(judged) == 1, judged
        seen.append(judged[0])
    return seen, differences


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_truly_better_shadow_challenger_turns_better_after_enough_rows(
        any_db: str, home: Path, challenger_models: Path) -> None:
    from scipy import stats

    assert with_challenger(home, challenger_models) == 2
    seen, differences = _scenario(home, truly_better=True)
    first = seen[0]
    assert first["verdict"] == "not_yet" and first["rows"] == first["champion_rows"] < 1000
    assert first["reason"].startswith(f"v2 not yet distinguishable from v1 at {first['rows']:,} rows")
    assert first["reason"].endswith("1,000 labelled rows each are needed")
    assert seen[-1]["verdict"] == "better", [r["reason"] for r in seen]
    turned = next(i for i, r in enumerate(seen) if r["verdict"] == "better")
    assert all(r["verdict"] == "better" for r in seen[turned:]), [r["reason"] for r in seen]
    # the cumulative row is the paired t interval of every labelled row so far, computed here independently
    pooled = np.concatenate(differences)
    last = seen[-1]
    ci = stats.ttest_1samp(pooled, 0).confidence_interval(0.95)
    assert (last["design"], last["arm"], last["model_version"], last["champion_version"]) == (
        "shadow", "challenger", 2, 1)
    assert (last["rows"], last["days"], last["metric"]) == (len(pooled), len(SIZES), "log_loss")
    assert last["difference"] == pytest.approx(pooled.mean(), rel=1e-9)
    assert (last["difference_ci_low"], last["difference_ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-6)
    assert last["difference_ci_high"] < 0
    # the gate's interface: the newest cumulative row of the pair
    gate = verdicts.latest(engines.for_connection("scoring_db"), "churn_test", 2, 1)
    assert gate is not None and gate["verdict"] == "better" and gate["partition_date"] == last["partition_date"]
    assert {k: gate[k] for k in ("rows", "champion_rows", "difference", "confidence", "min_rows")} == pytest.approx(
        {k: last[k] for k in ("rows", "champion_rows", "difference", "confidence", "min_rows")})
    assert verdicts.latest(engines.for_connection("scoring_db"), "churn_test", 3, 1) is None
    # the day rows carry the day's own statistics; the analysts' view holds both scopes
    view = _table("SELECT * FROM churn_test_predictions_ab ORDER BY partition_date, scope")
    assert len(view) == 2 * len(SIZES) and "job_id" not in view.columns
    days = view[view["scope"] == "day"]
    assert days["rows"].tolist() == [len(d) for d in differences]
    assert days["difference"].to_numpy() == pytest.approx([d.mean() for d in differences], rel=1e-9)
    _shown_in_the_ui(home, seen)


def _shown_in_the_ui(home: Path, seen: list[dict]) -> None:
    """The partition view and the run report (the plugins' own functions, without the api-server) say each day's
    verdict: the first "not yet distinguishable at N rows", the last "better" with its difference and interval."""
    import sys

    sys.path.insert(0, str(ROOT / "plugins"))
    scoring_partitions = pytest.importorskip("scoring_partitions")
    scoring_reports = pytest.importorskip("scoring_reports")
    job, engine = partitions.open_job("churn_test")
    calendar = partitions.calendar(job, engine, dt.datetime.combine(DAY + dt.timedelta(days=10), dt.time(12),
                                                                    dt.UTC))
    by_day = {d.day: d.verdicts for d in calendar}
    assert [by_day[r["partition_date"]][0]["verdict"] for r in seen] == [r["verdict"] for r in seen]
    page = scoring_partitions.render(job, calendar, 35)
    last = seen[-1]
    line = (f"challenger (v2) better than v1 at {last['rows']:,} rows: log_loss {last['difference']:+.4g} "
            f"[{last['difference_ci_low']:+.4g}, {last['difference_ci_high']:+.4g}]")
    assert "id='verdicts-table'" in page and f"{line} (up to {last['partition_date']})" in page
    assert page.count("data-verdict='not_yet'") >= 1
    first = scoring_reports.run_report("churn_test", "r0").body.decode()
    assert f"challenger (v2) not yet distinguishable from v1 at {seen[0]['rows']:,} rows" in first
    assert "Versions on realised outcomes up to partition" in first
    final = scoring_reports.run_report("churn_test", f"r{len(SIZES) - 1}").body.decode()
    assert line in final and final.index("id='verdicts'") < final.index("</body>")


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_truly_worse_challenger_is_never_better_and_a_day_evaluated_again_changes_nothing(
        any_db: str, home: Path, challenger_models: Path) -> None:
    with_challenger(home, challenger_models)
    seen, _ = _scenario(home, truly_better=False)
    assert all(r["verdict"] != "better" for r in seen), [r["reason"] for r in seen]
    assert seen[-1]["verdict"] == "worse" and seen[-1]["difference_ci_low"] > 0
    assert seen[-1]["reason"].startswith("v2 worse than v1 at ")
    before = _table("SELECT scope, partition_date, verdict, rows, difference FROM scoring_ab_results "
                    "ORDER BY scope, partition_date")
    again = outcomes.evaluate_all(_job(home), DAY + dt.timedelta(days=2))[1]  # a day in the middle, again
    assert again[0]["days"] == 3
    after = _table("SELECT scope, partition_date, verdict, rows, difference FROM scoring_ab_results "
                   "ORDER BY scope, partition_date")
    pd.testing.assert_frame_equal(before, after)
    assert verdicts.latest(engines.for_connection("scoring_db"), "churn_test", 2, 1)["verdict"] == "worse"


def test_a_job_without_challengers_or_split_records_no_verdict(home: Path) -> None:
    job = load_job(write_job(home, outcomes={"path": str(home / "outcomes"), "label": "churned",
                                             "horizon_days": HORIZON}))
    write_partition(home, DAY, n=300)
    local.run_partition(job, DAY, run_id="solo")
    scores = _table("SELECT customer_id, score FROM churn_test_predictions")
    _write_outcomes(home, DAY, scores["score"], scores["customer_id"], seed=1)
    performance, judged = outcomes.evaluate_all(job, DAY)
    assert performance and judged == []
    assert [(r["metric"], r["value"]) for r in outcomes.evaluate(job, DAY)] == [
        (r["metric"], r["value"]) for r in performance]  # evaluate returns what it returned before
    assert _table("SELECT COUNT(*) AS n FROM scoring_ab_results")["n"].iloc[0] == 0


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_a_truly_better_ab_arm_is_judged_on_its_own_rows_and_turns_better(
        any_db: str, home: Path, challenger_models: Path) -> None:
    """v2 takes 50% of the traffic (model.split): each version is judged on the rows it published (unpaired,
    Welch), in the run's assignment period."""
    from scipy import stats

    with_challenger(home, challenger_models)
    sizes = (300, 3000, 3000, 3000, 3000)
    seen, _ = _scenario(home, truly_better=True, split={"challenger": 50}, sizes=sizes)
    assert [r["design"] for r in seen] == ["ab"] * len(sizes) and {r["arm"] for r in seen} == {"challenger"}
    assert {r["period"] for r in seen} == {1}
    assert seen[0]["verdict"] == "not_yet" and seen[0]["rows"] < 1000
    assert seen[-1]["verdict"] == "better", [r["reason"] for r in seen]
    assert all(r["verdict"] != "worse" for r in seen)
    # independently: each version's log loss on the rows it published, every day so far, and Welch's interval
    frames = []
    for i in range(len(sizes)):
        day = DAY + dt.timedelta(days=i)
        labels = pd.read_parquet(home / "outcomes" / f"date={day + dt.timedelta(days=HORIZON)}")
        frames.append(_scores(day).merge(labels, on="customer_id"))
    rows = pd.concat(frames)
    y = rows["churned"].to_numpy()
    mine = np.where(rows["published"] == 2, _log_loss(rows["s2"].to_numpy(), y), np.nan)
    theirs = np.where(rows["published"] == 1, _log_loss(rows["s1"].to_numpy(), y), np.nan)
    mine, theirs = mine[~np.isnan(mine)], theirs[~np.isnan(theirs)]
    test = stats.ttest_ind(mine, theirs, equal_var=False)
    ci = test.confidence_interval(0.95)
    last = seen[-1]
    assert (last["rows"], last["champion_rows"]) == (len(mine), len(theirs))
    assert 0.45 < len(mine) / len(rows) < 0.55  # the 50% split
    assert last["difference"] == pytest.approx(mine.mean() - theirs.mean(), rel=1e-9)
    assert (last["difference_ci_low"], last["difference_ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-6)
    assert verdicts.latest(engines.for_connection("scoring_db"), "churn_test", 2, 1)["design"] == "ab"
    # scoring_performance per arm: each version's log loss on the rows it published (role arm for v2), and v2's
    # shadow scores of the champion's rows as a challenger; the champion's shadow scores are not a role of their own
    day = DAY + dt.timedelta(days=len(sizes) - 1)
    performance = _table("SELECT role, model_version, value, rows_labelled FROM scoring_performance WHERE "
                         "partition_date = :d AND metric = 'log_loss' ORDER BY role", d=day)
    assert [(r.role, r.model_version) for r in performance.itertuples()] == [("arm", 2), ("challenger", 2),
                                                                               ("champion", 1)]
    today = frames[-1]
    y = today["churned"].to_numpy()
    arm = performance.set_index("role").loc["arm"]
    assert arm["rows_labelled"] == (today["published"] == 2).sum()
    assert arm["value"] == pytest.approx(_log_loss(today["s2"].to_numpy(), y)[today["published"] == 2].mean())


@pytest.mark.postgres
def test_the_analysts_view_is_in_the_jobs_schema_and_the_reader_login_reads_it(
        home: Path, challenger_models: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, a pipeline role that is not a superuser, the job publishing into an analysts' schema: the view
    <table>_ab is made there when verdicts are recorded, and a login of the reader role reads it, before and after
    an evaluation makes the view anew; it cannot read scoring_ab_results itself."""
    import psycopg

    from pipeline.store import grants

    admin_url, pipe_url, names = request.getfixturevalue("own_db")
    analytics = names["analytics"]
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", pipe_url)
    engines.engine_for.cache_clear()
    with_challenger(home, challenger_models)
    doc = {"name": "churn", "challengers": ["challenger"]}
    job = load_job(write_job(home, model=doc, outcomes={"path": str(home / "outcomes"), "label": "churned",
                                                        "horizon_days": HORIZON},
                             output={"table": "churn_test_predictions", "connection": "scoring_db",
                                     "schema": analytics}))
    write_partition(home, DAY, n=600)
    assert local.run_partition(job, DAY, run_id="r0")["status"] == "success"
    engine = engines.for_connection("scoring_db")
    grants.grant_reader(engine, analytics, names["reader"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'GRANT "{names["reader"]}" TO "{names["alice"]}"')
    with engine.connect() as conn:
        keys = pd.read_sql(sa.text(f'SELECT customer_id, score FROM "{analytics}".churn_test_predictions'), conn)
    _write_outcomes(home, DAY, keys["score"], keys["customer_id"], seed=5)
    alice_url = f"{admin_url.replace('postgres@', names['alice'] + '@')}?options=-csearch_path%3D{analytics}"
    for _ in range(2):  # the second evaluation drops and makes the view again
        [row] = outcomes.evaluate_all(job, DAY)[1]
        with psycopg.connect(alice_url, autocommit=True) as alice:
            seen = alice.execute("SELECT scope, arm, model_version, verdict, rows FROM churn_test_predictions_ab "
                                 "ORDER BY scope").fetchall()
            assert seen == [("day", "challenger", 2, row["verdict"], row["rows"]),
                            ("period", "challenger", 2, row["verdict"], row["rows"])]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                alice.execute("SELECT * FROM public.scoring_ab_results")
