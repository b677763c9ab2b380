"""The run lifecycle: open a run, run its steps with their bookkeeping, finalize it.

A step's work lives in its stage module (the step table names the function: ``Step.function``);
this module only starts the run, times each step, records its counts in the ledger (or, on
failure, the error and what was counted) and closes the run. The DAG's tasks, the sharded path
(``pipeline.sharding``) and ``scoring run`` (``pipeline.local``) all call ``run_step``
with the steps of ``pipeline.steps``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pipeline.drift as drift
from pipeline import ab, cascade, lease, ledger, metrics, settings, shadow, steps
from pipeline.bookkeeping import check_inputs, stage
from pipeline.config import JobConfig, load_job
from pipeline.connections import Resolver
from pipeline.context import RunContext, engine_for_job, run_log
from pipeline.errors import (
    ConfigError,
    ReconciliationError,
    ScoringError,
)
from pipeline.kernels.validate import load_gx
from pipeline.partition import parse_date
from pipeline.resolve import Models
from pipeline.staging import RunSpec
from pipeline.store import analyst, operational


def find_job(job_id: str) -> JobConfig:
    """Load a job file by id from the jobs folder."""
    folder = settings.jobs_dir()
    path = folder / f"{job_id}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"no job file {path} (jobs in {folder}: {', '.join(known) or 'none'})")
    return load_job(path)


def engine(job: JobConfig, url: str | None = None) -> Any:
    """The job's output database (ledger, predictions, quarantine)."""
    return engine_for_job(job, url)


def preload() -> None:
    """Import the heavy libraries the stages use (Great Expectations, scikit-learn) now.

    A process that runs several stages, a benchmark or a worker started ahead of its tasks
    pays these imports (seconds, mostly Great Expectations) once instead of in its first stage.
    """
    for step in steps.TABLE:
        step.function()
    load_gx()
    import sklearn.ensemble  # noqa: F401


# -- opening a run ---------------------------------------------------------------------
def start(job: JobConfig, *, run_id: str, partition_date: dt.date | str, model_ref: str | None = None,
          dry_run: bool = False, url: str | None = None, mode: str | None = None, resend: bool = False,
          holder_kind: str = "task", resolver: Resolver | None = None) -> RunSpec:
    """Pin the model version and output mode for the run, open its ledger row and staging area.

    A run refused here (an unknown model version or alias, an output mode the job lacks, another
    attempt of the partition alive: ``pipeline.lease``) still gets its ledger row: status
    ``failed``, stage ``start``, with the error. ``holder_kind`` is ``process`` when this process
    runs every step (``scoring run``), ``task`` for one Airflow task of the run. Every model the run
    touches is resolved here, anchored (``pipeline.resolve.Models``, through ``resolver``), and pinned; a
    ``model.split``'s arms too (``ab.pin``: an arm with another contract than the champion's fails the run here,
    before a row is read), in the spec for every task of the run (``ab.pinned``).
    """
    day = parse_date(partition_date)
    eng = engine(job, url)
    operational.ensure_ledger(eng)
    models = Models(resolver)
    try:
        mode = output_mode(job, mode)
        mv = models.resolve(job.model.name, model_ref or job.model.ref)
        cascade_plan = cascade.pin(job, models) if job.cascade is not None else None
        arms = ab.pin(job, models, mv) if job.model.split else []
    except ScoringError as exc:
        attempt = ledger.start_attempt(eng, job_id=job.job_id, run_id=run_id, partition_date=day,
                                       mode=mode or job.output.mode, dry_run=dry_run, model_name=job.model.name,
                                       model_version=None)
        ledger.update(eng, job.job_id, run_id, attempt, status="failed", failed_stage="start", error=str(exc)[:4000],
                      finished_at=ledger.now())
        raise
    attempt = lease.open_attempt(eng, job_id=job.job_id, run_id=run_id, partition_date=day, mode=mode,
                                 dry_run=dry_run, model_name=mv.name, model_version=mv.version, kind=holder_kind)
    staging = lease.staging_of(job.job_id, day.isoformat(), run_id, attempt)
    staging.mkdir(parents=True, exist_ok=True)
    spec = RunSpec(job.job_id, run_id, attempt, day.isoformat(), mv.name, mv.version, dry_run, str(staging),
                   mode=mode, resend=resend, holder_kind=holder_kind, challengers=shadow.pin(job, models),
                   cascade=cascade_plan, arms=[a.as_dict() for a in arms], ab_salt=ab.salt(job) if arms else None)
    if arms:
        run_log(spec).info("A/B split (salt %r): %s; the champion v%d keeps the rest", ab.salt(job), ab.describe(arms),
                           mv.version)
    run_log(spec).info("started attempt %d with model %s v%d (ref %r), output mode %s%s%s", attempt, mv.name,
                       mv.version, model_ref or job.model.ref, mode, " [dry run]" if dry_run else "",
                       " [full resend]" if resend else "")
    return spec


def output_mode(job: JobConfig, override: str | None = None) -> str:
    """The run's output mode: the trigger's override if given, else the job's; it must be configured."""
    mode = override or job.output.mode
    if mode not in job.output.modes:
        need = "output.table" if mode == "persist" else "output.push.sink"
        raise ConfigError(
            f"job {job.job_id}: output mode {mode!r} is not configured (the job file has no {need}); "
            f"this job can run in: {', '.join(job.output.modes)}"
        )
    return mode


