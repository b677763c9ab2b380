"""Who may read: the read-only analysts' role, and the readers of views kept when the views are made anew."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import ConfigError
from pipeline.store import engines, locks, naming, sqlfiles

log = logging.getLogger(__name__)


def _sql(name: str) -> sa.TextClause:
    """A statement of ``sql/store/grants.sql`` without placeholders."""
    return sa.text(sqlfiles.plain("store/grants.sql", name))


def view_readers(conn: Connection, schema: str | None, views: list[str]) -> list[tuple[str, str]]:
    """PostgreSQL: (view or table, role) of every SELECT granted on them to roles other than their owner."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(_sql("view_readers"), {"s": schema, "v": views}).all()
    return [(r[0], r[1]) for r in rows]


def give_back(conn: Connection, readers: list[tuple[str, str]], schema: str | None) -> None:
    """SELECT granted again to the ``readers`` (``view_readers``, read before the views were made anew)."""
    for view, grantee in readers:
        conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "grant_select", schema, quoted={
            "role": naming.quote_role(conn, grantee)}, view=view))


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
        if conn.execute(sa.text(sqlfiles.plain("store/common.sql", "current_schema"))).scalar_one() == schema:
            raise ConfigError(
                f"schema {schema!r} is this connection's own, where the ledger and the quarantine live: a reader "
                "there could read them. Give the jobs an output.schema of their own (e.g. analytics) and grant that.")
        q_schema, q_role = naming.quote(conn, schema), naming.quote(conn, role)
        conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "create_schema", quoted={"schema": q_schema}))
        if conn.execute(_sql("role_exists"), {"r": role}).first() is None:
            if not conn.execute(_sql("may_create_roles")).scalar_one():
                raise ConfigError(f"role {role} does not exist and this connection's user may not create roles: "
                                  f"have an administrator run CREATE ROLE {q_role} NOLOGIN, then run grant-reader again.")
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/grants.sql", "create_role", quoted={"role": q_role}))
        quoted = {"schema": q_schema, "role": q_role}
        for stmt in sqlfiles.named(conn, "store/grants.sql", "grant_schema", quoted=quoted):
            conn.exec_driver_sql(stmt)
    _no_temporary_tables(engine, role)


def _no_temporary_tables(engine: Engine, role: str) -> None:
    """TEMPORARY on the connection's database revoked from PUBLIC and ``role``, granted to the connection's user."""
    with engines.begin(engine) as conn:
        db, me = conn.execute(_sql("database_and_user")).one()
        q_db, q_me = conn.dialect.identifier_preparer.quote_identifier(db), naming.quote_role(conn, me)
        could = set(conn.execute(_sql("logins_with_temporary"), {"me": me}).scalars())
        quoted = {"database": q_db, "me": q_me, "role": naming.quote(conn, role)}  # the pipeline's role keeps it
        for stmt in sqlfiles.named(conn, "store/grants.sql", "no_temporary", quoted=quoted):
            conn.exec_driver_sql(stmt)
        may = _sql("may_make_temporary")
        still = conn.execute(may, {"r": role}).scalar_one()
        lost = sorted(r for r in could if not conn.execute(may, {"r": r}).scalar_one())
        owner = conn.execute(_sql("database_owner"), {"d": db}).scalar_one()
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
