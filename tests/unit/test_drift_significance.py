"""A drift breach must be real: PSI judged with its sample size (chi-square p-value, min_rows) before it turns red.

The case that raised false alarms: held-out rows of the very population a house-price model
was trained on, 148 a day, gave PSI 0.31 and 0.27 on a 25-value category (the neighbourhood).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import drift, stats
from pipeline.kernels import drift as drift_kernel

# 25 neighbourhoods with a long tail of shares, like the house-price data's
WEIGHTS = np.array([225, 150, 113, 100, 86, 79, 77, 74, 73, 71, 59, 58, 51, 50, 49, 41, 38, 37, 28, 25, 17, 16, 11,
                    9, 2], dtype="float64")
SHARES = WEIGHTS / WEIGHTS.sum()
NAMES = [f"n{i:02d}" for i in range(25)]
TRAINING_ROWS = 1460


def _card(rng: np.random.Generator) -> dict:
    """A card's training statistics of the neighbourhood, from a training set drawn from the population."""
    training = pd.DataFrame({"neighbourhood": rng.choice(NAMES, TRAINING_ROWS, p=SHARES)})
    return {"training": {"rows": TRAINING_ROWS,
                         "stats": stats.input_stats(training, [{"name": "neighbourhood", "type": "category"}])}}


def _day(card: dict, values: np.ndarray) -> dict:
    """One partition's result for the neighbourhood, judged as the pipeline judges it (PSI 0.2, alpha 0.01)."""
    tracker = drift_kernel._trackers(card)[0]["neighbourhood"][1]
    tracker.add(pa.array(values))
    value, n = tracker.value()
    result = {"feature": "neighbourhood", "kind": "categorical", "value": value, "row_count": n,
              "p_value": drift.chi_square_p(*tracker.observed(), reference_rows=card["training"]["rows"])}
    return drift.judge([result], threshold=0.2, alpha=0.01, min_rows=100)[0]


def test_148_held_out_rows_a_day_from_the_training_population_are_not_a_breach() -> None:
    rng = np.random.default_rng(24)
    card = _card(rng)
    days = [_day(card, rng.choice(NAMES, 148, p=SHARES)) for _ in range(365)]
    above = [d for d in days if d["value"] > 0.2]
    assert len(above) > 150, "PSI alone would have raised an alarm most days (this is the noise being judged)"
    assert any(0.27 <= d["value"] <= 0.31 for d in above), "the reported PSI values are ordinary here"
    assert all(d["p_value"] is not None for d in days)
    breaches = [d for d in days if d["drifted"]]
    assert len(breaches) <= 365 * 0.02, (f"{len(breaches)} false breaches in a year of days drawn from the "
                                         f"training population (alpha 0.01)")
    for day in (d for d in above if 0.27 <= d["value"] <= 0.31):
        assert day["p_value"] > 0.01 and not day["drifted"], day


def test_a_real_shift_on_2000_rows_is_a_breach() -> None:
    rng = np.random.default_rng(7)
    card = _card(rng)
    day = _day(card, rng.choice(NAMES, 2000, p=np.roll(SHARES, 5)))
    assert day["value"] > 1.0 and day["p_value"] < 1e-100 and day["drifted"]
    mild = SHARES.copy()
    mild[0] *= 2  # the largest neighbourhood doubles
    day = _day(card, rng.choice(NAMES, 2000, p=mild / mild.sum()))
    assert day["p_value"] < 1e-4, "significant, but PSI decides whether it is large enough to matter"


def test_too_few_rows_are_never_a_breach_whatever_the_psi() -> None:
    card = _card(np.random.default_rng(1))
    day = _day(card, np.array(["n24"] * 60))  # every row in the rarest category: PSI huge, p tiny, but 60 rows
    assert day["value"] > 3 and day["p_value"] < 1e-10
    assert not day["drifted"], "fewer rows than min_rows (100)"


@pytest.mark.parametrize(("counts", "expected"), [
    ([0, 0, 0], None),  # nothing counted: untested
    ([2, 2, 2], 1.0),  # 6 rows over three bins expected 2 each pool into one bin: nothing to compare
    ([50, 50], pytest.approx(1.0)),
])
def test_the_chi_square_test_pools_small_bins(counts: list[int], expected: object) -> None:
    shares = [1 / len(counts)] * len(counts)
    assert drift.chi_square_p(shares, counts) == expected


def test_the_two_sample_test_is_less_sure_than_a_test_against_exact_shares() -> None:
    shares, counts = [0.5, 0.3, 0.2], [70, 20, 10]
    exact = drift.chi_square_p(shares, counts)
    estimated = drift.chi_square_p(shares, counts, reference_rows=300)
    assert exact is not None and estimated is not None and exact < estimated < 0.05
    assert drift.chi_square_p(shares, counts, reference_rows=10**9) == pytest.approx(exact, rel=1e-3)


def test_bonferroni_holds_each_feature_to_alpha_over_the_features_tested() -> None:
    results = [{"feature": f, "value": 0.5, "row_count": 500, "p_value": p}
               for f, p in (("a", 0.007), ("b", 0.0004), ("c", None))]
    judged = {r["feature"]: r["drifted"] for r in drift.judge(results, threshold=0.2, alpha=0.01, min_rows=100)}
    assert judged == {"a": False, "b": True, "c": False}, "two tested: each against 0.005; untested never breaches"
    assert drift.describe([r for r in results if r["feature"] == "b"]) == "b (PSI 0.50, n 500, p 0.0004)"
