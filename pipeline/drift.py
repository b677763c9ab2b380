"""Drift: the Population Stability Index of each input and of the score against training.

The model card holds the training statistics: decile bin edges and shares of each numeric
input, category shares of each categorical input, the score's bins and the predicted class
shares. A partition's values are counted into the same bins batch by batch (memory does
not grow with the partition), and

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with shares floored at 1e-4 so that empty bins and unseen categories count without
dividing by zero. Usual reading: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large shift.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import steps
from pipeline.errors import DriftError
from pipeline.partition import parse_date
from pipeline.staging import read_batches, staged_schema
from pipeline.store import begin

if TYPE_CHECKING:
    from pipeline.context import RunContext

log = logging.getLogger("pipeline.drift")
EPS = 1e-4
SCORE, PREDICTION = "__score__", "__prediction__"
NOT_CHECKED = "drift_not_checked"  # the ledger flag (scoring_runs.warnings) of a card without statistics


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """PSI of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype="float64"), EPS)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


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

    def distribution(self) -> dict[str, list[Any]]:
        """Training and partition shares per category (for the report's charts)."""
        n = max(sum(self.counts.values()), 1)
        keys = sorted(set(self.shares) | set(self.counts))
        return {"labels": ["missing" if k == self.NULL else k for k in keys],
                "expected": [round(self.shares.get(k, 0.0), 6) for k in keys],
                "actual": [round(self.counts[k] / n, 6) for k in keys]}


def compute(card: dict[str, Any], valid: Path | list[Path], scored: Path | list[Path], *, threshold: float,
            batch_rows: int, threads: int = 1) -> list[dict[str, Any]]:
    """PSI per input, for the score and for the predicted classes; one dict per row of ``scoring_drift``.

    The inputs of a batch are counted on ``threads`` threads, one column each at a time (numpy and
    Arrow count without the GIL); each column's counts are its own, so the result is the same.
    """
    from concurrent.futures import ThreadPoolExecutor

    trackers, outputs = _trackers(card)
    valid_parts = valid if isinstance(valid, list) else [valid]
    columns = [c for c in trackers if c in staged_schema(valid_parts[0]).names]

    def count(column: pa.ChunkedArray | pa.Array, name: str) -> None:
        kind, tracker = trackers[name]
        tracker.add(column.to_numpy(zero_copy_only=False).astype("float64") if kind == "numeric" else column)

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="drift") as pool:
        for batch in read_batches(valid_parts, batch_rows, columns):
            for done in [pool.submit(count, batch.column(name), name) for name in columns]:
                done.result()
    for batch in read_batches(scored if isinstance(scored, list) else [scored], batch_rows, ["prediction", "score"]):
        if SCORE in outputs:
            outputs[SCORE][1].add(batch.column("score").to_numpy(zero_copy_only=False).astype("float64"))
        if PREDICTION in outputs:
            outputs[PREDICTION][1].add(batch.column("prediction"))
    results = []
    for name, (kind, tracker) in [*((c, trackers[c]) for c in columns), *outputs.items()]:
        value, n = tracker.value()
        results.append({"feature": name, "kind": kind, "statistic": "psi", "value": round(value, 6),
                        "threshold": threshold, "drifted": bool(n and value > threshold), "row_count": n,
                        "bins": tracker.distribution()})  # the report's charts; not a scoring_drift column
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
    """``contract_type (PSI 0.41), __score__ (PSI 0.27)``, largest first."""
    return ", ".join(f"{r['feature']} (PSI {r['value']:.2f})" for r in sorted(results, key=lambda r: -r["value"]))


def replace(engine: Engine, *, job_id: str, partition_date: dt.date, run_id: str, model_name: str,
            model_version: int, results: list[dict[str, Any]]) -> None:
    """Replace a partition's drift rows (one transaction), like the predictions."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [{"model_name": model_name, "model_version": model_version, **r, "job_id": job_id,
             "partition_date": partition_date, "run_id": run_id, "computed_at": now}
            for r in results]  # a cascade's results name their own model
    with begin(engine) as conn:
        conn.execute(sa.text("DELETE FROM scoring_drift WHERE job_id = :j AND partition_date = :d"),
                     {"j": job_id, "d": partition_date})
        if rows:
            conn.execute(sa.text(
                "INSERT INTO scoring_drift (job_id, partition_date, run_id, model_name, model_version, feature, kind, "
                "statistic, value, threshold, drifted, row_count, computed_at) VALUES (:job_id, :partition_date, "
                ":run_id, :model_name, :model_version, :feature, :kind, :statistic, :value, :threshold, :drifted, "
                ":row_count, :computed_at)"), rows)


def drifted_rows(engine: Engine, job_id: str, partition_date: dt.date, run_id: str) -> list[dict[str, Any]]:
    """The features a run found drifted (what an alert reports)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT feature, kind, value, threshold, row_count FROM scoring_drift WHERE job_id = :j AND "
            "partition_date = :d AND run_id = :r AND drifted = :t ORDER BY value DESC"),
            {"j": job_id, "d": partition_date, "r": run_id, "t": True}).mappings()
        return [dict(r) for r in rows]


