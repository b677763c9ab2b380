"""Migrations of the operational tables through Alembic (``pipeline/store/alembic/``).

The revisions own the fixed schema of the connection's own schema: the ledger and the other operational
tables (``sql/001`` to ``sql/008``), then one revision per file of ``sql/migrations/``, then the
timestamptz/jsonb conversion of issue 12. Alembic records the head in ``scoring_alembic_version``; the
files of ``sql/migrations/`` a revision applied are still recorded by name in ``scoring_schema_migrations``,
where the release's own runner recorded them. So a database made by a release before Alembic (that table,
no version table) upgrades in place: its revisions run from the start, the tables exist already
(``IF NOT EXISTS``), and a migration file recorded there is skipped, not applied twice.

A job's own tables (predictions, latest rows, views, shadow table) are not revisions: their names come
from job files, so they are made and brought up to date when a run of the job starts
(``pipeline.store.job_tables``), recording their one-time layout migrations in ``scoring_schema_migrations``.

One upgrade at a time: on PostgreSQL the revisions run in one transaction that holds the DDL lock
(``locks.ddl_lock``, the lock every start's DDL takes), on SQLite in one ``BEGIN IMMEDIATE`` transaction;
the version is read again under the lock, so a second process starting at the same time finds the work
done. A database already at the head is only read: no lock is taken.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import settings
from pipeline.errors import StoreError
from pipeline.store import engines, locks, sqlfiles

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).resolve().parent / "alembic"
# The newest revision: a start finds the database at it without importing Alembic (some 0.35 s a process).
# A new revision moves it (tests/unit/test_migrate.py checks it is the head of the revisions).
HEAD = "0014_model_audit"
VERSION_TABLE = "scoring_alembic_version"  # not alembic_version: the schema may hold another application's
VERSION = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
RECORD = sa.table("scoring_schema_migrations", sa.column("name", sa.Text), sa.column("applied_at", sa.DateTime))


def config(conn: Connection | None = None) -> Config:
    """Alembic's configuration: the script folder, and the connection ``env.py`` migrates."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def script_head() -> str | None:
    """The newest revision as the revision files say (``HEAD`` must be it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config()).get_current_head()


def current(conn: Connection) -> str | None:
    """The revision the database is at (None: never migrated through Alembic)."""
    if not sa.inspect(conn).has_table(VERSION.name):
        return None
    return conn.execute(sa.select(VERSION.c.version_num)).scalar()


def upgrade(engine: Engine, target: str = HEAD) -> list[str]:
    """Bring the operational tables to ``target`` (by default the newest revision); returns the files of
    ``sql/migrations/`` applied by this call, in order ([] when there was nothing to do)."""
    with engines.begin(engine) as conn:  # an unreachable database: retried, then a StoreError naming the host
        if current(conn) == target:
            return []
    from alembic import command

    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)  # one upgrade at a time, for the rest of the transaction (SQLite: the write lock)
        before = recorded(conn)
        was = current(conn)
        _known(was, engine)
        if was is None and before is not None:
            log.info("database %s was made by a release before Alembic (%d migration(s) recorded in "
                     "scoring_schema_migrations): upgrading it in place", engines.describe(engine), len(before))
        command.upgrade(config(conn), target)
        applied = sorted((recorded(conn) or set()) - (before or set()))
        now = current(conn)
    if now != was:
        log.info("upgraded %s from revision %s to %s%s", engines.describe(engine), was or "(none)", now,
                 f", applying {', '.join(applied)}" if applied else "")
    return applied


def _known(revision: str | None, engine: Engine) -> None:
    """Refuse a database at a revision these revision files do not have (a newer release upgraded it)."""
    from alembic.script import ScriptDirectory

    if revision is None or revision in {r.revision for r in ScriptDirectory.from_config(config()).walk_revisions()}:
        return
    raise StoreError(
        f"the output database {engines.describe(engine)} is at schema revision {revision}, which this release does "
        f"not know (its newest is {HEAD}): a newer release upgraded it. Run that release or a newer one against "
        "it, or restore the backup taken before that upgrade; nothing was changed.")


def apply_migrations(engine: Engine) -> list[str]:
    """The files of ``sql/migrations/`` not yet applied, applied by an upgrade to the head; their names."""
    return upgrade(engine)


def recorded(conn: Connection) -> set[str] | None:
    """The names in ``scoring_schema_migrations`` (None: no such table)."""
    if not sa.inspect(conn).has_table(RECORD.name):
        return None
    return set(conn.execute(sa.select(RECORD.c.name)).scalars())


def apply_file(conn: Connection, name: str) -> bool:
    """A revision's body: ``sql/migrations/<name>`` applied and recorded, unless it is recorded already (a
    database whose release applied it with its own runner). True when applied."""
    if conn.execute(sa.select(RECORD.c.name).where(RECORD.c.name == name)).first() is not None:
        log.info("migration %s: applied by an earlier release, skipped", name)
        return False
    conn.execute(sa.insert(RECORD).values(name=name, applied_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)))
    for stmt in sqlfiles.statements((settings.sql_dir() / "migrations" / name).read_text()):
        conn.exec_driver_sql(stmt.format(**sqlfiles.column_types(conn)))
    log.info("applied migration %s", name)
    return True


def run_files(conn: Connection, names: tuple[str, ...]) -> None:
    """A revision's body: the statements of ``sql/<name>`` for each name (DDL written to be run again)."""
    for name in names:
        for stmt in sqlfiles.render_sql(conn, name):
            conn.exec_driver_sql(stmt)


def forward_only(revision: str) -> None:
    """A revision's downgrade: refused (restore the backup taken before the upgrade instead)."""
    raise NotImplementedError(f"revision {revision} cannot be undone: migrations only go forward. Restore the "
                              "database from the backup taken before the upgrade.")
