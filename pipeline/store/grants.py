"""Who may read: the read-only analysts' role, and the readers of views kept when the views are made anew."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import ConfigError
from pipeline.store import engines, locks, naming

log = logging.getLogger(__name__)


def view_readers(conn: Connection, schema: str | None, views: list[str]) -> list[tuple[str, str]]:
    """PostgreSQL: (view or table, role) of every SELECT granted on them to roles other than their owner."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(sa.text(
        "SELECT table_name, grantee FROM information_schema.role_table_grants WHERE privilege_type = 'SELECT' "
        "AND table_schema = COALESCE(:s, current_schema()) AND table_name = ANY(:v) AND grantee <> current_user"),
        {"s": schema, "v": views}).all()
    return [(r[0], r[1]) for r in rows]


def grant_reader(engine: Engine, schema: str, role: str) -> None:
    """PostgreSQL: a role (created NOLOGIN if missing) that may read the analysts' schema and nothing else.

    SELECT on every table and view in ``schema`` and on those created there later; no right on the
    operational tables nor on ``storage_schema`` (day partitions, and the load tables of runs not yet
    published). Give it to people with ``GRANT <role> TO <login>``.

    No temporary tables either: PostgreSQL grants TEMPORARY on a database to PUBLIC, which every login
    inherits and no grant to one role can take away, so this revokes TEMPORARY on the database from
    PUBLIC and from ``role``, and grants it back to the pipeline's own role (the connection's user).
    Other roles that created temporary tables through PUBLIC lose that (logged by name; give it back
    with ``GRANT TEMPORARY ON DATABASE <db> TO <role>``). Only the database's owner (or a superuser) can
    revoke PUBLIC's right: when the connection's user cannot, the SELECT grants stay made and a
    ``ConfigError`` says what the owner must run.
    """
    if engine.dialect.name != "postgresql":
        raise ConfigError("a read-only role needs PostgreSQL: SQLite has no roles (share a read-only copy instead)")
    with engines.begin(engine) as conn:
        locks.ddl_lock(conn)
        if conn.execute(sa.text("SELECT current_schema()")).scalar_one() == schema:
            raise ConfigError(
                f"schema {schema!r} is this connection's own, where the ledger and the quarantine live: a reader "
                "there could read them. Give the jobs an output.schema of their own (e.g. analytics) and grant that.")
        q_schema, q_role = naming.quote(conn, schema), naming.quote(conn, role)
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {q_schema}")
        if conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is None:
            if not conn.execute(sa.text("SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user")
                                ).scalar_one():
                raise ConfigError(f"role {role} does not exist and this connection's user may not create roles: "
                                  f"have an administrator run CREATE ROLE {q_role} NOLOGIN, then run grant-reader again.")
            conn.exec_driver_sql(f"CREATE ROLE {q_role} NOLOGIN")
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA {q_schema} TO {q_role}")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {q_schema} TO {q_role}")
        conn.exec_driver_sql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q_schema} GRANT SELECT ON TABLES TO {q_role}")
    _no_temporary_tables(engine, role)


def _no_temporary_tables(engine: Engine, role: str) -> None:
    """TEMPORARY on the connection's database revoked from PUBLIC and ``role``, granted to the connection's user."""
    with engines.begin(engine) as conn:
        db, me = conn.execute(sa.text("SELECT current_database(), current_user")).one()
        q_db = conn.dialect.identifier_preparer.quote_identifier(db)
        could = set(conn.execute(sa.text(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> :me "
            "AND has_database_privilege(oid, current_database(), 'TEMPORARY')"), {"me": me}).scalars())
        conn.exec_driver_sql(f"GRANT TEMPORARY ON DATABASE {q_db} TO {naming.quote_role(conn, me)}")  # the pipeline keeps it
        conn.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {q_db} FROM PUBLIC")
        conn.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {q_db} FROM {naming.quote(conn, role)}")
        may = sa.text("SELECT has_database_privilege(CAST(:r AS name), current_database(), 'TEMPORARY')")
        still = conn.execute(may, {"r": role}).scalar_one()
        lost = sorted(r for r in could if not conn.execute(may, {"r": r}).scalar_one())
        q_me = naming.quote_role(conn, me)
        owner = conn.execute(sa.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"),
                             {"d": db}).scalar_one()
    if lost:
        log.warning("database %s: %d role(s) can no longer create temporary tables (TEMPORARY revoked from PUBLIC "
                    "so that %s cannot): %s; give it back to one with GRANT TEMPORARY ON DATABASE %s TO <role>",
                    db, len(lost), role, ", ".join(lost[:20]) + (" ..." if len(lost) > 20 else ""), q_db)
    if still:
        raise ConfigError(
            f"role {role} may read its schema, but it can still create temporary tables in database {db}: PostgreSQL "
            f"grants TEMPORARY to PUBLIC, and only the database's owner ({owner}) or a superuser can revoke it. Ask "
            f"them to run: REVOKE TEMPORARY ON DATABASE {q_db} FROM PUBLIC; GRANT TEMPORARY ON DATABASE {q_db} TO "
            f"{q_me}; then run `scoring db grant-reader` again.")
