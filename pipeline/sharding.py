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
from typing import TYPE_CHECKING, Any

from pipeline import ab, cascade, drift, ingest, ledger, steps, validate
from pipeline.bookkeeping import stage
from pipeline.context import counted
from pipeline.sources import source_for
from pipeline.staging import RunSpec

if TYPE_CHECKING:
    from pipeline.context import RunContext


def plan(ctx: RunContext) -> tuple[RunSpec, list[RunSpec]]:
    """Split a partition into shards by file (a sql source: by rows, read once): the job's source plans
    (``pipeline.sources``); duplicate keys across all of them are found first.

    Returns the run's root spec (with the number of shards actually used: never more than
    files) and one spec per shard. The duplicate keys go to the plan state file, so each
    shard's validation sees duplicates that span shards. A stage of the run like the others: timed in
    the ledger, and a failure (a source that cannot be read) marks the attempt failed.
    """
    with stage(ctx, steps.PLAN.name):
        return source_for(ctx.job).plan(ctx)


def combine(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """After every shard: add up their counts in the ledger, apply the threshold and drift to the partition."""
    spec = ctx.spec
    shard_specs = spec.shard_specs()
    states = [s.read_json(steps.SHARD_STATE) for s in shard_specs]
    counts = counted(counts, **{field: sum(int(st["counts"].get(field, 0)) for st in states)
                                for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored")})
    for step in steps.SCORING:  # wall time of the slowest shard (a part's is inside its step's)
        ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, stage=step.name,
                      seconds=max(st["seconds"].get(step.name, 0.0) for st in states))
    parts = [st.get("parts", {}) for st in states]  # each part's label: the slowest shard's, as for the steps
    if any(parts):
        ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt,
                      parts={label: max(p.get(label, 0.0) for p in parts) for label in set().union(*parts)})
    planned = spec.read_json(steps.PLAN_STATE, run_level=True)["files"]
    ingest.check_not_empty(ctx, counts["rows_in"], len(planned), counts)
    report = validate.merge_shard_reports(ctx)  # before the threshold: a failing run has its report too
    unexpected = json.loads(report.with_suffix(".json").read_text())["unexpected_counts"]
    validate.check_threshold(ctx, counts["rows_in"], counts["rows_quarantined"], unexpected, report, counts)
    spec.write_json(steps.SCORE_STATE, {"scored_at": max(s.read_json(steps.SCORE_STATE)["scored_at"]
                                                         for s in shard_specs)})
    ab.combine(shard_specs, counts)  # a split's rows per arm: every shard's
    if spec.routes_after_score:  # the routes' counts, the router's drift on its own scores, each route model's
        cascade.combine(ctx, shard_specs, counts)
    else:
        drift.check(ctx, counts["rows_scored"], counts)
    return counts
