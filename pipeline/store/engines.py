"""Connections to engines: a job's connection id -> SQLAlchemy URL -> one engine per URL, and transactions."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import connections, settings
from pipeline.connections import Conn
from pipeline.errors import ConfigError, StoreError
from pipeline.store import sqlfiles

log = logging.getLogger(__name__)


CONNECT_ATTEMPTS = 3
LIBPQ_EXTRA = ("options", "sslmode", "sslrootcert", "connect_timeout", "application_name")


def url_from_connection(
    conn_type: str,
    host: str | None = None,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: dict[str, Any] | None = None,
    *,
    query_keys: tuple[str, ...] | None = LIBPQ_EXTRA,
) -> str:
    """SQLAlchemy URL of an Airflow-style connection (sqlite or postgres).

    Args:
        query_keys: which ``extra`` keys become URL query parameters: the libpq settings Airflow
            keeps in a stored connection's extra, or None for all (a URI's own query string).
    """
    if extra and extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    query = {k: str(v) for k, v in (extra or {}).items()
             if (query_keys is None or k in query_keys) and not isinstance(v, dict | list)}
    kind, _, driver = (conn_type or "").lower().partition("+")
    if kind == "sqlite":  # Airflow keeps the file in host; a sqlite:////abs/path URI has it in the path
        return f"sqlite:///{host or schema or ''}" + (f"?{urlencode(query)}" if query else "")
    if kind in ("postgres", "postgresql"):
        url = sa.URL.create(
            f"postgresql+{driver or 'psycopg'}", username=login or None, password=password or None,
            host=host or None, port=port or None, database=schema or None, query=query,
        )
        return url.render_as_string(hide_password=False)
    raise ConfigError(f"connection type {conn_type!r} is not supported: use sqlite or postgres")


def database_url(conn: Conn, whole_query: bool = False) -> str:
    """SQLAlchemy URL of a parsed connection (``pipeline.connections``); ``whole_query``: it came from a
    URI, whose every query parameter is kept (a stored connection's extra keeps its libpq settings only)."""
    return url_from_connection(conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema,
                               conn.extra, query_keys=None if whole_query else LIBPQ_EXTRA)


def url_from_uri(uri: str) -> str:
    """SQLAlchemy URL of an Airflow connection URI or JSON (as in AIRFLOW_CONN_* variables)."""
    return database_url(connections.from_uri("db", uri), whole_query=not uri.strip().startswith("{"))


def resolve_url(conn_id: str, resolver: connections.Resolver | None = None) -> str:
    """The output database of a job: ``AIRFLOW_CONN_<ID>`` first, else ``resolver`` (Airflow's store)."""
    env = os.environ.get(connections.env_var(conn_id))
    if env:
        connections.get(conn_id)  # the same checks and messages as every connection
        return url_from_uri(env)
    if resolver is None:
        raise ConfigError(
            f"no database connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()} "
            "(e.g. sqlite:////abs/path/scoring.db or postgresql://user@host:5432/db) "
            "or create the Airflow connection"
        )
    return database_url(resolver(conn_id))


def for_connection(conn_id: str, resolver: connections.Resolver | None = None) -> Engine:
    """The engine of a connection id (``resolve_url``, then ``engine_for``): one per URL."""
    return engine_for(resolve_url(conn_id, resolver))


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One engine per URL; SQLite gets WAL and a busy timeout so readers never block."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        pragmas = [sqlfiles.plain("store/engines.sql", name) for name in ("wal", "busy_timeout")]

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            for pragma in pragmas:
                cur.execute(pragma)
            cur.close()

        return engine
    # sessions in UTC: the pipeline binds naive UTC datetimes, which timestamptz reads in the session's zone
    parsed = sa.engine.make_url(url)
    options = " ".join(filter(None, [parsed.query.get("options"), "-c TimeZone=UTC"]))
    return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10, "options": options})


def describe(engine: Engine) -> str:
    """Where an engine points, without its password."""
    u = engine.url
    return f"{u.get_backend_name()} {u.host or ''}{':' + str(u.port) if u.port else ''}/{u.database}"


@contextlib.contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """A transaction; a refused connection is retried, then fails naming the host."""
    last: Exception | None = None
    conn: Connection | None = None
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            conn = engine.connect()
            break
        except sa.exc.OperationalError as exc:
            last = exc
            log.warning("database %s unreachable (attempt %d/%d): %s", describe(engine), attempt,
                        CONNECT_ATTEMPTS, str(exc).splitlines()[0])
            if attempt < CONNECT_ATTEMPTS:
                time.sleep(settings.db_retry_backoff_s() * 2 ** (attempt - 1))
    if conn is None:
        raise StoreError(
            f"cannot reach the output database {describe(engine)} after {CONNECT_ATTEMPTS} attempts: "
            f"{str(last).splitlines()[0] if last else ''}. Nothing was written; check the server "
            "and the connection, then retry the task."
        ) from last
    with conn, conn.begin():
        yield conn


def libpq_uri(engine: Engine) -> str:
    """The engine's PostgreSQL URL as a libpq URI (for ADBC)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
