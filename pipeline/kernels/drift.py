"""Drift on rows in memory: the Population Stability Index of each input and of the score against training.

The model card holds the training statistics: decile bin edges and shares of each numeric
input, category shares of each categorical input, the score's bins and the predicted class
shares. A partition's values are counted into the same bins batch by batch (memory does
not grow with the partition), and

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with shares floored at 1e-4 so that empty bins and unseen categories count without
dividing by zero. Usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large shift.

PSI alone is noisy on small samples: 148 rows drawn from the training population itself can
give PSI 0.3 on a 25-value category (empty categories weigh heavily). So each result also
carries the p-value of a chi-square test of its bin counts against the training shares
(two-sample when the card knows the training set's size; bins expected to hold fewer than
``MIN_EXPECTED`` rows pooled first), and a feature has
*drifted* (a breach) only when its PSI is above ``drift.psi_threshold`` AND the p-value is
below ``drift.alpha`` divided by the number of features tested (Bonferroni) AND it counted at
least ``drift.min_rows`` rows (``judge``).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPS = 1e-4
SCORE, PREDICTION = "__score__", "__prediction__"
MIN_EXPECTED = 5.0  # bins expected to hold fewer rows are pooled before the chi-square test


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """PSI of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype="float64"), EPS)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square_p(expected: list[float] | np.ndarray, counts: list[float] | np.ndarray,
                 reference_rows: int | None = None) -> float | None:
    """p-value of a chi-square test of bin ``counts`` against training shares ``expected``.

    With ``reference_rows`` (the training set's size, on the card) it is the two-sample test of
    homogeneity: the training shares are an estimate too, and a goodness-of-fit test that takes
    them as exact would raise about twice its alpha in false alarms on a 25-value category. Bins
    expected to hold fewer than ``MIN_EXPECTED`` rows are pooled, smallest first (unseen categories,
    expected 0, pool with them), so the test holds on small samples. None when nothing was counted;
    1.0 when fewer than two bins are left to compare.
    """
    observed = np.asarray(counts, dtype="float64")
    shares = np.asarray(expected, dtype="float64")
    n, total = observed.sum(), shares.sum()
    if n <= 0 or total <= 0:
        return None
    if reference_rows:
        ref = shares / total * reference_rows
        want = (ref + observed) * n / (reference_rows + n)  # expected counts of the partition's row
        want_ref = (ref + observed) * reference_rows / (reference_rows + n)  # and of the training's row
    else:
        want = shares / total * n
        ref, want_ref = np.zeros_like(want), np.full_like(want, np.inf)
    groups, pool = [], np.zeros(4)  # per pooled bin: expected, observed, training expected, training observed
    for i in np.argsort(np.minimum(want, want_ref), kind="stable"):
        pool = pool + [want[i], observed[i], want_ref[i], ref[i]]
        if min(pool[0], pool[2]) >= MIN_EXPECTED:
            groups.append(pool)
            pool = np.zeros(4)
    if groups and pool.any():
        groups[-1] = groups[-1] + pool
    if len(groups) < 2:
        return 1.0
    g = np.array(groups)
    stat = ((g[:, 1] - g[:, 0]) ** 2 / g[:, 0]).sum()
    if reference_rows:
        stat += ((g[:, 3] - g[:, 2]) ** 2 / g[:, 2]).sum()
    from scipy.stats import chi2

    return float(chi2.sf(float(stat), len(groups) - 1))


def _with_nulls(shares: list[float], null_share: float | None) -> list[float]:
    """Training shares over the value bins plus one bin for missing values (when the card has it)."""
    if null_share is None:
        return list(shares)
    return [s * (1 - null_share) for s in shares] + [null_share]


