"""Persist (batch inference with persistence): replace the partition in the job's predictions table.

The scored rows get the run's columns (partition date, model name and version, run id,
scored at) and go, with the quarantined rows, into one transaction of ``store`` (ADBC
binary COPY on PostgreSQL, executemany on SQLite): readers see the old partition or the
new one, never a mix.

A quarantined row's original values are kept as JSON (``row_values``) through
``pipeline.textsafe.storable``: a text holding a NUL or bytes that were not UTF-8 is stored as
``{"$text_escaped": "..."}`` (PostgreSQL refuses both raw) and comes back exactly with
``textsafe.restore``. A write the database refuses for its data (a text it cannot store, duplicate
keys) fails as ``DataRefusedError``: not retryable, naming the partition, the table and what to fix.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import ledger, steps
from pipeline.context import counted
from pipeline.kernels.conform import original_values
from pipeline.partition import parse_date
from pipeline.staging import read_batches, staged_rows, staged_schema
from pipeline.store import analyst, job_tables, writes
from pipeline.textsafe import escaped_paths, safe_text, storable

if TYPE_CHECKING:
    from pipeline.context import RunContext


def persist_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The persist stage: ``scored`` + ``quarantine`` replace the partition (nothing on a dry run)."""
    if ctx.spec.dry_run:
        ctx.log.info("persist: dry run, nothing written")
        return counted(counts, rows_written=0)
    job = ctx.job
    day = parse_date(ctx.spec.partition_date)
    key_type = staged_schema(ctx.parts(steps.SCORED)[0]).field(job.entity_key).type
    job_tables.ensure_predictions(ctx.engine, job.output.table, job.entity_key,
                             "int" if pa.types.is_integer(key_type) else "str", job.output.schema_, job.job_id)
    # an empty day replacing a published one is allowed (validation.on_empty: succeed) but never silent
    before = (analyst.count_partition(ctx.engine, job.output.table, day, job.output.schema_)
              if staged_rows(ctx.parts(steps.SCORED)) == 0 else 0)
    written = writes.replace_partition(  # a refusal of the data itself: DataRefusedError (errors.store_failure)
        ctx.engine, table=job.output.table, key=job.entity_key, job_id=job.job_id,
        partition_date=day, batches=prediction_batches(ctx),
        quarantine=quarantine_rows(ctx), schema=job.output.schema_, attempt=(ctx.spec.run_id, ctx.spec.attempt),
        constants=run_columns(ctx),
    )
    if before and not written:
        warn_emptied(ctx, before)
    return counted(counts, rows_written=written)


EMPTIED = "published_rows_replaced_by_empty"  # the ledger warning's code (scoring_runs.warnings)


def warn_emptied(ctx: RunContext, before: int) -> None:
    """The run replaced a published day holding rows by an empty one: a WARNING and a ledger warning."""
    spec, job = ctx.spec, ctx.job
    note = (f"{EMPTIED}: partition {spec.partition_date} of {job.output.table} held {before} published rows; this "
            f"run replaced them with 0 rows (validation.on_empty: {job.validation.on_empty}). If the source was "
            "exported incompletely, re-export it and re-run the partition.")
    ctx.log.warning("%s", note)
    ledger.add_warning(ctx.engine, spec.job_id, spec.run_id, spec.attempt, note)


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
    text, and as an integer (``entity_key_int``) when the job's key is one and this row's parsed.

    A batch that may hold a value PostgreSQL refuses (a NUL, bytes that were not UTF-8, a NaN: found with
    pyarrow.compute, not row by row) has its rows' values made ``textsafe.storable`` (restored exactly by
    ``textsafe.restore``), its key and reasons shown with ``textsafe.safe_text``."""
    spec, key = ctx.spec, ctx.job.entity_key
    day = parse_date(spec.partition_date)
    now = ledger.now()
    integer_key = _integer_key(ctx)
    escaped: dict[str, int] = {}
    for batch in read_batches(ctx.parts(steps.QUARANTINE), ctx.batch_rows):
        rows = batch.to_pylist()
        if not rows:
            continue
        if not may_need_escape(batch):
            yield [quarantine_row(spec, day, now, key, integer_key, row, original_values(_values(row)),
                                  row["reasons"], row_key=None if row[key] is None else str(row[key]))
                   for row in rows]
            continue
        out = []
        for row in rows:
            values = original_values(_values(row))
            for column in escaped_paths(values):
                escaped[column] = escaped.get(column, 0) + 1
            out.append(quarantine_row(spec, day, now, key, integer_key, row, storable(values),
                                      safe_text(row["reasons"]),
                                      row_key=None if row[key] is None else safe_text(str(row[key]))))
        yield out
    if escaped:
        ctx.log.warning(
            "quarantine: values PostgreSQL cannot store as they are (a NUL, bytes that are not UTF-8, NaN) are kept in "
            "row_values as {\"$text_escaped\": ...} / {\"$number\": ...}, restored exactly by "
            "pipeline.textsafe.restore: %s", ", ".join(f"{c} ({n} rows)" for c, n in escaped.items()))


def _values(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "reasons"}


def quarantine_row(spec: Any, day: dt.date, now: dt.datetime, key: str, integer_key: bool, row: dict[str, Any],
                   values: Any, reasons: str, row_key: str | None) -> dict[str, Any]:
    """One ``scoring_quarantine`` row."""
    return {"job_id": spec.job_id, "partition_date": day, "run_id": spec.run_id, "entity_key": row_key,
            "entity_key_int": typed_key(row[key]) if integer_key else None, "reasons": reasons,
            "row_values": json.dumps(values, default=str), "quarantined_at": now}


def may_need_escape(batch: pa.RecordBatch) -> bool:
    """The batch may hold a value ``textsafe.storable`` changes: a text with a NUL, a non-null binary column
    (ingest's original bytes of text that was not UTF-8), a NaN or infinity; a type not looked into counts."""
    for column in batch.columns:
        typ = column.type
        if column.null_count == len(column):
            continue
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            if pc.any(pc.match_substring(column, "\x00")).as_py():
                return True
        elif pa.types.is_floating(typ):
            if not pc.all(pc.is_finite(column)).as_py():
                return True
        elif not (pa.types.is_integer(typ) or pa.types.is_boolean(typ) or pa.types.is_temporal(typ)
                  or pa.types.is_decimal(typ) or pa.types.is_null(typ)):
            return True
    return False


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
