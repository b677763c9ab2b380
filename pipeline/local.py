"""The local runner: every step of a run in this process, without Airflow (``scoring run``).

It follows the same table of steps as the DAG (``pipeline.steps.plan``); a sharded job's
shards run one after the other here, where the DAG maps them onto workers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline import push, run, sharding, steps
from pipeline.config import JobConfig
from pipeline.connections import Resolver
from pipeline.partition import parse_date
from pipeline.sources import source_for
from pipeline.store import operational


def run_partition(
    job: JobConfig,
    partition_date: dt.date | str,
    *,
    run_id: str | None = None,
    model_ref: str | None = None,
    dry_run: bool = False,
    url: str | None = None,
    mode: str | None = None,
    resend: bool = False,
    resolver: Resolver | None = None,
) -> dict[str, Any]:
    """Every step of one partition's run in order; returns the finalized ledger row."""
    day = parse_date(partition_date)
    # a partition that is not there is no attempt (as the DAG's sensor waits before anything starts);
    # one that holds what it should not (a stray file, an escaping link) is: ingest records why it failed
    source_for(job).require(day, resolver)
    run_id = run_id or f"cli__{day.isoformat()}__{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    spec = run.start(job, run_id=run_id, partition_date=day, model_ref=model_ref, dry_run=dry_run, url=url,
                     mode=mode, resend=resend, holder_kind="process", resolver=resolver)
    ctx = run.context(job, spec, url, resolver)
    summary: dict[str, Any] = {}
    for step in steps.plan(spec.mode, sharded=job.source.shards > 1):
        if step is steps.PLAN:
            root, shards = sharding.plan(ctx)
            ctx = ctx.with_spec(root)
        elif step is steps.SCORE_SHARD:
            for one in shards:  # one after the other here; the DAG maps them onto workers
                run.score_shard(ctx.with_spec(one))
        elif step is steps.FINALIZE:
            summary = run.finalize(ctx)
        else:
            run.run_step(ctx, step)
    if summary["drifted_features"]:
        run.drift_alert(job, day, run_id, url, resolver)
    return summary


def redrive(job: JobConfig, partition_date: dt.date | str, url: str | None = None,
            resolver: Resolver | None = None) -> dict[str, Any]:
    """Send a partition's dead-lettered batches again (``scoring redrive``)."""
    eng = run.engine(job, url)
    operational.ensure_ledger(eng)
    return push.redrive(eng, job, parse_date(partition_date), resolver=resolver)
