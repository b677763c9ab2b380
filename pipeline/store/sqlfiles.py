"""The text of ``sql/*.sql``: statements with validated, quoted identifiers filled in."""

from __future__ import annotations

import re

from sqlalchemy.engine import Connection, Engine

from pipeline import settings
from pipeline.store import naming


def statements(sql: str) -> list[str]:
    """Split a SQL file into statements, dropping ``--`` comments (no literal holds one); a ``$$`` block
    (a ``DO`` body) is one piece whatever semicolons it holds."""
    body = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    statements, current = [], ""
    for i, piece in enumerate(body.split("$$")):
        if i % 2:  # inside $$ ... $$
            current += f"$${piece}$$"
            continue
        head, *rest = piece.split(";")
        if rest:
            statements.append(current + head)
            *done, current = rest
            statements += done
        else:
            current += head
    return [s.strip() for s in [*statements, current] if s.strip()]


COLUMN_PLACEHOLDERS = ("key",)  # the entity key: a column name from the job file, any case and spelling
# index names, new names, operational tables:
UNQUALIFIED_PLACEHOLDERS = frozenset({"by_key", "legacy", "legacy_by_key", "comparisons", "current_key", "cur"})


def render_sql(engine: Engine | Connection, filename: str, schema: str | None = None,
               literals: dict[str, str] | None = None, quoted: dict[str, str] | None = None,
               **identifiers: str) -> list[str]:
    """Statements of ``sql/<filename>`` with validated, quoted identifiers filled in.

    ``{key}`` is a column name (``check_column_name``, always quoted); ``{by_key}`` an index name;
    every other placeholder but ``{key_type}`` is a table or view name (``check_identifier``),
    qualified by ``schema`` (PostgreSQL) when one is given. ``literals`` become quoted SQL strings;
    ``quoted`` are fragments the store made of names it quoted itself (a table in another schema, a
    column list).
    """
    names = _fills(engine, schema, literals, quoted, identifiers)
    return [stmt.format(**names) for stmt in statements((settings.sql_dir() / filename).read_text())]


def statement(engine: Engine | Connection, filename: str, name: str, schema: str | None = None,
              literals: dict[str, str] | None = None, quoted: dict[str, str] | None = None,
              **identifiers: str) -> str:
    """The one statement under ``-- name: <name>`` in ``sql/<filename>``, its placeholders filled in as by
    ``render_sql``; values are never placeholders: they are bound when the statement runs."""
    [stmt] = named(engine, filename, name, schema, literals, quoted, **identifiers)
    return stmt


def named(engine: Engine | Connection, filename: str, name: str, schema: str | None = None,
          literals: dict[str, str] | None = None, quoted: dict[str, str] | None = None,
          **identifiers: str) -> list[str]:
    """The statements under ``-- name: <name>`` in ``sql/<filename>`` (up to the next name), filled in."""
    fills = _fills(engine, schema, literals, quoted, identifiers)
    return [stmt.format(**fills) for stmt in statements(_block(filename, name))]


def plain(filename: str, name: str) -> str:
    """The statement under ``-- name: <name>`` in ``sql/<filename>``, which has no placeholder (its values are
    bound: ``:name`` through SQLAlchemy, ``$1`` through ADBC)."""
    [stmt] = statements(_block(filename, name))
    return stmt


def _block(filename: str, name: str) -> str:
    """The text under ``-- name: <name>`` of a file of named statements (the aiosql convention)."""
    blocks = re.split(r"^-- name: (\w+)[ \t]*$", (settings.sql_dir() / filename).read_text(), flags=re.M)
    found = dict(zip(blocks[1::2], blocks[2::2], strict=True))
    if name not in found:
        raise KeyError(f"sql/{filename} has no statement named {name!r}")
    return found[name]


def _fills(engine: Engine | Connection, schema: str | None, literals: dict[str, str] | None,
           quoted: dict[str, str] | None, identifiers: dict[str, str]) -> dict[str, str]:
    """What the placeholders of a SQL file become (see ``render_sql``)."""
    def one(k: str, v: str) -> str:
        if k in COLUMN_PLACEHOLDERS:
            return naming.quote_column(engine, v)
        return naming.quote(engine, v) if k in UNQUALIFIED_PLACEHOLDERS else naming.table_name(engine, v, schema)

    names = {k: one(k, v) for k, v in identifiers.items() if k != "key_type"} | column_types(engine)
    names |= {k: naming.literal(engine, v) for k, v in (literals or {}).items()} | (quoted or {})
    if "key" in names:  # {primary_key} of sql/010: PostgreSQL's partitions hold one day each, so the key leads
        names["primary_key"] = (f"{names['key']}, partition_date" if engine.dialect.name == "postgresql"
                                else f"partition_date, {names['key']}")
    if "key_type" in identifiers:
        names["key_type"] = {"int": "BIGINT", "str": "TEXT"}[identifiers["key_type"]]
    return names


def column_types(engine: Engine | Connection) -> dict[str, str]:
    """``{ts}`` and ``{json}`` of the DDL files: timestamptz and jsonb on PostgreSQL, SQLite's TIMESTAMP and TEXT;
    ``{partitioned}`` and ``{fillfactor}``: PostgreSQL's own clauses, empty on SQLite."""
    if engine.dialect.name == "postgresql":
        return {"ts": "TIMESTAMPTZ", "json": "JSONB", "partitioned": " PARTITION BY LIST (partition_date)",
                "fillfactor": " WITH (fillfactor = 50)"}
    return {"ts": "TIMESTAMP", "json": "TEXT", "partitioned": "", "fillfactor": ""}