def context(job: JobConfig, spec: RunSpec, url: str | None = None, resolver: Resolver | None = None) -> RunContext:
    """The run context of one task (model card and engine resolved once)."""
    return RunContext.build(job, spec, url, resolver)


# -- steps -----------------------------------------------------------------------------
def run_step(ctx: RunContext, step: steps.Step) -> dict[str, Any]:
    """Run one step of ``pipeline.steps`` on the run's staged data, with its bookkeeping; an output step
    (persist, push) only after the quality gate (``drift.gate``: a blocking breach stops here)."""
    if step in steps.OUTPUTS.values():
        with stage(ctx, drift.GATE) as gate_counts:
            drift.gate(ctx, gate_counts)
    with stage(ctx, step.name) as counts:
        check_inputs(ctx, step)
        step.function()(ctx, counts)  # the stage fills counts as it goes: a late failure keeps them
    return counts


def score_shard(ctx: RunContext) -> dict[str, Any]:
    """One shard, start to scores: the steps of ``steps.SCORING`` in the shard's own staging folder."""
    for step in steps.SCORING:
        run_step(ctx, step)
    return ctx.spec.read_json(steps.SHARD_STATE)["counts"]


def finalize(ctx: RunContext, keep_staging: bool = False) -> dict[str, Any]:
    """Check the reconciliation, record drift and the flagged breaches and a split's assignment period (``ab.finish``:
    opened by the first run that publishes under it, never by a failed one), mark the attempt successful, clean up."""
    spec, eng = ctx.spec, ctx.engine
    with stage(ctx, steps.FINALIZE.name):
        row = ledger.get(eng, spec.job_id, spec.run_id, spec.attempt)
        problems = reconciliation_problems(ctx, row)
        if problems:
            raise ReconciliationError(
                f"partition {spec.partition_date}: the run does not reconcile: {'; '.join(problems)}. "
                f"Staging kept in {spec.staging_dir} for inspection; re-run the partition."
            )
        results, drifted, breach = drift.finish(ctx, row)
        ab.finish(ctx, row)
    finished = ledger.now()
    ledger.update(eng, spec.job_id, spec.run_id, spec.attempt, status="success", breach=breach, finished_at=finished,
                  duration_s=(finished - ledger.utc(row["started_at"])).total_seconds())
    shadow.publish(ctx)  # the champion's partition stands; the challengers' rows and comparisons follow it
    if not keep_staging:
        spec.cleanup()
    summary = ledger.get(eng, spec.job_id, spec.run_id, spec.attempt)
    metrics.emit_run(summary, metrics.max_psi(results), metrics.newest_published_day(eng, spec.job_id))
    summary["drifted_features"] = drifted
    fields = ("status", "mode", "drifted_features", "breach", *ledger.COUNT_FIELDS,
              *(ledger.PUSH_COUNT_FIELDS if spec.mode == "push" else ()))
    ctx.log.info("finalized: %s", {k: summary[k] for k in fields})
    return summary


def reconciliation_problems(ctx: RunContext, row: dict[str, Any]) -> list[str]:
    """Where the ledger row does not add up: rows in = scored + quarantined, and every scored row landed."""
    spec = ctx.spec
    rows_in, scored, quarantined = row["rows_in"], row["rows_scored"], row["rows_quarantined"]
    problems = []
    if rows_in != scored + quarantined:
        problems.append(f"rows_in {rows_in} != rows_scored {scored} + rows_quarantined {quarantined}")
    problems += cascade.reconciliation_problems(row)  # a cascade's routes add up (nothing to check otherwise)
    problems += ab.reconciliation_problems(row)  # a split's rows per arm add up
    if spec.dry_run:
        return problems
    if spec.mode == "push":
        sent = {k: row[k] or 0 for k in ("rows_delivered", "rows_dead_lettered", "rows_not_selected")}
        if scored != sum(sent.values()) or sent["rows_dead_lettered"]:
            problems.append(
                f"rows_in {rows_in} != rows_delivered {sent['rows_delivered']} + rows_dead_lettered "
                f"{sent['rows_dead_lettered']} + rows_not_selected {sent['rows_not_selected']} + "
                f"rows_quarantined {quarantined}")
        return problems
    table = ctx.job.output.table
    in_table = analyst.count_partition(ctx.engine, table, parse_date(spec.partition_date), ctx.job.output.schema_)
    if row["rows_written"] != scored or in_table != scored:
        problems.append(f"rows_scored {scored}, rows_written {row['rows_written']}, "
                        f"rows in {table} for the partition {in_table}")
    return problems


def drift_alert(job: JobConfig, partition_date: dt.date | str, run_id: str, url: str | None = None,
                resolver: Resolver | None = None) -> str | None:
    """Alert (ERROR log, optional webhook) on a drift breach of the run's partition; the DAG's finalize callback."""
    rows = drift.drifted_rows(engine(job, url), job.job_id, parse_date(partition_date), run_id)
    return drift.alert(job, partition_date, run_id, rows, resolver)
