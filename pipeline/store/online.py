"""The online door's tables: ``<output.table>_online`` (one row per answered row of a request) and the online
rows of ``scoring_drift`` (statements: sql/store/online.sql).

``day`` is the date of ``received_at`` in the job's timezone (``timezone`` of the job file, UTC by default),
the calendar partition dates follow, so a day of online records and the batch partition of that day compare.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary
from pipeline.store import comments, locks, naming, sqlfiles

log = logging.getLogger(__name__)

SUFFIX = "_online"
KEY_TYPES = ("int", "str")  # the entity_key column: BIGINT or TEXT, as the predictions table's key
COLUMNS = ("request_id", "row_index", "entity_key", "received_at", "day", "model_name", "model_version", "status",
           "prediction", "score", "flags", "reasons", "inputs", "inputs_sha256", "arm")
ADDED_COLUMNS = (("arm", "TEXT"),)  # columns a table made by an earlier release lacks: added at the end, nullable


def table_of(output_table: str) -> str:
    """The online table of a job's predictions table: ``<output.table>_online``."""
    return output_table + SUFFIX


def index_of(output_table: str) -> str:
    """The name of the online table's index by day (short enough for any table name the job file allows)."""
    return f"{naming.partition_prefix(output_table)}{SUFFIX}_by_day"


def ensure_online(engine: Engine, output_table: str, key_type: str, schema: str | None = None) -> str:
    """Create ``<output.table>_online`` and its index by day if missing (in the analysts' ``schema`` on
    PostgreSQL), with their comments; ``key_type`` (int or str) is the new table's key type. Returns the key
    type of the table in place (an existing table keeps its own)."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"key_type must be one of {KEY_TYPES}, got {key_type!r}")
    found: list[str] = []

    def ensure(conn: Connection) -> None:
        home = naming.analyst_schema(conn, schema)
        if home:
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "create_schema",
                                                    quoted={"schema": naming.quote(conn, home)}))
        for stmt in sqlfiles.named(conn, "store/online.sql", "create_online", schema, key_type=key_type,
                                   quoted={"by_day": naming.quote(conn, index_of(output_table))},
                                   online=table_of(output_table)):
            conn.exec_driver_sql(stmt)
        _add_columns(conn, table_of(output_table), schema)
        found.append(key_type_of(conn, table_of(output_table), "entity_key", schema) or key_type)
        comments.comment(conn, dictionary.objects("online", output_table), schema)

    locks.short_locks(engine, f"preparing table {table_of(output_table)}", ensure)
    return found[-1]


def _add_columns(conn: Connection, table: str, schema: str | None) -> None:
    """A table made before a column of ``ADDED_COLUMNS`` existed gets it (null on its old rows)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table, schema=naming.analyst_schema(conn, schema))}
    for column, typ in ADDED_COLUMNS:
        if column not in have:
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "add_column", schema, quoted={
                "column": column, "type": typ}, table=table))
            log.info("added column %s to %s (null on the rows answered before)", column, table)


def key_type_of(conn: Connection, table: str, column: str, schema: str | None = None) -> str | None:
    """The type (int or str) of ``table``'s ``column`` (the online table's ``entity_key``, a predictions table's
    key), None when the table or the column does not exist."""
    home = naming.analyst_schema(conn, schema)
    if not sa.inspect(conn).has_table(table, schema=home):
        return None
    for c in sa.inspect(conn).get_columns(table, schema=home):
        if c["name"] == column:
            return "int" if isinstance(c["type"], sa.Integer) else "str"
    return None


def insert_statement(conn: Connection | Engine, output_table: str, schema: str | None = None) -> sa.TextClause:
    """The insert of records into the online table (``insert``), to be prepared once and run many times."""
    return _statement(conn, "insert_online", output_table, schema)


def insert(conn: Connection, records: Sequence[dict[str, Any]], statement: sa.TextClause) -> None:
    """Insert records (dicts of ``COLUMNS``, values bound) with ``insert_statement`` in the caller's transaction; a
    record whose (request_id, row_index) is there already is skipped, so a retried write never duplicates."""
    if records:
        conn.execute(statement, list(records))


def scored_inputs(conn: Connection, output_table: str, day: dt.date, *, after: tuple[str, int] = ("", -1),
                  limit: int = 10_000, schema: str | None = None) -> list[sa.Row[Any]]:
    """A batch of the day's scored rows that have their inputs, after ``after`` (request_id, row_index) in
    that order: request_id, row_index, model_name, model_version, prediction, score, inputs."""
    query = _statement(conn, "scored_inputs", output_table, schema)
    return list(conn.execute(query, {"day": day, "after_request": after[0], "after_row": after[1], "limit": limit}))


def day_counts(conn: Connection, output_table: str, day: dt.date, schema: str | None = None) -> dict[str, int]:
    """The day's rows by status, and ``no_inputs``: the scored rows recorded without their inputs."""
    rows = conn.execute(_statement(conn, "count_day", output_table, schema), {"day": day}).all()
    out = {r.status: int(r.n) for r in rows}
    out["no_inputs"] = sum(int(r.no_inputs or 0) for r in rows if r.status == "scored")
    return out


def _statement(conn: Connection | Engine, name: str, output_table: str, schema: str | None) -> sa.TextClause:
    return sa.text(sqlfiles.statement(conn, "store/online.sql", name, schema, online=table_of(output_table)))