def alert(job: Any, partition_date: dt.date | str, run_id: str, rows: list[dict[str, Any]],
          resolver: Any = None) -> str | None:
    """Log the drift at ERROR and, if the job names a webhook connection, POST it there.

    Returns the alert text (None when nothing drifted). A failing webhook is logged, never
    raised: an alert must not fail a run that published correctly.
    """
    if not rows:
        return None
    text = (f"DRIFT ALERT job {job.job_id} partition {partition_date} run {run_id}: {len(rows)} input(s) or "
            f"output(s) drifted above PSI {job.drift.psi_threshold:g}: {describe(rows)}. Scores were "
            f"{'not published (drift.block)' if job.drift.block else 'published'}; see table scoring_drift.")
    from pipeline import alerts

    alerts.send(text, job.drift.alert_connection,
                {"job_id": job.job_id, "partition_date": str(partition_date), "run_id": run_id,
                 "drifted": [{k: (float(v) if k in ("value", "threshold") else v) for k, v in r.items()} for r in rows]},
                f"drift-{job.job_id}-{partition_date}-{run_id}", resolver, logger=log)
    return text


# -- the stage's policy: check at score (or combine), record at finalize, alert after ------
def check(ctx: RunContext, rows: int, counts: dict[str, Any] | None = None,
          scored: list[Any] | None = None) -> list[dict[str, Any]]:
    """PSI of the run's inputs and scores against training (``drift.json``); with drift.block, stop.

    A blocking drift is recorded in ``scoring_drift`` and alerted at once, then raises DriftError
    (carrying ``counts`` for the ledger), so nothing is published. A card without training
    statistics is never a silent pass: a WARNING, and ``counts["warnings"]`` (the ledger's
    ``scoring_runs.warnings``) says that drift was not checked.
    """
    job, spec, log_ = ctx.job, ctx.spec, ctx.log
    if rows < job.drift.min_rows:
        log_.info("drift: %d scored rows, fewer than drift.min_rows (%d): not checked", rows, job.drift.min_rows)
        spec.write_json(steps.DRIFT_STATE, [])
        return []
    if not has_statistics(ctx.card):
        log_.warning(
            "drift NOT checked: model %s v%s has no training statistics in its card (training.stats with bins "
            "or shares, training.score_stats), so a shift in its inputs or scores cannot be seen. Register the "
            "model with its training data, `scoring models register %s --artifact ... --training-data ...`, "
            "to get drift statistics.", spec.model_name, spec.model_version, spec.model_name)
        spec.write_json(steps.DRIFT_STATE, [])
        if counts is not None:
            note = f"{NOT_CHECKED}: model {spec.model_name} v{spec.model_version} has no training statistics"
            counts["warnings"] = "; ".join(w for w in (counts.get("warnings"), note) if w)
        return []
    from pipeline.score import thread_count

    results = compute(ctx.card, ctx.parts(steps.VALID), scored or ctx.parts(steps.SCORED),
                      threshold=job.drift.psi_threshold, batch_rows=ctx.batch_rows,
                      threads=thread_count(job.model.threads))
    spec.write_json(steps.DRIFT_STATE, results)
    bad = drifted(results)
    if not bad:
        log_.info("drift: none above PSI %g (largest: %s)", job.drift.psi_threshold,
                  describe(sorted(results, key=lambda r: -r["value"])[:3]))
        return results
    log_.warning("drift above PSI %g: %s", job.drift.psi_threshold, describe(bad))
    if job.drift.block:
        _store(ctx, results)
        alert(job, spec.partition_date, spec.run_id, bad, ctx.resolver)  # the task's resolver: Airflow connections too
        raise DriftError(
            f"partition {spec.partition_date}: inputs or scores drifted from the training data of "
            f"{spec.model_name} v{spec.model_version} above PSI {job.drift.psi_threshold:g}: {describe(bad)}. "
            "drift.block is true, so nothing was published (details in table scoring_drift). If the shift is "
            "real and expected, retrain and register a new model version, or set drift.block: false to publish "
            "with a warning.",
            counts=counts,
        )
    return results


def record(ctx: RunContext, results: list[dict[str, Any]] | None = None) -> list[str]:
    """Write the run's drift results (computed at score) to ``scoring_drift``; return the drifted names."""
    spec = ctx.spec
    if results is None:
        results = spec.read_json(steps.DRIFT_STATE, default=[])
    if not spec.dry_run:
        _store(ctx, results)
    return [r["feature"] for r in drifted(results)]


def _store(ctx: RunContext, results: list[dict[str, Any]]) -> None:
    spec = ctx.spec
    replace(ctx.engine, job_id=spec.job_id, partition_date=parse_date(spec.partition_date), run_id=spec.run_id,
            model_name=spec.model_name, model_version=spec.model_version, results=results)
