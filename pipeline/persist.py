"""Persist (batch inference with persistence): replace the partition in the job's predictions table.

The scored rows get the run's columns (partition date, model name and version, run id,
scored at) and go, with the quarantined rows, into one transaction of ``store`` (ADBC
binary COPY on PostgreSQL, executemany on SQLite): readers see the old partition or the
new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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
                             "int" if pa.types.is_integer(key_type) else "str", job.output.schema_, job.job_id)
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
    """The quarantined rows as ``scoring_quarantine`` rows (original values as JSON), batch by batch; the key as
    text, and as an integer (``entity_key_int``) when the job's key is one and this row's parsed."""
    spec, key = ctx.spec, ctx.job.entity_key
    day = parse_date(spec.partition_date)
    now = ledger.now()
    integer_key = _integer_key(ctx)
    for batch in read_batches(ctx.parts(steps.QUARANTINE), ctx.batch_rows):
        rows = batch.to_pylist()
        if not rows:
            continue
        yield [
            {"job_id": spec.job_id, "partition_date": day, "run_id": spec.run_id,
             "entity_key": None if row[key] is None else str(row[key]),
             "entity_key_int": typed_key(row[key]) if integer_key else None,
             "reasons": row["reasons"],
             "row_values": json.dumps(original_values({k: v for k, v in row.items() if k != "reasons"}),
                                      default=str),
             "quarantined_at": now}
            for row in rows
        ]


BIGINT = (-(2 ** 63), 2 ** 63 - 1)
INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]{1,19}\s*")


def _integer_key(ctx: RunContext) -> bool:
    """The job's key is an integer: the scored rows' key column is (the predictions table's key is BIGINT)."""
    parts = ctx.parts(steps.SCORED)
    if not parts or not parts[0].exists():
        return False
    return pa.types.is_integer(staged_schema(parts[0]).field(ctx.job.entity_key).type)


def typed_key(value: Any) -> int | None:
    """A quarantined row's key as the BIGINT the predictions table would hold: an int, an integral float, or
    the text of an integer (surrounding blanks allowed); None when it is none of these or out of range."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (isinstance(value, str) and INTEGER_TEXT.fullmatch(value)):
        number = int(value)
    return number if number is not None and BIGINT[0] <= number <= BIGINT[1] else None
