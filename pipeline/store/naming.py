"""Identifiers of the store, validated and quoted: tables, columns, roles, schemas, literals for DDL."""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.config import PREDICTION_COLUMNS, check_column_name, check_identifier


def quote(engine: Engine | Connection, name: str) -> str:
    """A table or view name: a lower-case identifier (``check_identifier``), quoted."""
    return engine.dialect.identifier_preparer.quote(check_identifier(name))


def analyst_schema(engine: Engine | Connection, schema: str | None) -> str | None:
    """The schema of the predictions table and its views: the job's ``output.schema`` on PostgreSQL."""
    return schema if schema and engine.dialect.name == "postgresql" else None


STORAGE_SUFFIX = "_partitions"


def storage_schema(engine: Engine | Connection, schema: str | None) -> str | None:
    """PostgreSQL: where the day partitions, load tables and latest-row tables of the predictions tables
    of an analysts' ``schema`` live: ``<schema>_partitions``, a schema no reader is granted, so an
    analyst's listing (``\\dt``) shows the tables, not every day of them (readers read the days through
    the table). None (the connection's own schema) without an analysts' schema, and on SQLite."""
    home = analyst_schema(engine, schema)
    if not home:
        return None
    if len(home) + len(STORAGE_SUFFIX) <= 63:
        return home + STORAGE_SUFFIX
    return f"{home[:42]}_{hashlib.md5(home.encode()).hexdigest()[:8]}{STORAGE_SUFFIX}"


def table_name(engine: Engine | Connection, table: str, schema: str | None = None) -> str:
    """A predictions table or view, quoted, qualified by the analysts' schema when it has one."""
    schema = analyst_schema(engine, schema)
    return f"{quote(engine, schema)}.{quote(engine, table)}" if schema else quote(engine, table)


def quote_column(engine: Engine | Connection, name: str, what: str = "entity_key") -> str:
    """A column name from the job or the card (any case, spaces, quotes...), validated and quoted.

    The dialect's identifier preparer doubles an embedded double quote, so the name can never
    end the identifier early; ``check_column_name`` refuses what no database should hold.
    """
    return engine.dialect.identifier_preparer.quote_identifier(check_column_name(name, what))


def prediction_columns(engine: Engine | Connection, key: str) -> list[str]:
    """The quoted columns of a predictions table's rows: the entity key, then ``PREDICTION_COLUMNS``."""
    preparer = engine.dialect.identifier_preparer
    return [quote_column(engine, key), *(preparer.quote(c) for c in PREDICTION_COLUMNS)]


def partition_prefix(table: str) -> str:
    """The name prefix of a predictions table's day partitions and load tables: the table's name, or for
    a long one its first 31 characters and a hash (``<prefix>_<yyyymmdd>_load_<token>`` stays under 63)."""
    if len(table) <= 40:
        return table
    return f"{table[:31]}_{hashlib.sha256(table.encode()).hexdigest()[:8]}"


def quote_role(conn: Connection, role: str) -> str:
    """A role name read from the catalogue, quoted (roles may have any name PostgreSQL allows)."""
    return conn.dialect.identifier_preparer.quote_identifier(role)


def qualified(engine: Engine, schema: str, name: str) -> str:
    preparer = engine.dialect.identifier_preparer
    return f"{preparer.quote_identifier(schema)}.{quote(engine, name)}"


def literal(conn: Connection, text: str) -> str:
    """A string literal for a statement that takes no bound parameters (COMMENT): the dialect quotes it."""
    return str(sa.literal(text, sa.String()).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


def latest_table(table: str) -> str:
    """The name of a predictions table's latest-row table (in its storage schema): ``<prefix>_current``."""
    return f"{partition_prefix(table)}_current"


def date_literal(engine: Engine | Connection, day: dt.date) -> str:
    """A day as a SQL literal, for statements that take no bound parameter (DDL) or repeat it: ``DATE '...'``
    on PostgreSQL, the ISO text SQLite stores."""
    text = literal(engine, day.isoformat())
    return f"DATE {text}" if engine.dialect.name == "postgresql" else text