class _Numeric:
    """Counts into the training bins; missing values are a bin of their own (a column that
    turns all-null drifts)."""

    def __init__(self, edges: list[float], shares: list[float], null_share: float | None = None) -> None:
        self.edges = [float(e) for e in edges]
        self.inner = np.asarray(edges[1:-1], dtype="float64")  # outer bins take values beyond training's range
        self.shares = _with_nulls(shares, null_share)
        self.track_nulls = null_share is not None
        self.counts = np.zeros(len(shares), dtype="int64")
        self.nulls = 0

    def add(self, values: np.ndarray) -> None:
        missing = np.isnan(values)
        self.nulls += int(missing.sum())
        values = values[~missing]
        self.counts += np.bincount(np.searchsorted(self.inner, values, side="right"), minlength=len(self.counts))

    def value(self) -> tuple[float, int]:
        counts = np.append(self.counts, self.nulls) if self.track_nulls else self.counts
        n = int(counts.sum())
        return (psi(self.shares, counts / n) if n else 0.0), n

    def observed(self) -> tuple[list[float], list[int]]:
        """Training shares and this partition's counts per bin (the chi-square test's input)."""
        counts = np.append(self.counts, self.nulls) if self.track_nulls else self.counts
        return list(self.shares), [int(c) for c in counts]

    def distribution(self) -> dict[str, list[Any]]:
        """Training and partition shares per bin, with the bins' labels (for the report's charts)."""
        edges = self.edges
        counts = np.append(self.counts, self.nulls) if self.track_nulls else self.counts
        n = max(int(counts.sum()), 1)
        labels = [f"< {edges[1]:.4g}", *(f"{a:.4g} - {b:.4g}" for a, b in zip(edges[1:-2], edges[2:-1], strict=True)),
                  f">= {edges[-2]:.4g}"] + (["missing"] if self.track_nulls else [])
        return {"labels": labels, "expected": [round(float(x), 6) for x in self.shares],
                "actual": [round(float(c) / n, 6) for c in counts]}


class _Categorical:
    NULL = "\x00null"

    def __init__(self, shares: dict[str, float], null_share: float | None = None) -> None:
        self.shares = dict(zip(shares, _with_nulls(list(shares.values()), null_share), strict=False))
        if null_share is not None:
            self.shares[self.NULL] = null_share
        self.track_nulls = null_share is not None
        self.counts: Counter[str] = Counter()

    def add(self, values: Any) -> None:
        """Count an Arrow array's values (nulls skipped) without a Python loop over the rows."""
        counts = pc.value_counts(pc.cast(values, pa.string()))
        for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
            if value is not None:
                self.counts[value] += n
            elif self.track_nulls:
                self.counts[self.NULL] += n

    def value(self) -> tuple[float, int]:
        n = sum(self.counts.values())
        if not n:
            return 0.0, 0
        keys = sorted(set(self.shares) | set(self.counts))
        return psi([self.shares.get(k, 0.0) for k in keys], [self.counts[k] / n for k in keys]), n

    def observed(self) -> tuple[list[float], list[int]]:
        """Training shares and this partition's counts per category (unseen ones: share 0)."""
        keys = sorted(set(self.shares) | set(self.counts))
        return [self.shares.get(k, 0.0) for k in keys], [self.counts[k] for k in keys]

    def distribution(self) -> dict[str, list[Any]]:
        """Training and partition shares per category (for the report's charts)."""
        n = max(sum(self.counts.values()), 1)
        keys = sorted(set(self.shares) | set(self.counts))
        return {"labels": ["missing" if k == self.NULL else k for k in keys],
                "expected": [round(self.shares.get(k, 0.0), 6) for k in keys],
                "actual": [round(self.counts[k] / n, 6) for k in keys]}


