"""PostgreSQL layout migrations of a predictions table: partitioned by day, its days in the storage schema."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.config import IDENTIFIER_RE, PREDICTION_COLUMNS
from pipeline.store import load_tables, naming, sqlfiles

log = logging.getLogger(__name__)


def _sql(filename: str, name: str) -> sa.TextClause:
    return sa.text(sqlfiles.plain(filename, name))


def _record(conn: Connection, name: str) -> None:
    """A layout migration recorded in scoring_schema_migrations."""
    conn.execute(_sql("store/common.sql", "record_migration"),
                 {"n": name, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})


def is_plain_table(conn: Connection, table: str, schema: str | None) -> bool:
    """PostgreSQL: the predictions table is a plain table (made before it was partitioned by day)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(_sql("store/layout.sql", "relation_kind"), {"s": schema, "t": table}).scalar()
    return kind == "r"


def partition_by_day(conn: Connection, table: str, key: str, schema: str | None, views: tuple[str, ...]) -> None:
    """PostgreSQL: migrate a plain predictions table into one partitioned by day (``sql/030_partition_by_day.sql``),
    in the caller's transaction; the ``views`` on it are dropped (the caller makes them anew)."""
    home = schema or conn.execute(_sql("store/common.sql", "current_schema")).scalar_one()
    days_in = naming.storage_schema(conn, schema) or home  # the day partitions' schema
    count = sqlfiles.statement(conn, "store/common.sql", "count_rows", schema, table=table)
    rows = conn.execute(sa.text(count)).scalar_one()
    for view in views:
        conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "drop_view", schema, view=view))
    legacy = f"{table[:50]}_plain"
    for stmt in sqlfiles.render_sql(conn, "030_partition_by_day.sql", schema,
                                    literals={"schema": days_in, "prefix": naming.partition_prefix(table)},
                                    predictions=table, key=key, legacy=legacy, legacy_q=legacy,
                                    old_by_key=f"{table}_by_key", legacy_by_key=f"{legacy}_by_key"):
        conn.execute(sa.text(stmt))  # text(): the DO block's format() holds % signs the driver must not read
    _record(conn, f"030_partition_by_day.sql:{home}.{table}")
    log.info("migrated predictions table %s.%s (%d rows) to a table partitioned by day", home, table, rows)


def tables_with_days_beside(conn: Connection, home: str) -> list[str]:
    """PostgreSQL: the predictions tables of schema ``home`` (partitioned, with the pipeline's columns) that have
    day partitions in ``home`` itself (the layout before issue 24)."""
    found = conn.execute(_sql("store/layout.sql", "tables_with_days_beside"),
                         {"h": naming.quote(conn, home), "cols": list(PREDICTION_COLUMNS[:6]), "n": 6}).scalars()
    # the pipeline's names only: a table an analyst made otherwise is left alone
    return [name for name in found if IDENTIFIER_RE.match(name)]


def move_partitions(conn: Connection, table: str, home: str, parts: str) -> list[str]:
    """PostgreSQL: move the day partitions of ``home.table`` made beside it (before issue 24), and load tables
    of it left there, into ``parts`` (its ``storage_schema``). ``SET SCHEMA`` changes the catalogue only:
    no row moves. Recorded in scoring_schema_migrations as ``day_partitions_schema:<home>.<table>``."""
    parent = f"{naming.quote(conn, home)}.{naming.quote(conn, table)}"
    mark = load_tables.LOAD_MARK
    found = conn.execute(_sql("store/layout.sql", "days_and_loads_beside"), {
        "p": parent, "h": naming.quote(conn, home), "mark": mark, "at": len(mark) + 1, "t": table}).scalars().all()
    for name in found:
        conn.exec_driver_sql(sqlfiles.statement(conn, "store/layout.sql", "set_schema", quoted={
            "table": f"{naming.quote(conn, home)}.{naming.quote(conn, name)}", "schema": naming.quote(conn, parts)}))
    record = f"day_partitions_schema:{home}.{table}"
    if found and conn.execute(_sql("store/common.sql", "migration_recorded"), {"n": record}).first() is None:
        _record(conn, record)
    if found:
        log.info("moved %d day partition(s) of %s.%s to schema %s (out of the analysts' listing)",
                 len(found), home, table, parts)
    return list(found)
