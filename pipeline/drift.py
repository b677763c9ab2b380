"""Drift: the stage's part around the drift kernel (``pipeline.kernels.drift``): the check at score (or
combine) over the staged rows, the gate before the output step, the record at finalize, the alert.

The statistics (PSI, the chi-square test, the judgement of a breach) are the kernel's; see its text.
"""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import alerts, ledger, settings, steps, validate
from pipeline.errors import DriftError
from pipeline.kernels.drift import (
    DriftTracker,
    chi_square_p,
    describe,
    drifted,
    has_statistics,
    judge,
    p_text,
    psi,
)
from pipeline.partition import parse_date
from pipeline.staging import read_batches, staged_schema
from pipeline.store import operational
from pipeline.store.engines import begin

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.context import RunContext

log = logging.getLogger("pipeline.drift")
__all__ = ["chi_square_p", "p_text", "psi"]  # the kernel's statistics, by the names callers know
NOT_CHECKED = "drift_not_checked"  # the ledger flag (scoring_runs.warnings) of a card without statistics


def compute(card: dict[str, Any], valid: Path | list[Path], scored: Path | list[Path], *, threshold: float,
            batch_rows: int, threads: int = 1, alpha: float = 0.01, min_rows: int = 1) -> list[dict[str, Any]]:
    """The drift kernel (``DriftTracker``) over staged files: PSI and the chi-square p-value per input, for the
    score and for the predicted classes; one dict per row of ``scoring_drift``, judged (``judge``).

    The inputs of a batch are counted on ``threads`` threads, one column each at a time (numpy and
    Arrow count without the GIL); each column's counts are its own, so the result is the same.
    """
    valid_parts = valid if isinstance(valid, list) else [valid]
    tracker = DriftTracker(card, staged_schema(valid_parts[0]).names)
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="drift") as pool:
        for batch in read_batches(valid_parts, batch_rows, tracker.columns):
            tracker.add_inputs(batch, pool)
    for batch in read_batches(scored if isinstance(scored, list) else [scored], batch_rows, ["prediction", "score"]):
        tracker.add_scored(batch)
    return tracker.results(threshold=threshold, alpha=alpha, min_rows=min_rows)


def replace(engine: Engine, *, job_id: str, partition_date: dt.date, run_id: str, model_name: str,
            model_version: int, results: list[dict[str, Any]]) -> None:
    """Replace a partition's drift rows (one transaction), like the predictions."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [{"model_name": model_name, "model_version": model_version, **r, "job_id": job_id,
             "partition_date": partition_date, "run_id": run_id, "computed_at": now}
            for r in results]  # a cascade's results name their own model
    with begin(engine) as conn:
        operational.replace_drift(conn, job_id, partition_date, rows, "batch")


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
    spec = ctx.spec
    results = judge(spec.read_json(steps.DRIFT_STATE, default=[]), ctx.job.drift)
    spec.write_json(steps.DRIFT_STATE, results)  # the report reads them
    names = record(ctx, results)
    validate.finish_report(ctx, row)
    return results, names, flagged(breaches(ctx.job, row, results))
