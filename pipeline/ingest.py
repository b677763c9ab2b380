"""Ingest: read a partition's files batch by batch into the contract's schema.

Partition-level problems (an unreadable file, a missing column, a type that cannot be read
as the contract's type, a column whose type differs between the partition's files) raise
InputError naming the partition, file and column. Rows are never dropped here: row-level
problems are validation's job. A numeric value that is not a usable number (a blank or
unparseable string, NaN, an infinity) becomes null and its original text is kept in a
``__raw__<column>`` column, which validation's suite expects to be null: the row is then
quarantined with the reason ``invalid_number:<column>`` and its original value.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline import steps
from pipeline.errors import InputError
from pipeline.partition import parse_date, partition_dir, partition_files
from pipeline.staging import StagedWriter

if TYPE_CHECKING:
    from pipeline.context import RunContext

log = logging.getLogger(__name__)

ARROW_TYPES = {"float": pa.float64(), "int": pa.float64(), "category": pa.string(), "bool": pa.bool_()}
RAW_PREFIX = "__raw__"
# CSV: only an empty field is a missing value ("NA", "null", "NaN" are text: an invalid
# number, or a category); the contract's columns are read as text and parsed here, so a
# value far into a file never breaks Arrow's type guess from the first block.


def csv_convert(inputs: list[dict[str, Any]] | None = None) -> pacsv.ConvertOptions:
    text = {c["name"]: pa.string() for c in inputs or []}
    return pacsv.ConvertOptions(column_types=text, null_values=[""], strings_can_be_null=True)
NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def numeric_columns(inputs: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in inputs if ARROW_TYPES[c["type"]] == pa.float64()]


def contract_schema(inputs: list[dict[str, Any]], key: str, key_type: pa.DataType) -> pa.Schema:
    """Arrow schema of ingested rows: the key, the contract's columns, then ``__raw__`` columns."""
    fields = [pa.field(key, key_type)] + [pa.field(c["name"], ARROW_TYPES[c["type"]]) for c in inputs]
    return pa.schema(fields + [pa.field(RAW_PREFIX + n, pa.string()) for n in numeric_columns(inputs)])


def _family(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return str(t)


def _file_batches(path: Path, fmt: str, batch_rows: int, columns: list[str],
                  inputs: list[dict[str, Any]]) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
    else:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                                convert_options=csv_convert(inputs))
        yield from reader


def _file_schema(path: Path, fmt: str, inputs: list[dict[str, Any]]) -> pa.Schema | None:
    """The file's schema; None for a zero-byte CSV (a file with no rows, not a broken one)."""
    if fmt == "parquet":
        return pq.read_schema(path)
    if path.stat().st_size == 0:
        return None
    return pacsv.open_csv(path, convert_options=csv_convert(inputs)).schema


@dataclass
class IngestResult:
    rows: int
    files: list[str]
    duplicate_keys: list[Any]
    ignored_columns: list[str]
    schema: pa.Schema


def ingest(
    files: list[Path],
    *,
    fmt: str,
    inputs: list[dict[str, Any]],
    key: str,
    partition_date: dt.date,
    batch_rows: int,
    write: Any,
) -> IngestResult:
    """Stream ``files`` into ``write(table)`` in the contract schema; return counts.

    Args:
        write: called with each pyarrow Table in contract schema (e.g. StagedWriter.write).
    """
    wanted = [key] + [c["name"] for c in inputs]
    schemas = _file_schemas(files, fmt, inputs, wanted, partition_date)
    if fmt == "parquet":  # CSV has no schema: its per-file type inference is not a schema change
        _same_types_in_every_file(schemas, wanted, partition_date)
    key_type = _key_type(schemas, key, partition_date)
    target = contract_schema(inputs, key, key_type)
    ignored = sorted({n for s in schemas.values() for n in s.names} - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)
    rows = 0
    keys: list[pa.ChunkedArray] = []
    for path in schemas:
        try:
            for batch in _file_batches(path, fmt, batch_rows, wanted, inputs):
                table = _conform(pa.Table.from_batches([batch]).select(wanted), target, path, partition_date)
                write(table)
                rows += table.num_rows
                keys.append(table.column(key))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise InputError(
                f"partition {partition_date}: cannot read file {path}: {exc}. "
                "The file is truncated or corrupt; re-export it upstream, then re-run."
            ) from None
    duplicates = _duplicates(keys)
    log.info("partition %s: ingested %d rows from %d files", partition_date, rows, len(files))
    return IngestResult(rows, [str(f) for f in files], duplicates, ignored, target)


