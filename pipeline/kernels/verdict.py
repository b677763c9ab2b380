"""Realised performance of two versions on labelled rows, and the verdict between them (pure statistics).

Each labelled row gets a loss under the job's ``verdict.metric`` (lower is better): ``log_loss`` and
``brier`` for a binary classifier's score of the positive class, ``error_rate`` (0 or 1: the predicted class
is not the label) for any classifier, ``squared_error`` and ``absolute_error`` for a regressor's value. A
version's day is kept as sufficient statistics (``Moments``: rows, sum and sum of squares of the losses, and
for a paired comparison the same of the per-row differences), so days combine by adding them: the result of
combined days is the result of their pooled rows.

The comparison is the difference of mean losses, other version minus champion (below zero: the other version
is better), with an interval at ``confidence``:

- **unpaired** (``design='ab'``: each version judged on its own arm's rows): Welch's interval, the standard
  error ``sqrt(s1^2/n1 + s2^2/n2)`` and Student's t at the Welch-Satterthwaite degrees of freedom;
- **paired** (``design='shadow'``: both versions scored the same rows): the interval of the mean per-row
  difference, t at n-1 degrees of freedom (the rows' own variation cancels out, so it is narrower).

The verdict is ``better`` when the interval lies wholly below zero and both versions have at least
``min_rows`` labelled rows, ``worse`` when it lies wholly above zero (with the same rows), else ``not_yet``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("log_loss", "brier", "error_rate", "squared_error", "absolute_error")
DEFAULT_METRIC = {"binary_classification": "log_loss", "multiclass_classification": "error_rate",
                  "regression": "squared_error"}
FITS = {"log_loss": {"binary_classification"}, "brier": {"binary_classification"},
        "error_rate": {"binary_classification", "multiclass_classification"},
        "squared_error": {"regression"}, "absolute_error": {"regression"}}
EPSILON = 1e-15  # a probability of 0 or 1 is clipped to this distance from it (scikit-learn's log_loss does too)
BETTER, WORSE, NOT_YET = "better", "worse", "not_yet"


def metric_for(task: str, metric: str | None) -> str:
    """The loss two versions are compared on: ``metric`` (``verdict.metric``), else the task's default; raises
    ``ValueError`` when it does not fit the task (say, log_loss of a regressor)."""
    chosen = metric or DEFAULT_METRIC.get(task)
    if chosen is None:
        raise ValueError(f"no default verdict metric for task {task!r}: set verdict.metric to one of "
                         + ", ".join(METRICS))
    if task not in FITS.get(chosen, set()):
        fitting = [m for m in METRICS if task in FITS[m]]
        raise ValueError(f"verdict.metric {chosen} does not fit a {task.replace('_', ' ')} model: use one of "
                         + ", ".join(fitting))
    return chosen


def losses(metric: str, labels: Any, prediction: Any = None, score: Any = None,
           positive: str | None = None) -> np.ndarray:
    """Per-row losses (float64) of one version's rows.

    Args:
        labels: the realised labels (classes as text, or a regressor's value).
        prediction: the predicted classes as text (``error_rate``).
        score: the positive class's probability (``log_loss``, ``brier``) or the predicted value (regressors).
        positive: the positive class as text (``log_loss``, ``brier``).
    """
    labels = np.asarray(labels, dtype=object)
    if metric in ("log_loss", "brier"):
        if positive is None:
            raise ValueError(f"{metric} needs the positive class of a binary classifier")
        y = (labels == positive).astype("float64")
        p = np.asarray(score, dtype="float64")
        if metric == "brier":
            return (p - y) ** 2
        p = np.clip(p, EPSILON, 1 - EPSILON)
        return -(y * np.log(p) + (1 - y) * np.log1p(-p))
    if metric == "error_rate":
        return (np.asarray(prediction, dtype=object) != labels).astype("float64")
    if metric in ("squared_error", "absolute_error"):
        error = np.asarray(score, dtype="float64") - labels.astype("float64")
        return error ** 2 if metric == "squared_error" else np.abs(error)
    raise ValueError(f"unknown verdict metric {metric!r}: one of " + ", ".join(METRICS))


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a set of values: how many, their sum and the sum of their squares."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def of(cls, values: Any) -> Moments:
        v = np.asarray(values, dtype="float64")
        return cls(int(v.size), float(v.sum()), float(np.dot(v, v)))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """The sample variance (n - 1 in the denominator); None below 2 values."""
        if self.n < 2:
            return None
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)


def _t(confidence: float, df: float) -> float:
    """The two-sided critical value of Student's t (the normal's for infinite degrees of freedom)."""
    from scipy import stats

    q = 0.5 + confidence / 2
    return float(stats.norm.ppf(q)) if not math.isfinite(df) else float(stats.t.ppf(q, df))


def _p_value(estimate: float, se: float, df: float) -> float | None:
    from scipy import stats

    if se == 0:
        return None if estimate == 0 else 0.0
    z = abs(estimate) / se
    return float(2 * (stats.norm.sf(z) if not math.isfinite(df) else stats.t.sf(z, df)))


def interval(m: Moments, confidence: float) -> tuple[float | None, float | None, float | None]:
    """A mean with its t interval at ``confidence``: (mean, low, high); no interval below 2 values."""
    if m.n < 2:
        return m.mean, None, None
    half = _t(confidence, m.n - 1) * math.sqrt(m.variance / m.n)
    return m.mean, m.mean - half, m.mean + half


def difference(version: Moments, champion: Moments, paired: Moments | None,
               confidence: float) -> tuple[float | None, float | None, float | None, float | None]:
    """(difference, low, high, p-value) of the mean losses, version minus champion: paired when ``paired`` (the
    moments of the per-row differences) is given, else Welch's unpaired interval."""
    if paired is not None:
        if paired.n < 2:
            return paired.mean, None, None, None
        se, df = math.sqrt(paired.variance / paired.n), paired.n - 1
        estimate = paired.mean
    else:
        if version.n < 2 or champion.n < 2:
            d = None if not (version.n and champion.n) else version.mean - champion.mean
            return d, None, None, None
        a, b = version.variance / version.n, champion.variance / champion.n
        se = math.sqrt(a + b)
        df = (a + b) ** 2 / (a * a / (version.n - 1) + b * b / (champion.n - 1)) if a + b > 0 else math.inf
        estimate = version.mean - champion.mean
    half = _t(confidence, df) * se
    return estimate, estimate - half, estimate + half, _p_value(estimate, se, df)


