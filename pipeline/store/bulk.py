"""PostgreSQL's bulk path: Arrow batches copied by ADBC (binary COPY), quarantine rows as Arrow."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

# columns a run's rows may leave out (null): a cascade's lineage, a split's arm (model.split)
LINEAGE_TYPES = {"route": pa.string(), "router_model": pa.string(), "router_version": pa.int32(), "arm": pa.string()}


QUARANTINE_SCHEMA = pa.schema([("job_id", pa.string()), ("partition_date", pa.date32()), ("run_id", pa.string()),
                               ("entity_key", pa.string()), ("entity_key_int", pa.int64()), ("reasons", pa.string()),
                               ("row_values", pa.string()),
                               ("quarantined_at", pa.timestamp("us"))])


def quarantine_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Quarantine rows for ADBC: ``row_values`` as Arrow's JSON type, which the driver copies into jsonb."""
    table = pa.Table.from_pylist(rows, QUARANTINE_SCHEMA)
    i = table.schema.get_field_index("row_values")
    return table.set_column(i, "row_values", table.column(i).cast(pa.json_(pa.string())))


def copy_rows(cur: Any, table: str, schema: str, columns: list[str], batches: Iterable[pa.Table]) -> int:
    """Binary COPY (``adbc_ingest``) of the batches' ``columns`` into ``schema.table``; an error raised while
    reading the batches is raised as itself (ADBC would wrap it).

    ``adbc_ingest`` (adbc-driver-postgresql 1.13) matches the Arrow columns to the table's by
    name and quotes them itself in its COPY, embedded double quotes included: the entity key
    may have any name ``check_column_name`` accepts. tests/integration/test_user_columns.py
    writes keys with a space, mixed case and a double quote through this path.
    """
    pending = iter(batches)
    first = next(pending, None)
    if first is None:
        return 0
    columns = [c for c in columns if c in first.column_names or c not in LINEAGE_TYPES]  # absent lineage: null
    arrow = first.select(columns).schema
    failure: list[BaseException] = []

    def record_batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in itertools.chain([first], pending):
                yield from batch.select(columns).cast(arrow).to_batches()
        except BaseException as exc:
            failure.append(exc)
            raise

    try:
        return int(cur.adbc_ingest(table, pa.RecordBatchReader.from_batches(arrow, record_batches()),
                                   mode="append", db_schema_name=schema))
    except Exception:
        if failure:
            raise failure[0] from None
        raise