class DriftTracker:
    """A model's drift over a partition, counted batch by batch (memory does not grow with the rows): its
    inputs from the valid rows (``add_inputs``), its score and predicted class from the scored rows
    (``add_scored``); ``results`` gives one dict per row of ``scoring_drift``, judged.

    Each column's counts are its own and counts add up, so the results do not depend on how the rows
    were batched, nor on the order of the batches.
    """

    def __init__(self, card: dict[str, Any], columns: list[str] | None = None) -> None:
        self.card = card
        self.inputs, self.outputs = _trackers(card)
        self.columns = [c for c in self.inputs if columns is None or c in columns]

    def add_inputs(self, batch: pa.RecordBatch | pa.Table, pool: Executor | None = None) -> None:
        """Count a batch of valid rows into the inputs' bins (on ``pool``'s threads, one column each)."""
        if pool is None:
            for name in self.columns:
                self._count(batch.column(name), name)
            return
        for done in [pool.submit(self._count, batch.column(name), name) for name in self.columns]:
            done.result()

    def _count(self, column: pa.ChunkedArray | pa.Array, name: str) -> None:
        kind, tracker = self.inputs[name]
        tracker.add(column.to_numpy(zero_copy_only=False).astype("float64") if kind == "numeric" else column)

    def add_scored(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Count a batch of scored rows (``score``, ``prediction``) into the outputs' bins."""
        if SCORE in self.outputs:
            self.outputs[SCORE][1].add(batch.column("score").to_numpy(zero_copy_only=False).astype("float64"))
        if PREDICTION in self.outputs:
            self.outputs[PREDICTION][1].add(batch.column("prediction"))

    def results(self, *, threshold: float, alpha: float = 0.01, min_rows: int = 1) -> list[dict[str, Any]]:
        """PSI and the chi-square p-value per input, for the score and for the predicted classes, judged
        (``judge``)."""
        reference = (self.card.get("training") or {}).get("rows")  # the training set's size: a two-sample test
        results = []
        for name, (kind, tracker) in [*((c, self.inputs[c]) for c in self.columns), *self.outputs.items()]:
            value, n = tracker.value()
            results.append({"feature": name, "kind": kind, "statistic": "psi", "value": round(value, 6),
                            "threshold": threshold, "drifted": False, "row_count": n,
                            "p_value": chi_square_p(*tracker.observed(), reference_rows=reference),
                            "bins": tracker.distribution()})  # the report's charts; not a scoring_drift column
        return judge(results, threshold=threshold, alpha=alpha, min_rows=min_rows)


def judge(results: list[dict[str, Any]], config: Any = None, *, threshold: float | None = None,
          alpha: float | None = None, min_rows: int | None = None) -> list[dict[str, Any]]:
    """Set each result's ``drifted`` (a breach): PSI above the threshold, p-value below alpha over the number
    of features tested (Bonferroni) and at least min_rows rows counted. ``config``: a job's DriftConfig.

    Idempotent: a run's results are judged again with the job's settings where they are gated and
    recorded (a cascade's route models are computed with the defaults). ``alpha_used`` is the
    per-feature level the p-values were held against.
    """
    threshold = config.psi_threshold if threshold is None else threshold
    alpha = config.alpha if alpha is None else alpha
    min_rows = config.min_rows if min_rows is None else min_rows
    tested = max(sum(1 for r in results if r.get("p_value") is not None), 1)
    level = alpha / tested
    for r in results:
        p = r.get("p_value")
        r.update(threshold=threshold, alpha_used=level,
                 drifted=bool(r["row_count"] >= min_rows and r["value"] > threshold and p is not None and p < level))
    return results


def _trackers(card: dict[str, Any]) -> tuple[dict[str, tuple[str, Any]], dict[str, tuple[str, Any]]]:
    """A tracker per input and per output the card has usable training statistics for."""
    training = card.get("training") or {}
    inputs: dict[str, tuple[str, Any]] = {}
    for name, stats in (training.get("stats") or {}).items():
        if stats.get("kind") == "numeric" and len(stats.get("bin_edges") or []) > 2:
            inputs[name] = ("numeric", _Numeric(stats["bin_edges"], stats["bin_shares"], stats.get("null_share")))
        elif stats.get("kind") == "categorical" and stats.get("shares"):
            inputs[name] = ("categorical", _Categorical(stats["shares"], stats.get("null_share")))
    outputs: dict[str, tuple[str, Any]] = {}
    score_stats = training.get("score_stats") or {}
    if len(score_stats.get("bin_edges") or []) > 2:
        outputs[SCORE] = ("score", _Numeric(score_stats["bin_edges"], score_stats["bin_shares"]))
    if training.get("prediction_shares"):
        outputs[PREDICTION] = ("prediction", _Categorical(training["prediction_shares"]))
    return inputs, outputs


def has_statistics(card: dict[str, Any]) -> bool:
    """Whether the card holds training statistics drift can compare with (inputs' bins or shares, the score's)."""
    inputs, outputs = _trackers(card)
    return bool(inputs) or SCORE in outputs


def drifted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["drifted"]]


def describe(results: list[dict[str, Any]]) -> str:
    """``contract_type (PSI 0.41, n 2000, p 3.1e-12), __score__ (PSI 0.27, n 2000, p 0.0004)``, largest first."""
    return ", ".join(f"{r['feature']} (PSI {r['value']:.2f}, n {r.get('row_count')}, p {p_text(r.get('p_value'))})"
                     for r in sorted(results, key=lambda r: -r["value"]))


def p_text(p: float | None) -> str:
    """A p-value as people read it: ``0.031``, ``2.4e-09``, ``< 1e-300``, ``untested``."""
    if p is None:
        return "untested"
    if p == 0:
        return "< 1e-300"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"
