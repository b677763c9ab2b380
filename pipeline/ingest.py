"""Ingest: a partition's rows (a shard's share of them) from the job's source into ``ingested.arrow``.

The source (``pipeline.sources``: a folder of files, or a query) reads; ``pipeline.kernels.conform``
turns what it reads into the contract's schema, the same way for every source: partition-level
problems (an unreadable file, a missing column, a type that cannot be read as the contract's type)
raise InputError naming the partition, the file or query and the column; rows are never dropped here
(row-level problems are validation's job: a value that is not a usable number is null with its text
in ``__raw__<column>``, a missing-value marker's text in ``__blank__<column>``, text that is not
valid UTF-8 in ``__badtext__<column>``). This stage picks the columns to read (a cascade: every
model's), stages the rows, and applies the partition's empty policy (``validation.on_empty``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import steps
from pipeline.context import counted
from pipeline.errors import InputError
from pipeline.kernels.conform import Wanted, blank_policy
from pipeline.keys import entity_key_type
from pipeline.partition import parse_date
from pipeline.routes import ingest_inputs
from pipeline.sources import source_for
from pipeline.staging import StagedWriter

if TYPE_CHECKING:
    from pipeline.context import RunContext


def ingest_partition(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ingest stage: the run's rows (a shard's share of them) into ``ingested.arrow``; rows_in."""
    job, spec = ctx.job, ctx.spec
    inputs = ingest_inputs(ctx)  # a cascade: every column a model needs (each model's validation checks its own)
    wanted = Wanted(inputs, job.entity_key, parse_date(spec.partition_date),
                    blank_policy(inputs, job.validation.blank_is_missing), entity_key_type(job, ctx.card))
    with StagedWriter(ctx.path(steps.INGESTED)) as writer:
        result = source_for(job).read(ctx, wanted, writer.write)
        writer.schema = writer.schema or result.schema  # an empty partition still has its schema
    spec.write_json(steps.INGEST_STATE, {"files": result.files, "duplicate_keys": result.duplicate_keys,
                                         "ignored_columns": result.ignored_columns})
    if spec.sees_partition:  # a sharded run checks the whole partition in combine
        counts = counted(counts, rows_in=result.rows)
        check_not_empty(ctx, result.rows, len(result.files), counts)
    return counted(counts, rows_in=result.rows)


def check_not_empty(ctx: RunContext, rows: int, files: int, counts: dict[str, Any] | None = None) -> None:
    """An empty partition fails (``validation.on_empty: fail``, the default) or goes on with a warning."""
    if rows:
        return
    job, day = ctx.job, parse_date(ctx.spec.partition_date)
    holds = source_for(job).empty(day, files)
    if job.validation.on_empty == "fail":
        raise InputError(
            f"partition {day}: {holds}. Nothing was published. "
            "If the upstream export is incomplete, re-export it and re-run the partition; if an empty "
            "day is normal for this job, set validation.on_empty: succeed in the job file.",
            counts=counts or {"rows_in": 0},
        )
    ctx.log.warning("partition %s is empty (%s): continuing with zero rows (validation.on_empty: succeed)", day,
                    holds)
