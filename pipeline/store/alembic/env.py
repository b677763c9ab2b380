"""Alembic's environment: migrates the connection ``pipeline.store.migrate.upgrade`` hands it, in its transaction.

Run migrations with ``scoring db upgrade`` (or any run's start), not with the ``alembic`` command: the
caller holds the lock that keeps concurrent starts from migrating at the same time (``migrate.upgrade``).
"""

from __future__ import annotations

from alembic import context

from pipeline.store import migrate


def run() -> None:
    """The revisions from the database's version to the target, in the caller's transaction."""
    conn = context.config.attributes.get("connection")
    if conn is None or context.is_offline_mode():
        raise RuntimeError("run the migrations with `scoring db upgrade` (pipeline.store.migrate.upgrade): they need "
                           "the connection and lock it holds")
    context.configure(connection=conn, version_table=migrate.VERSION_TABLE, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


run()