def judge(version: Moments, champion: Moments, paired: Moments | None, confidence: float,
          min_rows: int) -> dict[str, Any]:
    """Both versions' mean losses with their intervals, the difference with its interval, and the verdict."""
    value, v_low, v_high = interval(version, confidence)
    champ, c_low, c_high = interval(champion, confidence)
    diff, low, high, p = difference(version, champion, paired, confidence)
    enough = version.n >= min_rows and champion.n >= min_rows
    verdict = NOT_YET
    if enough and high is not None and high < 0:
        verdict = BETTER
    elif enough and low is not None and low > 0:
        verdict = WORSE
    return {"rows": version.n, "champion_rows": champion.n, "value": value, "value_ci_low": v_low,
            "value_ci_high": v_high, "champion_value": champ, "champion_ci_low": c_low, "champion_ci_high": c_high,
            "difference": diff, "difference_ci_low": low, "difference_ci_high": high, "p_value": p,
            "verdict": verdict}


def sentence(result: dict[str, Any], metric: str, version: int, champion_version: int, confidence: float,
             min_rows: int) -> str:
    """The verdict in words: "v2 better than v1 ...", "v2 worse ...", "v2 not yet distinguishable from v1 at N
    rows ..."."""
    rows, champion_rows = result["rows"], result["champion_rows"]
    at = f"{rows:,} rows" if rows == champion_rows else f"{rows:,} + {champion_rows:,} rows"
    figures = ""
    if result["difference"] is not None:
        figures = f"{metric} difference {result['difference']:+.4g}"
        if result["difference_ci_low"] is not None:
            figures += (f" [{result['difference_ci_low']:+.4g}, {result['difference_ci_high']:+.4g}] at "
                        f"{confidence:.0%}")
        figures += f" ({result['value']:.4g} vs {result['champion_value']:.4g})"
    else:
        figures = f"no {metric} to compare yet"
    verdict = result["verdict"]
    if verdict == BETTER:
        return f"v{version} better than v{champion_version} at {at}: {figures}"
    if verdict == WORSE:
        return f"v{version} worse than v{champion_version} at {at}: {figures}"
    short = min(rows, champion_rows)
    need = f"; {min_rows:,} labelled rows each are needed" if short < min_rows else ""
    return f"v{version} not yet distinguishable from v{champion_version} at {at}: {figures}{need}"


def as_text(value: Any) -> str | None:
    """A label or class as the predictions table writes classes: 1, 1.0 and True all read '1'; None for missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def task_of(card: dict[str, Any] | None) -> tuple[str, str | None]:
    """A model card's task (binary_classification, multiclass_classification or regression) and its positive
    class as text (None for a regressor)."""
    card = card or {}
    classes = card.get("classes") or []
    task = card.get("task") or ("regression" if not classes else
                                "binary_classification" if len(classes) == 2 else "multiclass_classification")
    positive = card.get("positive_class", classes[-1] if classes else None)
    return task, None if positive is None else as_text(positive)
