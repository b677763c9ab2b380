"""PostgreSQL layout migrations of a predictions table: partitioned by day, its days in the storage schema."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.config import IDENTIFIER_RE, PREDICTION_COLUMNS
from pipeline.store import load_tables, naming, sqlfiles

log = logging.getLogger(__name__)


def is_plain_table(conn: Connection, table: str, schema: str | None) -> bool:
    """PostgreSQL: the predictions table is a plain table (made before it was partitioned by day)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(sa.text(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = COALESCE(:s, current_schema()) AND c.relname = :t"), {"s": schema, "t": table}).scalar()
    return kind == "r"


def partition_by_day(conn: Connection, table: str, key: str, schema: str | None, views: tuple[str, ...]) -> None:
    """PostgreSQL: migrate a plain predictions table into one partitioned by day (``sql/030_partition_by_day.sql``),
    in the caller's transaction; the ``views`` on it are dropped (the caller makes them anew)."""
    home = schema or conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    days_in = naming.storage_schema(conn, schema) or home  # the day partitions' schema
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {naming.table_name(conn, table, schema)}")).scalar_one()
    for view in views:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {naming.table_name(conn, view, schema)}")
    legacy = f"{table[:50]}_plain"
    for stmt in sqlfiles.render_sql(conn, "030_partition_by_day.sql", schema,
                           literals={"schema": days_in, "prefix": naming.partition_prefix(table)},
                           predictions=table, key=key, legacy=legacy, legacy_q=legacy,
                           old_by_key=f"{table}_by_key", legacy_by_key=f"{legacy}_by_key"):
        conn.execute(sa.text(stmt))  # text(): the DO block's format() holds % signs the driver must not read
    conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                 {"n": f"030_partition_by_day.sql:{home}.{table}", "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    log.info("migrated predictions table %s.%s (%d rows) to a table partitioned by day", home, table, rows)


def tables_with_days_beside(conn: Connection, home: str) -> list[str]:
    """PostgreSQL: the predictions tables of schema ``home`` (partitioned, with the pipeline's columns) that have
    day partitions in ``home`` itself (the layout before issue 24)."""
    return list(name for name in conn.execute(sa.text(
        "SELECT DISTINCT p.relname FROM pg_class p JOIN pg_inherits i ON i.inhparent = p.oid "
        "JOIN pg_class c ON c.oid = i.inhrelid AND c.relnamespace = p.relnamespace "
        "WHERE p.relkind = 'p' AND p.relnamespace = CAST(:h AS regnamespace) AND (SELECT count(*) FROM pg_attribute a "
        "WHERE a.attrelid = p.oid AND NOT a.attisdropped AND a.attname = ANY(:cols)) = :n"),
        {"h": naming.quote(conn, home), "cols": list(PREDICTION_COLUMNS[:6]), "n": 6}).scalars()
        if IDENTIFIER_RE.match(name))  # the pipeline's names only: a table an analyst made otherwise is left alone


def move_partitions(conn: Connection, table: str, home: str, parts: str) -> list[str]:
    """PostgreSQL: move the day partitions of ``home.table`` made beside it (before issue 24), and load tables
    of it left there, into ``parts`` (its ``storage_schema``). ``SET SCHEMA`` changes the catalogue only:
    no row moves. Recorded in scoring_schema_migrations as ``day_partitions_schema:<home>.<table>``."""
    parent = f"{naming.quote(conn, home)}.{naming.quote(conn, table)}"
    found = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:p AS regclass) AND c.relnamespace = CAST(:h AS regnamespace) "
        "UNION ALL SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(:h AS regnamespace) "
        "AND c.relkind = 'r' AND NOT c.relispartition "
        "AND CASE WHEN starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), :mark) "
        "THEN CAST(substr(obj_description(c.oid, 'pg_class'), :at) AS json) ->> 'table' = :t ELSE false END"),
        {"p": parent, "h": naming.quote(conn, home), "mark": load_tables.LOAD_MARK, "at": len(load_tables.LOAD_MARK) + 1, "t": table}).scalars().all()
    for name in found:
        conn.exec_driver_sql(f"ALTER TABLE {naming.quote(conn, home)}.{naming.quote(conn, name)} SET SCHEMA {naming.quote(conn, parts)}")
    record = f"day_partitions_schema:{home}.{table}"
    if found and conn.execute(sa.text("SELECT 1 FROM scoring_schema_migrations WHERE name = :n"),
                              {"n": record}).first() is None:
        conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                     {"n": record, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    if found:
        log.info("moved %d day partition(s) of %s.%s to schema %s (out of the analysts' listing)",
                 len(found), home, table, parts)
    return list(found)
