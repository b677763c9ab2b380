"""The operational tables (ledger, quarantine, deliveries, drift...): brought to the newest revision
(``migrate``) with their comments; ``upgrade_types``, the timestamptz/jsonb conversion a revision and a job's
tables use."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary
from pipeline.store import comments, engines, locks, migrate, naming

log = logging.getLogger(__name__)


def ensure_ledger(engine: Engine) -> None:
    """Bring the operational tables to the newest revision (``migrate.upgrade``: made if missing, migrated if
    older), then write the COMMENTs of sql/dictionary.yaml that differ."""
    migrate.upgrade(engine)
    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)
        comments.comment(conn, dictionary.objects("operational"))


def upgrade_types(conn: Connection, table: str, timestamps: tuple[str, ...] = (), json_columns: tuple[str, ...] = (),
                  schema: str | None = None, views: tuple[str, ...] = ()) -> list[str]:
    """PostgreSQL: turn a table's old ``timestamp`` columns into ``timestamptz`` (their values were UTC)
    and its JSON text columns into ``jsonb``; columns already converted are left alone. The migration
    of databases made before the change, run where the tables are ensured; returns what it changed.
    ``views`` depending on the columns are dropped first (the caller makes them anew)."""
    if conn.dialect.name != "postgresql":
        return []
    found = dict(conn.execute(sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = COALESCE(:s, current_schema()) AND table_name = :t"), {"s": schema, "t": table}).all())
    changes = [f"ALTER COLUMN {naming.quote(conn, c)} TYPE timestamptz USING {naming.quote(conn, c)} AT TIME ZONE 'UTC'"
               for c in timestamps if found.get(c) == "timestamp without time zone"]
    changes += [f"ALTER COLUMN {naming.quote(conn, c)} TYPE jsonb USING {naming.quote(conn, c)}::jsonb"
                for c in json_columns if found.get(c) == "text"]
    if changes:
        for view in views:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {naming.table_name(conn, view, schema)}")
        conn.exec_driver_sql(f"ALTER TABLE {naming.table_name(conn, table, schema)} {', '.join(changes)}")
        log.info("migrated %s to timestamptz/jsonb: %d column(s)", table, len(changes))
    return changes
