"""The operational tables (ledger, quarantine, deliveries, drift...): made, migrated, their column types upgraded."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary, settings
from pipeline.store import comments, engines, locks, naming, sqlfiles

log = logging.getLogger(__name__)


LEDGER_FILES = ("001_scoring_runs.sql", "002_quarantine.sql", "003_deliveries.sql", "004_schema_migrations.sql",
                "005_drift.sql", "006_model_registrations.sql", "007_shadow_comparisons.sql",
                "008_performance.sql")


def ensure_ledger(engine: Engine) -> None:
    """Create the ledger, quarantine and delivery tables if missing; apply ``sql/migrations/``."""
    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)
        for name in LEDGER_FILES:
            for stmt in sqlfiles.render_sql(conn, name):
                conn.exec_driver_sql(stmt)
    apply_migrations(engine)
    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)
        for table, columns in TIMESTAMP_COLUMNS.items():
            upgrade_types(conn, table, columns, JSON_COLUMNS.get(table, ()))
    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)
        comments.comment(conn, dictionary.objects("operational"))


def apply_migrations(engine: Engine) -> list[str]:
    """Apply the files of ``sql/migrations/`` not yet recorded, in name order, one transaction each.

    The migration's row is inserted first: a second process migrating at the same time waits
    on it and then skips the file instead of applying it twice.
    """
    with engine.connect() as conn:
        done = set(conn.execute(sa.text("SELECT name FROM scoring_schema_migrations")).scalars())
    applied = []
    for path in sorted((settings.sql_dir() / "migrations").glob("*.sql")):
        if path.name in done:
            continue
        try:
            with engines.begin(engine) as conn:
                conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                             {"n": path.name, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
                for stmt in sqlfiles.statements(path.read_text()):
                    conn.exec_driver_sql(stmt.format(**sqlfiles.column_types(conn)))
        except sa.exc.IntegrityError:
            log.info("migration %s was applied by another process", path.name)
            continue
        log.info("applied migration %s to %s", path.name, engines.describe(engine))
        applied.append(path.name)
    return applied


# Columns whose PostgreSQL type changed (issue 12): databases made before hold them as timestamp
# without time zone (UTC by convention) and text; upgrade_types converts them in place.
TIMESTAMP_COLUMNS = {"scoring_runs": ("started_at", "finished_at"), "scoring_quarantine": ("quarantined_at",),
                     "scoring_deliveries": ("updated_at", "delivered_at"), "scoring_drift": ("computed_at",),
                     "scoring_schema_migrations": ("applied_at",)}


JSON_COLUMNS = {"scoring_runs": ("stage_seconds",), "scoring_quarantine": ("row_values",)}


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
