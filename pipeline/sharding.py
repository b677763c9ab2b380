"""Sharded runs: one partition split by file (a sql source: by key range), scored in parallel, published once.

``plan`` splits the partition's files into shards and finds duplicate keys across all of
them (reading only the key columns); ``run.score_shard`` runs the scoring steps of
``pipeline.steps.SCORING`` on one shard in its own staging folder (an Airflow mapped task
each, so a failed shard is retried alone); ``combine`` adds up the shards' counts and
applies the partition-wide policies (empty partition, quarantine threshold, drift). The
output step and finalize then treat the run's root like an unsharded run.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline import ledger, steps
from pipeline.bookkeeping import stage
from pipeline.context import counted
from pipeline.partition import parse_date, partition_files
from pipeline.staging import RunSpec

if TYPE_CHECKING:
    from pipeline.context import RunContext


def plan(ctx: RunContext) -> tuple[RunSpec, list[RunSpec]]:
    """Split a partition into shards by file (a sql source: by rows, read once, see ``sqlsource.plan``); find
    duplicate keys across all of them first.

    Returns the run's root spec (with the number of shards actually used: never more than
    files) and one spec per shard. The duplicate keys go to the plan state file, so each
    shard's validation sees duplicates that span shards. A stage of the run like the others: timed in
    the ledger, and a failure (a source that cannot be read) marks the attempt failed.
    """
    with stage(ctx, steps.PLAN.name):
        if ctx.job.source.kind == "sql":
            from pipeline import sqlsource

            return sqlsource.plan(ctx)
        return _plan_files(ctx)


def _plan_files(ctx: RunContext) -> tuple[RunSpec, list[RunSpec]]:
    from pipeline.ingest import entity_key_type, missing_markers, partition_keys

    job, spec = ctx.job, ctx.spec
    files = partition_files(job.source_root(), job.source.layout, job.source.format, parse_date(spec.partition_date),
                            ignore=job.source.ignore)
    shards = max(1, min(job.source.shards, len(files)))
    root = replace(spec, shards=shards, shard=None)
    markers = (missing_markers(ctx.card["inputs"], job.entity_key, job.source.null_values,
                               job.source.null_values_by_column)[job.entity_key]
               if job.source.format == "csv" else None)  # the key read as each shard's ingest reads it
    duplicates = partition_keys(files, job.source.format, job.entity_key, job.source.rename,
                                key_type=entity_key_type(job, ctx.card), markers=markers)
    root.run_dir.mkdir(parents=True, exist_ok=True)
    root.write_json(steps.PLAN_STATE, {"duplicate_keys": duplicates, "files": [str(f) for f in files]})
    ctx.log.info("planned %d shard(s) over %d file(s); %d duplicate key(s) across the partition", shards,
                 len(files), len(duplicates))
    return root, [root.for_shard(i) for i in range(shards)]


def combine(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """After every shard: add up their counts in the ledger, apply the threshold and drift to the partition."""
    from pipeline import drift, ingest, validate

    spec = ctx.spec
    shard_specs = [spec.for_shard(i) for i in range(spec.shards)]
    states = [s.read_json(steps.SHARD_STATE) for s in shard_specs]
    counts = counted(counts, **{field: sum(int(st["counts"].get(field, 0)) for st in states)
                                for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored")})
    for step in steps.SCORING:  # wall time of the slowest shard
        ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, stage=step.name,
                      seconds=max(st["seconds"].get(step.name, 0.0) for st in states))
    planned = spec.read_json(steps.PLAN_STATE, run_level=True)["files"]
    ingest.check_not_empty(ctx, counts["rows_in"], len(planned), counts)
    report = validate.merge_shard_reports(ctx)  # before the threshold: a failing run has its report too
    unexpected = json.loads(report.with_suffix(".json").read_text())["unexpected_counts"]
    validate.check_threshold(ctx, counts["rows_in"], counts["rows_quarantined"], unexpected, report, counts)
    spec.write_json(steps.SCORE_STATE, {"scored_at": max(s.read_json(steps.SCORE_STATE)["scored_at"]
                                                         for s in shard_specs)})
    if spec.cascade:  # the routes' counts, the router's drift on its own scores, each route model's drift
        from pipeline import cascade

        cascade.combine(ctx, shard_specs, counts)
    else:
        drift.check(ctx, counts["rows_scored"], counts)
    return counts
