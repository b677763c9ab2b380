"""Ingest: read a partition's files batch by batch into the contract's schema.

Partition-level problems (an unreadable file, a missing column, a type that cannot be read
as the contract's type) raise InputError naming the partition, file and column. Rows are
never dropped here: row-level problems are validation's job.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import InputError

log = logging.getLogger(__name__)

ARROW_TYPES = {"float": pa.float64(), "int": pa.float64(), "category": pa.string(), "bool": pa.bool_()}


def contract_schema(inputs: list[dict[str, Any]], key: str, key_type: pa.DataType) -> pa.Schema:
    """Arrow schema of ingested rows: the entity key, then the contract's columns."""
    return pa.schema([pa.field(key, key_type)] + [pa.field(c["name"], ARROW_TYPES[c["type"]]) for c in inputs])


def _file_batches(path: Path, fmt: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
    else:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24))
        yield from reader


def _file_schema(path: Path, fmt: str) -> pa.Schema:
    if fmt == "parquet":
        return pq.read_schema(path)
    return pacsv.open_csv(path).schema


@dataclass
class IngestResult:
    rows: int
    files: list[str]
    duplicate_keys: list[Any]
    ignored_columns: list[str]


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
    schemas: dict[Path, pa.Schema] = {}
    for path in files:
        try:
            schemas[path] = _file_schema(path, fmt)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                f"partition {partition_date}: cannot read file {path}: {exc}. "
                "The file is truncated or not valid "
                f"{fmt}; re-export it upstream, then re-run this partition."
            ) from None
        missing = [c for c in wanted if c not in schemas[path].names]
        if missing:
            raise InputError(
                f"partition {partition_date}: file {path} has no column(s) {', '.join(missing)} "
                f"required by the model's input contract (found: {', '.join(schemas[path].names)}). "
                "Fix the export or register a model whose contract matches."
            )
    key_type = _key_type(schemas, key, partition_date)
    target = contract_schema(inputs, key, key_type)
    ignored = sorted({n for s in schemas.values() for n in s.names} - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)
    rows = 0
    keys: list[pa.ChunkedArray] = []
    for path in files:
        try:
            for batch in _file_batches(path, fmt, batch_rows):
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
    return IngestResult(rows, [str(f) for f in files], duplicates, ignored)


def _key_type(schemas: dict[Path, pa.Schema], key: str, partition_date: dt.date) -> pa.DataType:
    types = {s.field(key).type for s in schemas.values()}
    if all(pa.types.is_integer(t) for t in types):
        return pa.int64()
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types):
        return pa.string()
    raise InputError(
        f"partition {partition_date}: entity key {key!r} must be an integer or a string in every "
        f"file; found {', '.join(sorted(map(str, types)))}"
    )


def _conform(table: pa.Table, target: pa.Schema, path: Path, partition_date: dt.date) -> pa.Table:
    columns = []
    for field in target:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = pc.cast(column, field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(
                    f"partition {partition_date}: file {path}, column {field.name!r} has type "
                    f"{column.type} that cannot be read as {field.type} ({exc}). "
                    "Fix the export's column type."
                ) from None
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=target)


def _duplicates(keys: list[pa.ChunkedArray]) -> list[Any]:
    """Entity keys that occur more than once in the partition (nulls are validation's job)."""
    chunks = [chunk for column in keys for chunk in column.chunks]
    if not chunks:
        return []
    counts = pa.chunked_array(chunks).value_counts()
    values, freq = counts.field("values"), counts.field("counts")
    mask = pc.and_(pc.greater(freq, 1), pc.is_valid(values))
    return pc.filter(values, mask).to_pylist()
