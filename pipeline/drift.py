"""Drift: the Population Stability Index of each input and of the score against training.

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

from pipeline import ledger, settings, steps
from pipeline.errors import DriftError
from pipeline.partition import parse_date
from pipeline.staging import read_batches, staged_schema
from pipeline.store import begin

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.context import RunContext

log = logging.getLogger("pipeline.drift")
EPS = 1e-4
SCORE, PREDICTION = "__score__", "__prediction__"
NOT_CHECKED = "drift_not_checked"  # the ledger flag (scoring_runs.warnings) of a card without statistics
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


def compute(card: dict[str, Any], valid: Path | list[Path], scored: Path | list[Path], *, threshold: float,
            batch_rows: int, threads: int = 1, alpha: float = 0.01, min_rows: int = 1) -> list[dict[str, Any]]:
    """PSI and the chi-square p-value per input, for the score and for the predicted classes; one dict per
    row of ``scoring_drift``, ``drifted`` judged with ``threshold``, ``alpha`` and ``min_rows`` (``judge``).

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
    reference = (card.get("training") or {}).get("rows")  # the training set's size: a two-sample test
    results = []
    for name, (kind, tracker) in [*((c, trackers[c]) for c in columns), *outputs.items()]:
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
                "statistic, value, threshold, drifted, row_count, p_value, computed_at) VALUES (:job_id, "
                ":partition_date, :run_id, :model_name, :model_version, :feature, :kind, :statistic, :value, "
                ":threshold, :drifted, :row_count, :p_value, :computed_at)"),
                [{"p_value": None, **r} for r in rows])


