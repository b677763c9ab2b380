"""The operational tables (ledger, quarantine, deliveries, drift...): brought to the newest revision
(``migrate``) with their comments; ``upgrade_types``, the timestamptz/jsonb conversion a revision and a job's
tables use."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary
from pipeline.store import comments, engines, locks, migrate, naming, sqlfiles

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
    query = sa.text(sqlfiles.plain("store/operational.sql", "column_types"))
    found = dict(conn.execute(query, {"s": schema, "t": table}).all())

    def change(kind: str, column: str) -> str:
        return sqlfiles.statement(conn, "store/operational.sql", kind, quoted={"column": naming.quote(conn, column)})

    changes = [change("to_timestamptz", c) for c in timestamps if found.get(c) == "timestamp without time zone"]
    changes += [change("to_jsonb", c) for c in json_columns if found.get(c) == "text"]
    if changes:
        for view in views:
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "drop_view", schema, view=view))
        conn.exec_driver_sql(sqlfiles.statement(conn, "store/operational.sql", "alter_table", schema, table=table,
                                                quoted={"changes": ", ".join(changes)}))
        log.info("migrated %s to timestamptz/jsonb: %d column(s)", table, len(changes))
    return changes


def replace_drift(conn: Connection, job_id: str, day: Any, rows: Sequence[dict[str, Any]], source: str) -> None:
    """Replace a partition's ``scoring_drift`` rows of one ``source`` (``batch``, ``online``) in the caller's
    transaction; the other source's rows of the day stay."""
    conn.execute(sa.text(sqlfiles.plain("store/operational.sql", "delete_drift")),
                 {"job_id": job_id, "day": day, "source": source})
    if rows:
        conn.execute(sa.text(sqlfiles.plain("store/operational.sql", "insert_drift")),
                     [{"p_value": None, **r, "source": source} for r in rows])


def newest_ab_period(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """A job's newest A/B assignment period (``scoring_ab_periods``), None before its first."""
    row = conn.execute(sa.text(sqlfiles.plain("store/operational.sql", "newest_ab_period")),
                       {"job_id": job_id}).mappings().first()
    return None if row is None else dict(row)


def insert_ab_period(conn: Connection, row: dict[str, Any]) -> bool:
    """Insert an assignment period if its number is free for the job (False: another run inserted it first)."""
    result = conn.execute(sa.text(sqlfiles.plain("store/operational.sql", "insert_ab_period")), row)
    return bool(result.rowcount)
