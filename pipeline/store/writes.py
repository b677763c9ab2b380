"""Partition writes: a partition's predictions, quarantine or shadow rows replaced in one transaction.

Readers see the old partition or the new one, never a mix, and a failure half-way leaves the old
one. PostgreSQL takes the load-table swap of ``pipeline.store.swap`` (Arrow batches by binary COPY);
SQLite deletes and inserts (executemany) in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import livecopy
from pipeline.config import PREDICTION_COLUMNS, check_column_name
from pipeline.errors import store_failure
from pipeline.store import analyst, bulk, engines, job_tables, naming, sqlfiles, swap

log = logging.getLogger(__name__)

# the predictions table's columns besides the key: PREDICTION_COLUMNS and a split's arm (sql/010_predictions.sql)
ROW_COLUMNS = [*PREDICTION_COLUMNS, *(c for c in ("arm",) if c not in PREDICTION_COLUMNS)]


def replace_partition(
    engine: Engine,
    *,
    table: str,
    key: str,
    job_id: str,
    partition_date: dt.date,
    batches: Iterable[pa.Table],
    quarantine: Iterable[list[dict[str, Any]]] = (),
    schema: str | None = None,
    attempt: tuple[str, int] | None = None,
    constants: dict[str, Any] | None = None,
) -> int:
    """Replace one partition's predictions (and quarantine rows) in one transaction.

    Args:
        batches: tables with the key column and PREDICTION_COLUMNS, but ``constants``'s; the lineage
            columns and the arm may be left out (null).
        constants: columns with the same value on every row (the run's: date, model, run id, scored at).
            PostgreSQL sends them once, as the load table's defaults, not in every row of the COPY.
        quarantine: lists of quarantine rows (dicts of the scoring_quarantine columns).
        attempt: (run id, attempt) publishing: in the same transaction, ``pipeline.lease`` checks that
            no later attempt took the partition over and marks this one the ``live`` copy.
    """
    naming.table_name(engine, table, schema)  # a bad name is refused before anything is written
    check_column_name(key, "entity_key")  # a bad name is the job file's error, not the database's
    started = time.perf_counter()
    columns = [key, *ROW_COLUMNS]
    constants = constants or {}
    try:
        if engine.dialect.name == "postgresql":
            written = swap.replace_adbc(engine, table, columns, job_id, partition_date, batches, quarantine,
                                        naming.analyst_schema(engine, schema), attempt, constants)
        else:
            written = _replace_sqlite(engine, table, key, job_id, partition_date,
                                      _with_lineage(_with_constants(batches, constants)), quarantine, schema, attempt)
    except Exception as exc:
        if not _is_db_error(exc):
            raise
        raise store_failure(exc, doing="writing", partition_date=partition_date, table=table,
                            where=engines.describe(engine), key=key) from exc
    seconds = time.perf_counter() - started
    log.info("replaced partition %s of %s: %d rows in %.2fs (%.0f rows/s)", partition_date, table,
             written, seconds, written / seconds if seconds else 0)
    return written


def _replace_sqlite(engine: Engine, table: str, key: str, job_id: str, day: dt.date, batches: Iterable[pa.Table],
                    quarantine: Iterable[list[dict[str, Any]]], schema: str | None,
                    attempt: tuple[str, int] | None) -> int:
    """SQLite: the day's rows deleted and inserted, the latest rows and the quarantine kept in step, in one
    transaction."""
    columns = [key, *ROW_COLUMNS]
    quoted = [naming.quote_column(engine, key), *(engine.dialect.identifier_preparer.quote(c) for c in ROW_COLUMNS)]
    insert = _insert_statement(engine, table, quoted, schema)
    written = 0
    with engines.begin(engine) as conn:
        conn.execute(_delete_day(engine, table, schema), {"d": day})
        _delete_quarantine(conn, job_id, day)
        for batch in batches:
            written += _insert(conn, insert, columns, batch)
        _keep_latest(conn, table, key, day, schema)
        _insert_quarantine(conn, quarantine)
        if attempt is not None:
            livecopy.publish(conn, job_id, *attempt, day)
    return written


def _delete_day(engine: Engine, table: str, schema: str | None) -> sa.TextClause:
    return sa.text(sqlfiles.statement(engine, "store/writes.sql", "delete_day", schema, table=table))


def _insert_statement(engine: Engine, table: str, quoted_columns: list[str], schema: str | None) -> str:
    """SQLite's INSERT of one row (for executemany): the quoted columns, a ``?`` each."""
    return sqlfiles.statement(engine, "store/writes.sql", "insert_rows", schema, table=table, quoted={
        "columns": ", ".join(quoted_columns), "marks": ", ".join("?" for _ in quoted_columns)})


def _keep_latest(conn: Connection, table: str, key: str, day: dt.date, schema: str | None) -> None:
    """SQLite: the latest-row table kept in step with the day just replaced, in the same transaction."""
    found = sa.inspect(conn).get_columns(naming.latest_table(table), schema=naming.storage_schema(conn, schema))
    columns = [c["name"] for c in found]
    new = naming.table_name(conn, table, schema)
    for stmt in analyst.latest_statements(conn, table, key, columns, day, schema, new):
        conn.exec_driver_sql(stmt)


PREDICTION_TYPES = {"partition_date": pa.date32(), "model_name": pa.string(), "model_version": pa.int32(),
                    "run_id": pa.string(), "scored_at": pa.timestamp("us")}


def _with_constants(batches: Iterable[pa.Table], constants: dict[str, Any]) -> Iterator[pa.Table]:
    """Batches with the constant columns added to every row (SQLite's inserts)."""
    for batch in batches:
        for name, value in constants.items():
            batch = batch.append_column(name, pa.repeat(pa.scalar(value, PREDICTION_TYPES[name]), batch.num_rows))
        yield batch


def _with_lineage(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Batches without a cascade's lineage columns or a split's arm get them as nulls (one-model rows)."""
    for batch in batches:
        for name, typ in bulk.LINEAGE_TYPES.items():
            if name not in batch.column_names:
                batch = batch.append_column(name, pa.nulls(batch.num_rows, typ))
        yield batch


def _insert(conn: Connection, insert: str, columns: list[str], batch: pa.Table) -> int:
    """SQLite: executemany (PostgreSQL takes ADBC, see ``swap.replace_adbc``) of the batch's ``columns``."""
    rows = list(zip(*(batch.column(c).to_pylist() for c in columns), strict=True))
    if rows:  # sqlite3's executemany refuses an empty list
        conn.exec_driver_sql(insert, rows)
    return batch.num_rows


def replace_quarantine(
    engine: Engine, *, job_id: str, partition_date: dt.date, quarantine: Iterable[list[dict[str, Any]]]
) -> int:
    """Replace one partition's quarantine rows in one transaction (push mode has no predictions table)."""
    try:
        with engines.begin(engine) as conn:
            _delete_quarantine(conn, job_id, partition_date)
            return _insert_quarantine(conn, quarantine)
    except sa.exc.SQLAlchemyError as exc:
        raise store_failure(exc, doing="writing", partition_date=partition_date, table="scoring_quarantine",
                            where=engines.describe(engine)) from exc


def _delete_quarantine(conn: Connection, job_id: str, partition_date: dt.date) -> None:
    conn.execute(sa.text(sqlfiles.plain("store/writes.sql", "delete_quarantine")), {"j": job_id, "d": partition_date})


def _insert_quarantine(conn: Connection, quarantine: Iterable[list[dict[str, Any]]]) -> int:
    count = 0
    insert = sa.text(sqlfiles.plain("store/writes.sql", "insert_quarantine"))
    for rows in quarantine:
        if rows:
            conn.execute(insert, rows)
            count += len(rows)
    return count


def _is_db_error(exc: BaseException) -> bool:
    """SQLAlchemy errors and raw driver errors (ADBC, psycopg, sqlite3)."""
    return isinstance(exc, sa.exc.SQLAlchemyError) or type(exc).__module__.startswith(
        ("psycopg", "sqlite3", "adbc_driver"))


def replace_shadow(engine: Engine, *, table: str, key: str, partition_date: dt.date, batches: Iterable[pa.Table],
                   schema: str | None = None) -> int:
    """Replace a partition's rows of every challenger in ``<table>_shadow`` in one transaction."""
    shadow = f"{table}_shadow"
    columns = [key, *job_tables.SHADOW_COLUMNS]
    if engine.dialect.name == "postgresql":
        return _replace_shadow_adbc(engine, shadow, columns, partition_date, batches, schema)
    quoted = [naming.quote_column(engine, key), *job_tables.SHADOW_COLUMNS]
    insert = _insert_statement(engine, shadow, quoted, schema)
    written = 0
    with engines.begin(engine) as conn:
        conn.execute(_delete_day(engine, shadow, schema), {"d": partition_date})
        for batch in batches:
            written += _insert(conn, insert, columns, batch)
    return written


def _replace_shadow_adbc(engine: Engine, shadow: str, columns: list[str], day: dt.date, batches: Iterable[pa.Table],
                         schema: str | None) -> int:
    """PostgreSQL: the shadow table's day deleted and copied (ADBC), in one transaction."""
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(engines.libpq_uri(engine)) as conn, conn.cursor() as cur:
        cur.execute(sqlfiles.plain("store/common.sql", "current_schema"))
        home = naming.analyst_schema(engine, schema) or cur.fetchone()[0]
        cur.execute(sqlfiles.statement(engine, "store/writes.sql", "delete_day_adbc", quoted={
            "table": naming.qualified(engine, home, shadow)}), parameters=(day,))
        written = bulk.copy_rows(cur, shadow, home, columns, batches)
        conn.commit()
    return written