def drifted_rows(engine: Engine, job_id: str, partition_date: dt.date, run_id: str) -> list[dict[str, Any]]:
    """The features a run found drifted (what an alert reports)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT feature, kind, value, threshold, row_count, p_value FROM scoring_drift WHERE job_id = :j AND "
            "partition_date = :d AND run_id = :r AND drifted = :t ORDER BY value DESC"),
            {"j": job_id, "d": partition_date, "r": run_id, "t": True}).mappings()
        return [dict(r) for r in rows]


def alert(job: Any, partition_date: dt.date | str, run_id: str, rows: list[dict[str, Any]],
          resolver: Any = None) -> str | None:
    """Log the drift breach at ERROR and, if the job names a webhook connection, POST it there.

    Returns the alert text (None when nothing drifted, or the job's drift.on_breach is ``ignore``:
    then one WARNING line). A failing webhook is logged, never raised: an alert must not fail a
    run that published correctly.
    """
    if not rows:
        return None
    policy = job.drift.on_breach
    if policy == "ignore":
        log.warning("drift in job %s partition %s run %s not alerted (drift.on_breach: ignore): %s", job.job_id,
                    partition_date, run_id, describe(rows))
        return None
    outcome = {"block": "NOT published (drift.on_breach: block)",
               "flag": "published and flagged (drift.on_breach: flag)"}[policy]
    text = (f"DRIFT ALERT job {job.job_id} partition {partition_date} run {run_id}: {len(rows)} input(s) or "
            f"output(s) drifted: PSI above {job.drift.psi_threshold:g} and significant (chi-square, alpha "
            f"{job.drift.alpha:g}): {describe(rows)}. Scores were {outcome}; see table scoring_drift.")
    from pipeline import alerts

    alerts.send(text, job.drift.alert_connection,
                {"job_id": job.job_id, "partition_date": str(partition_date), "run_id": run_id, "policy": policy,
                 "drifted": [{k: (float(v) if k in ("value", "threshold", "p_value") and v is not None else v)
                              for k, v in r.items()} for r in rows]},
                f"drift-{job.job_id}-{partition_date}-{run_id}", resolver, logger=log)
    return text


# -- the stage's part: check at score (or combine), gate before the output (pipeline.quality), record at finalize
def check(ctx: RunContext, rows: int, counts: dict[str, Any] | None = None,
          scored: list[Any] | None = None) -> list[dict[str, Any]]:
    """PSI and significance of the run's inputs and scores against training, judged (``drift.json``).

    Nothing is refused here: the gate before the output step (``pipeline.quality.gate``) applies
    the job's drift.on_breach. A card without training statistics is never a silent pass: a
    WARNING, and ``counts["warnings"]`` (the ledger's ``scoring_runs.warnings``) says that drift
    was not checked.
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
    results = compute(ctx.card, ctx.parts(steps.VALID), scored or ctx.parts(steps.SCORED),
                      threshold=job.drift.psi_threshold, batch_rows=ctx.batch_rows,
                      threads=settings.thread_count(job.model.threads), alpha=job.drift.alpha, min_rows=job.drift.min_rows)
    spec.write_json(steps.DRIFT_STATE, results)
    bad = drifted(results)
    noisy = [r for r in results if r["value"] > job.drift.psi_threshold and not r["drifted"]]
    if noisy:
        log_.info("drift: PSI above %g but not significant (small sample or noise), not a breach: %s",
                  job.drift.psi_threshold, describe(noisy))
    if bad:
        log_.warning("drift breach (PSI above %g, significant at alpha %g): %s; drift.on_breach: %s",
                     job.drift.psi_threshold, job.drift.alpha, describe(bad), job.drift.on_breach)
    else:
        log_.info("drift: no breach (largest PSI: %s)", describe(sorted(results, key=lambda r: -r["value"])[:3]))
    return results


def record(ctx: RunContext, results: list[dict[str, Any]] | None = None) -> list[str]:
    """Write the run's drift results (judged with the job's settings) to ``scoring_drift``; return the drifted
    names."""
    spec = ctx.spec
    if results is None:
        results = spec.read_json(steps.DRIFT_STATE, default=[])
    judge(results, ctx.job.drift)
    if not spec.dry_run:
        store_results(ctx, results)
    return [r["feature"] for r in drifted(results)]


def store_results(ctx: RunContext, results: list[dict[str, Any]]) -> None:
    """Replace the partition's rows of ``scoring_drift`` with the run's results."""
    spec = ctx.spec
    replace(ctx.engine, job_id=spec.job_id, partition_date=parse_date(spec.partition_date), run_id=spec.run_id,
            model_name=spec.model_name, model_version=spec.model_version, results=results)


# -- breaches: the gate before the output step, the mark at finalize (pipeline.quality checks it after) -----
GATE = "drift_gate"  # the gate's stage name in the ledger (stage_seconds, failed_stage)
QUALITY_STATE = "quality"  # JSON state file: the breaches the gate found, for finalize


def report_path(job_id: str, partition_date: dt.date | str, run_id: str) -> Path:
    """The run report's HTML (``pipeline.validate.report_stem`` of the run)."""
    return settings.reports_dir() / job_id / str(partition_date) / f"{settings.safe_name(run_id)}.html"


def breaches(job: JobConfig, row: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The partition's breaches, each ``{"kind", "policy", "text"}``, from its ledger row and judged drift."""
    found = []
    bad = drifted(results)
    if bad:
        found.append({"kind": "drift", "policy": job.drift.on_breach, "text": describe(bad)})
    text = quarantine_text(job, row)
    if text:
        found.append({"kind": "quarantine", "policy": job.validation.on_breach, "text": text})
    return found


def quarantine_text(job: JobConfig, row: dict[str, Any]) -> str | None:
    """``120 of 2000 rows (6.0%) quarantined, above validation.max_quarantine_share 5.0%``; None within it."""
    total, quarantined = int(row.get("rows_in") or 0), int(row.get("rows_quarantined") or 0)
    limit = job.validation.max_quarantine_share
    if not total or quarantined / total <= limit:
        return None
    return (f"{quarantined} of {total} rows ({quarantined / total:.1%}) quarantined, above "
            f"validation.max_quarantine_share {limit:.1%}")


def flagged(found: list[dict[str, Any]]) -> str | None:
    """The ledger's ``breach``: the flagged kinds, comma-joined in a fixed order; None when none."""
    kinds = [k for k in ("drift", "quarantine") if any(b["kind"] == k and b["policy"] == "flag" for b in found)]
    return ",".join(kinds) or None


def gate(ctx: RunContext, counts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Before the output step: judge the run's drift with the job's settings, find its breaches, and refuse
    to publish a breach whose policy is ``block`` (DriftError). The breaches are staged for finalize."""
    spec, job = ctx.spec, ctx.job
    row = ledger.get(ctx.engine, spec.job_id, spec.run_id, spec.attempt)
    results = judge(spec.read_json(steps.DRIFT_STATE, default=[]), job.drift)
    spec.write_json(steps.DRIFT_STATE, results)
    found = breaches(job, row, results)
    spec.write_json(QUALITY_STATE, {"breaches": found})
    for b in found:
        ctx.log.warning("%s breach (%s.on_breach: %s): %s", b["kind"], "drift" if b["kind"] == "drift"
                        else "validation", b["policy"], b["text"])
    from pipeline import validate

    if found:  # the report's banner says so now, even if the output step then fails
        validate.finish_report(ctx, row)
    if not any(b["kind"] == "drift" and b["policy"] == "block" for b in found):
        return found  # a blocking quarantine share failed at validate already
    if not spec.dry_run:
        store_results(ctx, results)
    bad = drifted(results)
    alert(job, spec.partition_date, spec.run_id, bad, ctx.resolver)
    raise DriftError(
        f"partition {spec.partition_date} of job {spec.job_id} was NOT published: its inputs or scores drifted "
        f"from the training data of {spec.model_name} v{spec.model_version}: {describe(bad)} (a breach: "
        f"PSI above {job.drift.psi_threshold:g}, chi-square p-value below alpha {job.drift.alpha:g} over the "
        f"features tested, at least {job.drift.min_rows} rows). drift.on_breach is block: the partition's "
        f"previously published state is unchanged. Next: investigate the shift (report "
        f"{report_path(spec.job_id, spec.partition_date, spec.run_id)}, table scoring_drift); if the input is "
        "wrong, fix it and re-run the partition; if the shift is real, register a retrained model, or set "
        "drift.on_breach: flag in the job file to publish it marked.",
        counts=counts,
    )


def finish(ctx: RunContext, row: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """finalize's part: record the judged drift, complete the report; (results, drifted names, ledger breach)."""
    from pipeline import validate

    spec = ctx.spec
    results = judge(spec.read_json(steps.DRIFT_STATE, default=[]), ctx.job.drift)
    spec.write_json(steps.DRIFT_STATE, results)  # the report reads them
    names = record(ctx, results)
    validate.finish_report(ctx, row)
    return results, names, flagged(breaches(ctx.job, row, results))
