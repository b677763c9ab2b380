"""The verdict kernel: per-row losses, intervals that cover, days that add up, paired vs unpaired, thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline.kernels import verdict as v


def test_losses_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = rng.uniform(0.001, 0.999, 500)
    labels = np.array(["yes" if t else "no" for t in y], dtype=object)
    assert v.losses("log_loss", labels, score=p, positive="yes").mean() == pytest.approx(
        skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    assert v.losses("brier", labels, score=p, positive="yes").mean() == pytest.approx(skm.brier_score_loss(y, p))
    prediction = np.where(p > 0.5, "yes", "no")
    assert v.losses("error_rate", labels, prediction=prediction).mean() == pytest.approx(
        1 - skm.accuracy_score(labels.astype(str), prediction))
    truth, value = rng.normal(size=300), rng.normal(size=300)
    assert v.losses("squared_error", truth.astype(str), score=value).mean() == pytest.approx(
        skm.mean_squared_error(truth, value))
    assert v.losses("absolute_error", truth, score=value).mean() == pytest.approx(
        skm.mean_absolute_error(truth, value))


def test_a_certain_wrong_probability_is_clipped_not_infinite() -> None:
    out = v.losses("log_loss", np.array(["1", "0"], dtype=object), score=[0.0, 1.0], positive="1")
    assert np.isfinite(out).all() and out[0] == pytest.approx(-math.log(v.EPSILON))


@pytest.mark.parametrize(("task", "metric", "expected"), [
    ("binary_classification", None, "log_loss"), ("multiclass_classification", None, "error_rate"),
    ("regression", None, "squared_error"), ("binary_classification", "brier", "brier"),
    ("multiclass_classification", "error_rate", "error_rate"), ("regression", "absolute_error", "absolute_error")])
def test_metric_for_a_task(task: str, metric: str | None, expected: str) -> None:
    assert v.metric_for(task, metric) == expected


def test_a_metric_that_does_not_fit_the_task_is_refused_with_the_ones_that_do() -> None:
    with pytest.raises(ValueError, match="log_loss does not fit a regression model: use one of squared_error"):
        v.metric_for("regression", "log_loss")
    with pytest.raises(ValueError, match="brier does not fit a multiclass classification model: use one of error_rate"):
        v.metric_for("multiclass_classification", "brier")


def test_combined_days_equal_the_pooled_computation() -> None:
    rng = np.random.default_rng(2)
    days_a = [rng.exponential(0.5, n) for n in (40, 700, 3)]
    days_b = [rng.exponential(0.6, n) for n in (55, 650, 9)]
    combined = v.judge(sum((v.Moments.of(d) for d in days_a), v.Moments()),
                       sum((v.Moments.of(d) for d in days_b), v.Moments()), None, 0.95, 100)
    pooled = v.judge(v.Moments.of(np.concatenate(days_a)), v.Moments.of(np.concatenate(days_b)), None, 0.95, 100)
    for key, value in pooled.items():
        assert combined[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    a, b = np.concatenate(days_a), np.concatenate(days_b)
    assert combined["difference"] == pytest.approx(a.mean() - b.mean())
    assert v.Moments.of(a).variance == pytest.approx(a.var(ddof=1))


def test_welch_interval_matches_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 1.0, 80), rng.normal(1.3, 2.0, 30)
    d, low, high, p = v.difference(v.Moments.of(a), v.Moments.of(b), None, 0.9)
    test = stats.ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(0.9)
    assert (d, low, high, p) == pytest.approx((a.mean() - b.mean(), ci.low, ci.high, test.pvalue), rel=1e-9)


def test_paired_interval_matches_scipy_and_is_narrower_than_unpaired() -> None:
    from scipy import stats

    rng = np.random.default_rng(4)
    row_effect = rng.exponential(1.0, 2000)  # most of each row's loss is the row itself, shared by both versions
    champion = row_effect + rng.normal(0, 0.05, 2000)
    other = row_effect - 0.01 + rng.normal(0, 0.05, 2000)
    paired = v.difference(v.Moments.of(other), v.Moments.of(champion), v.Moments.of(other - champion), 0.95)
    ci = stats.ttest_rel(other, champion).confidence_interval(0.95)
    assert paired[1:3] == pytest.approx((ci.low, ci.high), rel=1e-9)
    unpaired = v.difference(v.Moments.of(other), v.Moments.of(champion), None, 0.95)
    assert paired[0] == pytest.approx(unpaired[0])
    assert (paired[2] - paired[1]) * 10 < unpaired[2] - unpaired[1]
    assert v.judge(v.Moments.of(other), v.Moments.of(champion), v.Moments.of(other - champion), 0.95,
                   1000)["verdict"] == "better"
    assert v.judge(v.Moments.of(other), v.Moments.of(champion), None, 0.95, 1000)["verdict"] == "not_yet"


@pytest.mark.parametrize("paired", [False, True])
def test_the_95_percent_interval_covers_the_true_difference_about_95_percent_of_the_time(paired: bool) -> None:
    rng = np.random.default_rng(5 + paired)
    truth = 0.1 - 0.25  # Bernoulli(0.1) error rate minus Bernoulli(0.25)
    covered = 0
    for _ in range(400):
        if paired:
            u = rng.uniform(size=300)  # the same rows: errors correlated through u
            a, b = (u < 0.1).astype(float), (u < 0.25).astype(float) * (rng.uniform(size=300) < 0.9)
            true = 0.1 - 0.25 * 0.9
            _, low, high, _ = v.difference(v.Moments.of(a), v.Moments.of(b), v.Moments.of(a - b), 0.95)
        else:
            a, b = (rng.uniform(size=250) < 0.1).astype(float), (rng.uniform(size=400) < 0.25).astype(float)
            true = truth
            _, low, high, _ = v.difference(v.Moments.of(a), v.Moments.of(b), None, 0.95)
        covered += low <= true <= high
    assert 0.92 <= covered / 400 <= 0.98, covered  # binomial sd at 400 draws: 1.1 points


def test_own_interval_of_a_mean_covers_the_truth() -> None:
    rng = np.random.default_rng(7)
    covered = sum(low <= 0.5 <= high for _, low, high in (v.interval(v.Moments.of(rng.exponential(0.5, 60)), 0.9)
                                                         for _ in range(400)))
    assert 0.86 <= covered / 400 <= 0.94, covered


def _m(mean: float, n: int, sd: float = 1.0) -> v.Moments:
    """Moments of n values with exactly this mean and sample standard deviation."""
    return v.Moments(n, mean * n, sd * sd * (n - 1) + mean * mean * n)


@pytest.mark.parametrize(("other", "champion", "min_rows", "expected"), [
    (_m(0.40, 5000), _m(0.50, 5000), 1000, "better"),   # interval wholly below 0, enough rows
    (_m(0.60, 5000), _m(0.50, 5000), 1000, "worse"),    # wholly above 0
    (_m(0.40, 5000), _m(0.50, 999), 1000, "not_yet"),   # below 0, but the champion has too few rows
    (_m(0.40, 999), _m(0.50, 5000), 1000, "not_yet"),   # the other version has too few rows
    (_m(0.49, 5000), _m(0.50, 5000), 1000, "not_yet"),  # the interval straddles 0
    (_m(0.40, 5000), _m(0.50, 5000), 5000, "better"),   # exactly min_rows is enough
    (_m(0.40, 1), _m(0.50, 1), 1, "not_yet"),           # one row each: no interval
])
def test_thresholds(other: v.Moments, champion: v.Moments, min_rows: int, expected: str) -> None:
    assert v.judge(other, champion, None, 0.95, min_rows)["verdict"] == expected


def test_sentences() -> None:
    better = v.judge(_m(0.40, 5000), _m(0.50, 5000), None, 0.95, 1000)
    assert v.sentence(better, "log_loss", 2, 1, 0.95, 1000).startswith(
        "v2 better than v1 at 5,000 rows: log_loss difference -0.1 [")
    early = v.judge(_m(0.40, 300), _m(0.50, 280), None, 0.95, 1000)
    assert v.sentence(early, "brier", 2, 1, 0.95, 1000).startswith(
        "v2 not yet distinguishable from v1 at 300 + 280 rows: brier difference -0.1")
    assert v.sentence(early, "brier", 2, 1, 0.95, 1000).endswith("; 1,000 labelled rows each are needed")
    assert "worse than v1" in v.sentence(v.judge(_m(0.6, 5000), _m(0.5, 5000), None, 0.95, 10), "x", 2, 1, .95, 10)
    assert "no brier to compare yet" in v.sentence(v.judge(v.Moments(), v.Moments(), None, 0.95, 1), "brier", 2, 1,
                                                   0.95, 1)


def _day_row(day: int, design: str, period: int | None, values: np.ndarray, champion: np.ndarray,
             metric: str = "log_loss") -> dict:
    """A scope 'day' row of scoring_ab_results as pipeline.verdicts writes it (its sufficient statistics)."""
    import datetime as dt

    mine, theirs = v.Moments.of(values), v.Moments.of(champion)
    paired = v.Moments.of(values - champion) if design == "shadow" else None
    return {"job_id": "j", "partition_date": dt.date(2026, 11, day), "design": design, "arm": "challenger",
            "model_name": "m", "model_version": 2, "champion_version": 1, "period": period, "metric": metric,
            "outcome_date": None, "confidence": 0.95, "min_rows": 10, "rows": mine.n, "champion_rows": theirs.n,
            "loss_sum": mine.total, "loss_sumsq": mine.total_sq, "champion_loss_sum": theirs.total,
            "champion_loss_sumsq": theirs.total_sq, "diff_sum": paired.total if paired else None,
            "diff_sumsq": paired.total_sq if paired else None}


def test_cumulative_rows_start_again_with_a_new_period_and_add_every_day_of_a_shadow_pair() -> None:
    import datetime as dt

    from pipeline import verdicts

    rng = np.random.default_rng(9)
    days = [(rng.exponential(0.4, n), rng.exponential(0.5, n + 7)) for n in (50, 60, 70, 80)]
    rows = [_day_row(i + 1, "ab", 1 if i < 2 else 2, a, b) for i, (a, b) in enumerate(days)]
    rows += [_day_row(i + 1, "shadow", None, a[:40], b[:40]) for i, (a, b) in enumerate(days)]
    rows += [_day_row(4, "shadow", None, days[3][0][:40], days[3][1][:40], metric="brier")]  # metric changed
    out = verdicts._cumulative(rows, dt.date(2026, 11, 2))
    got = {(r["design"], r["metric"], r["partition_date"].day): r for r in out}
    assert sorted(got) == [("ab", "log_loss", 2), ("ab", "log_loss", 3), ("ab", "log_loss", 4),
                           ("shadow", "brier", 4), ("shadow", "log_loss", 2), ("shadow", "log_loss", 3),
                           ("shadow", "log_loss", 4)]
    assert [(got["ab", "log_loss", d]["days"], got["ab", "log_loss", d]["first_partition"].day) for d in (2, 3, 4)] == [
        (2, 1), (1, 3), (2, 3)]  # period 2 starts on day 3
    pooled = v.judge(v.Moments.of(np.concatenate([days[2][0], days[3][0]])),
                     v.Moments.of(np.concatenate([days[2][1], days[3][1]])), None, 0.95, 10)
    assert got["ab", "log_loss", 4]["difference_ci_high"] == pytest.approx(pooled["difference_ci_high"])
    assert got["ab", "log_loss", 4]["rows"] == len(days[2][0]) + len(days[3][0])
    assert got["shadow", "log_loss", 4]["days"] == 4 and got["shadow", "brier", 4]["days"] == 1
    paired = v.Moments.of(np.concatenate([a[:40] - b[:40] for a, b in days]))
    assert got["shadow", "log_loss", 4]["difference"] == pytest.approx(paired.mean)
    assert got["shadow", "log_loss", 4]["reason"].startswith("v2 ")
