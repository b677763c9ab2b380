"""Persist (batch inference with persistence): replace the partition in the job's predictions table.

The scored rows get the run's columns (partition date, model name and version, run id,
scored at) and go, with the quarantined rows, into one transaction of ``store`` (ADBC
binary COPY on PostgreSQL, executemany on SQLite): readers see the old partition or the
new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import ledger, steps, store
from pipeline.context import counted
from pipeline.ingest import original_values
from pipeline.partition import parse_date
from pipeline.staging import read_batches, staged_schema

if TYPE_CHECKING:
    from pipeline.context import RunContext


def persist_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The persist stage: ``scored`` + ``quarantine`` replace the partition (nothing on a dry run)."""
    if ctx.spec.dry_run:
        ctx.log.info("persist: dry run, nothing written")
        return counted(counts, rows_written=0)
    job = ctx.job
    key_type = staged_schema(ctx.parts(steps.SCORED)[0]).field(job.entity_key).type
    store.ensure_predictions(ctx.engine, job.output.table, job.entity_key,
                             "int" if pa.types.is_integer(key_type) else "str", job.output.schema_)
    written = store.replace_partition(
        ctx.engine, table=job.output.table, key=job.entity_key, job_id=job.job_id,
        partition_date=parse_date(ctx.spec.partition_date), batches=prediction_batches(ctx),
        quarantine=quarantine_rows(ctx), schema=job.output.schema_, attempt=(ctx.spec.run_id, ctx.spec.attempt),
        constants=run_columns(ctx),
    )
    return counted(counts, rows_written=written)


def run_columns(ctx: RunContext) -> dict[str, Any]:
    """The run's columns, the same on every row: partition date, model name and version (unless a cascade's
    rows name the model that scored each of them), run id, scored at. The store adds them to each row."""
    spec = ctx.spec
    scored = staged_schema(ctx.parts(steps.SCORED)[0]).names
    constants = {"partition_date": parse_date(spec.partition_date), "model_name": spec.model_name,
                 "model_version": spec.model_version, "run_id": spec.run_id,
                 "scored_at": dt.datetime.fromisoformat(spec.read_json(steps.SCORE_STATE)["scored_at"])}
    return {name: value for name, value in constants.items() if name not in scored}


def prediction_batches(ctx: RunContext) -> Iterator[pa.Table]:
    """The scored rows, batch by batch (``run_columns`` and null lineage columns are the store's to add)."""
    for batch in read_batches(ctx.parts(steps.SCORED), ctx.batch_rows):
        yield pa.Table.from_batches([batch])


def quarantine_rows(ctx: RunContext) -> Iterator[list[dict[str, Any]]]:
    """The quarantined rows as ``scoring_quarantine`` rows (original values as JSON), batch by batch."""
    spec, key = ctx.spec, ctx.job.entity_key
    day = parse_date(spec.partition_date)
    now = ledger.now()
    for batch in read_batches(ctx.parts(steps.QUARANTINE), ctx.batch_rows):
        rows = batch.to_pylist()
        if not rows:
            continue
        yield [
            {"job_id": spec.job_id, "partition_date": day, "run_id": spec.run_id,
             "entity_key": None if row[key] is None else str(row[key]),
             "reasons": row["reasons"],
             "row_values": json.dumps(original_values({k: v for k, v in row.items() if k != "reasons"}),
                                      default=str),
             "quarantined_at": now}
            for row in rows
        ]