def _file_schemas(files: list[Path], fmt: str, inputs: list[dict[str, Any]], wanted: list[str],
                  partition_date: dt.date) -> dict[Path, pa.Schema]:
    """Each readable file's schema; an unreadable file, a repeated or a missing column fails the partition."""
    schemas: dict[Path, pa.Schema] = {}
    for path in files:
        try:
            schema = _file_schema(path, fmt, inputs)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                f"partition {partition_date}: cannot read file {path}: {exc}. "
                "The file is truncated or not valid "
                f"{fmt}; re-export it upstream, then re-run this partition."
            ) from None
        if schema is None:
            log.warning("partition %s: %s is empty (0 bytes): no rows from it", partition_date, path)
            continue
        schemas[path] = schema
        repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
        if repeated:
            raise InputError(
                f"partition {partition_date}: file {path} has column(s) {', '.join(repeated)} more than once; "
                "fix the export so that every column name is unique."
            )
        missing = [c for c in wanted if c not in schemas[path].names]
        if missing:
            raise InputError(
                f"partition {partition_date}: file {path} has no column(s) {', '.join(missing)} "
                f"required by the model's input contract (found: {', '.join(schemas[path].names)}). "
                "Fix the export or register a model whose contract matches."
            )
    return schemas


def _same_types_in_every_file(schemas: dict[Path, pa.Schema], wanted: list[str], partition_date: dt.date) -> None:
    """A contract column must have one kind of type (number, text, ...) in all of a partition's files."""
    for name in wanted:
        seen: dict[str, Path] = {}
        for path, schema in schemas.items():
            family = _family(schema.field(name).type)
            if family != "null":
                seen.setdefault(family, path)
        if len(seen) > 1:
            detail = "; ".join(f"{fam} in {path}" for fam, path in seen.items())
            raise InputError(
                f"partition {partition_date}: column {name!r} has a different type in different files of the "
                f"partition ({detail}). The files were exported with different schemas; re-export them "
                "with one schema, then re-run the partition."
            )


def _key_type(schemas: dict[Path, pa.Schema], key: str, partition_date: dt.date) -> pa.DataType:
    types = {s.field(key).type for s in schemas.values()} - {pa.null()}  # all-null keys: validation's job
    if not types:
        return pa.int64()
    if all(pa.types.is_integer(t) for t in types):
        return pa.int64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types):
        return pa.string()
    raise InputError(
        f"partition {partition_date}: entity key {key!r} must be an integer or a string in every "
        f"file; found {', '.join(sorted(map(str, types)))}"
    )


def _conform(table: pa.Table, target: pa.Schema, path: Path, partition_date: dt.date) -> pa.Table:
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in target:
        if field.name.startswith(RAW_PREFIX):
            continue
        column = table.column(field.name)
        if field.type == pa.float64():
            columns[field.name], columns[RAW_PREFIX + field.name] = _number(column, field.name, path, partition_date)
            continue
        if column.type != field.type:
            try:
                column = pc.cast(column, field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(
                    f"partition {partition_date}: file {path}, column {field.name!r} has type "
                    f"{column.type} that cannot be read as {field.type} ({exc}). "
                    "Fix the export's column type."
                ) from None
        columns[field.name] = column
    return pa.Table.from_arrays([columns[f.name] for f in target], schema=target)


def _number(column: pa.ChunkedArray, name: str, path: Path, partition_date: dt.date) -> tuple[Any, Any]:
    """(float64 values, original text of the values that are not usable numbers, else null)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = pa.nulls(len(column), pa.string())
    if _family(column.type) == "text":
        text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
        ok = pc.match_substring_regex(text, NUMBER_RE)
        bad = pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(ok, False)))
        if pc.any(bad).as_py() and not pc.any(ok).as_py():
            sample = pc.unique(pc.filter(column, bad))[:3].to_pylist()
            raise InputError(
                f"partition {partition_date}: file {path}, column {name!r} holds text that cannot be read as "
                f"numbers (e.g. {', '.join(repr(v) for v in sample)}): not one value in a batch of "
                f"{len(column)} rows parses. The column's content or type changed upstream; fix the export."
            )
        values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
        huge = pc.fill_null(pc.is_inf(values), False)  # '1e400' parses to infinity: not a usable number
        if pc.any(huge).as_py():
            bad = pc.or_(bad, huge)
            values = pc.if_else(huge, pa.scalar(None, pa.float64()), values)
        return values, pc.if_else(bad, pc.cast(column, pa.string()), nulls)
    try:
        # integers beyond 2**53 lose precision as float64 (the contract's type): accepted, as
        # float64 features always are
        values = pc.cast(column, pa.float64(), safe=False) if pa.types.is_integer(column.type) else pc.cast(
            column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(
            f"partition {partition_date}: file {path}, column {name!r} has type {column.type} that cannot be "
            f"read as float64 ({exc}). Fix the export's column type."
        ) from None
    bad = pc.fill_null(pc.or_(pc.is_nan(values), pc.is_inf(values)), False)
    if not pc.any(bad).as_py():
        return values, nulls
    return pc.if_else(bad, pa.scalar(None, pa.float64()), values), pc.if_else(bad, pc.cast(values, pa.string()), nulls)


def partition_keys(files: list[Path], fmt: str, key: str) -> list[Any]:
    """Duplicate entity keys across a partition's files, reading only the key column.

    Files that cannot be read here are skipped: the shard that reads them reports why.
    """
    columns = []
    for path in files:
        try:
            if fmt == "parquet":
                table = pq.read_table(path, columns=[key])
            elif path.stat().st_size:
                table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=[key]))
            else:
                continue
        except (pa.ArrowException, OSError, KeyError):
            continue
        if key in table.column_names:
            columns.append(table.column(key))
    return _duplicates(columns)


def _duplicates(keys: list[pa.ChunkedArray]) -> list[Any]:
    """Entity keys that occur more than once in the partition (nulls are validation's job).

    Integer keys are sorted with numpy (16 bytes a row at the peak; Arrow's value_counts
    needs about 100, over 1 GB at 10M rows); other keys use value_counts.
    """
    chunks = [chunk for column in keys for chunk in column.chunks]
    if not chunks:
        return []
    if all(pa.types.is_integer(c.type) for c in chunks):
        values = np.concatenate([c.drop_null().to_numpy() for c in chunks])
        values.sort()
        repeated = values[1:][values[1:] == values[:-1]]
        return np.unique(repeated).tolist()
    counts = pa.chunked_array(chunks).value_counts()
    values, freq = counts.field("values"), counts.field("counts")
    mask = pc.and_(pc.greater(freq, 1), pc.is_valid(values))
    return pc.filter(values, mask).to_pylist()


# -- the stage ---------------------------------------------------------------------------
def ingest_partition(ctx: RunContext) -> dict[str, Any]:
    """The ingest stage: the run's files (a shard's share of them) into ``ingested.arrow``; rows_in."""
    from pipeline.sharding import files_of_shard

    job, spec = ctx.job, ctx.spec
    day = parse_date(spec.partition_date)
    if spec.shard is not None:  # the files the plan saw, so a retried shard reads the same ones
        files = files_of_shard(spec)
    else:
        files = partition_files(job.source_root(), job.source.layout, job.source.format, day)
    with StagedWriter(ctx.path(steps.INGESTED)) as writer:
        result = ingest(files, fmt=job.source.format, inputs=ctx.card["inputs"], key=job.entity_key,
                        partition_date=day, batch_rows=ctx.batch_rows, write=writer.write)
        writer.schema = writer.schema or result.schema  # an empty partition still has its schema
    spec.write_json(steps.INGEST_STATE, {"files": result.files, "duplicate_keys": result.duplicate_keys,
                                         "ignored_columns": result.ignored_columns})
    if spec.shard is None:  # a sharded run checks the whole partition in combine
        check_not_empty(ctx, result.rows, len(files))
    return {"rows_in": result.rows}


def check_not_empty(ctx: RunContext, rows: int, files: int, counts: dict[str, Any] | None = None) -> None:
    """An empty partition fails (``validation.on_empty: fail``, the default) or goes on with a warning."""
    if rows:
        return
    job, day = ctx.job, parse_date(ctx.spec.partition_date)
    where = partition_dir(job.source_root(), job.source.layout, day)
    if job.validation.on_empty == "fail":
        raise InputError(
            f"partition {day}: the {files} file(s) in {where} hold no rows. Nothing was published. "
            "If the upstream export is incomplete, re-export it and re-run the partition; if an empty "
            "day is normal for this job, set validation.on_empty: succeed in the job file.",
            counts=counts or {"rows_in": 0},
        )
    ctx.log.warning("partition %s is empty (%d file(s) in %s, 0 rows): continuing with zero rows "
                    "(validation.on_empty: succeed)", day, files, where)
