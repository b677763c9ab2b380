"""Store: the output database (SQLite by default, PostgreSQL by URL) and atomic partition writes.

A partition is replaced in one transaction (delete, then bulk insert), so readers see the
old partition or the new one, never a mix, and a failure half-way leaves the old one.
PostgreSQL takes ADBC (``adbc_ingest``: Arrow record batches streamed by binary COPY) in
the same transaction as the delete; SQLite takes executemany.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import connections, dictionary, livecopy, settings
from pipeline.config import IDENTIFIER_RE, PREDICTION_COLUMNS, check_column_name, check_identifier
from pipeline.connections import Conn
from pipeline.errors import ConfigError, StoreError, store_failure

log = logging.getLogger(__name__)

# PREDICTION_COLUMNS, the predictions table's columns besides the entity key, is defined in config
# (which refuses an entity key named like one of them) and read by everyone as store.PREDICTION_COLUMNS
CONNECT_ATTEMPTS = 3
LIBPQ_EXTRA = ("options", "sslmode", "sslrootcert", "connect_timeout", "application_name")


# -- connections ---------------------------------------------------------------------
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


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    """One engine per URL; SQLite gets WAL and a busy timeout so readers never block."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
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


# -- schema --------------------------------------------------------------------------
def _quote(engine: Engine | Connection, name: str) -> str:
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
    return f"{_quote(engine, schema)}.{_quote(engine, table)}" if schema else _quote(engine, table)


def quote_column(engine: Engine | Connection, name: str, what: str = "entity_key") -> str:
    """A column name from the job or the card (any case, spaces, quotes...), validated and quoted.

    The dialect's identifier preparer doubles an embedded double quote, so the name can never
    end the identifier early; ``check_column_name`` refuses what no database should hold.
    """
    return engine.dialect.identifier_preparer.quote_identifier(check_column_name(name, what))


def _prediction_columns(engine: Engine | Connection, key: str) -> list[str]:
    """The quoted columns of a predictions table's rows: the entity key, then ``PREDICTION_COLUMNS``."""
    preparer = engine.dialect.identifier_preparer
    return [quote_column(engine, key), *(preparer.quote(c) for c in PREDICTION_COLUMNS)]


def _statements(sql: str) -> list[str]:
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
    def one(k: str, v: str) -> str:
        if k in COLUMN_PLACEHOLDERS:
            return quote_column(engine, v)
        return _quote(engine, v) if k in UNQUALIFIED_PLACEHOLDERS else table_name(engine, v, schema)

    names = {k: one(k, v) for k, v in identifiers.items() if k != "key_type"} | column_types(engine)
    names |= {k: _literal(engine, v) for k, v in (literals or {}).items()} | (quoted or {})
    if "key" in names:  # {primary_key} of sql/010: PostgreSQL's partitions hold one day each, so the key leads
        names["primary_key"] = (f"{names['key']}, partition_date" if engine.dialect.name == "postgresql"
                                else f"partition_date, {names['key']}")
    if "key_type" in identifiers:
        names["key_type"] = {"int": "BIGINT", "str": "TEXT"}[identifiers["key_type"]]
    return [stmt.format(**names) for stmt in _statements((settings.sql_dir() / filename).read_text())]


def column_types(engine: Engine | Connection) -> dict[str, str]:
    """``{ts}`` and ``{json}`` of the DDL files: timestamptz and jsonb on PostgreSQL, SQLite's TIMESTAMP and TEXT;
    ``{partitioned}`` and ``{fillfactor}``: PostgreSQL's own clauses, empty on SQLite."""
    if engine.dialect.name == "postgresql":
        return {"ts": "TIMESTAMPTZ", "json": "JSONB", "partitioned": " PARTITION BY LIST (partition_date)",
                "fillfactor": " WITH (fillfactor = 50)"}
    return {"ts": "TIMESTAMP", "json": "TEXT", "partitioned": "", "fillfactor": ""}


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
    changes = [f"ALTER COLUMN {_quote(conn, c)} TYPE timestamptz USING {_quote(conn, c)} AT TIME ZONE 'UTC'"
               for c in timestamps if found.get(c) == "timestamp without time zone"]
    changes += [f"ALTER COLUMN {_quote(conn, c)} TYPE jsonb USING {_quote(conn, c)}::jsonb"
                for c in json_columns if found.get(c) == "text"]
    if changes:
        for view in views:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {table_name(conn, view, schema)}")
        conn.exec_driver_sql(f"ALTER TABLE {table_name(conn, table, schema)} {', '.join(changes)}")
        log.info("migrated %s to timestamptz/jsonb: %d column(s)", table, len(changes))
    return changes


UNQUALIFIED_PLACEHOLDERS = frozenset({"by_key", "legacy", "legacy_by_key", "comparisons", "current_key", "cur"})  # index names, new names, operational tables
LEDGER_FILES = ("001_scoring_runs.sql", "002_quarantine.sql", "003_deliveries.sql", "004_schema_migrations.sql",
                "005_drift.sql", "006_model_registrations.sql", "007_shadow_comparisons.sql",
                "008_performance.sql")


def ensure_ledger(engine: Engine) -> None:
    """Create the ledger, quarantine and delivery tables if missing; apply ``sql/migrations/``."""
    with begin(engine) as conn:
        _ddl_lock(conn)
        for name in LEDGER_FILES:
            for stmt in render_sql(conn, name):
                conn.exec_driver_sql(stmt)
    apply_migrations(engine)
    with begin(engine) as conn:
        _ddl_lock(conn)
        for table, columns in TIMESTAMP_COLUMNS.items():
            upgrade_types(conn, table, columns, JSON_COLUMNS.get(table, ()))
    with begin(engine) as conn:
        _ddl_lock(conn)
        comment(conn, dictionary.objects("operational"))


def _ddl_lock(conn: Connection) -> None:
    """PostgreSQL: one schema change at a time (concurrent CREATE ... IF NOT EXISTS can collide)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('scoring_pipeline_ddl'))"))


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
            with begin(engine) as conn:
                conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                             {"n": path.name, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
                for stmt in _statements(path.read_text()):
                    conn.exec_driver_sql(stmt.format(**column_types(conn)))
        except sa.exc.IntegrityError:
            log.info("migration %s was applied by another process", path.name)
            continue
        log.info("applied migration %s to %s", path.name, describe(engine))
        applied.append(path.name)
    return applied


def _short_locks(engine: Engine, what: str, body: Callable[[Connection], None]) -> None:
    """Run ``body`` in one transaction (under the DDL lock) whose every lock wait is short (PostgreSQL).

    The DDL of a run's start (views made anew, comments, a column added) needs the tables and views
    to itself; a request waiting for one held by a long query would hold every later reader behind
    it. So each wait is ``SWAP_TRY_MS`` at most: the transaction is rolled back, pauses (jittered,
    doubling up to ``SWAP_PAUSE_S[1]``) and is tried again, for up to ``SWAP_TRIES`` times
    ``settings.swap_lock_timeout_s()`` in all, then fails with ``SwapWaitError`` (retryable).
    """
    patience = SWAP_TRIES * settings.swap_lock_timeout_s()
    started = time.monotonic()
    for tried in itertools.count(1):
        try:
            with begin(engine) as conn:
                _ddl_lock(conn)  # (waits for another start's DDL as long as it takes)
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{SWAP_TRY_MS}ms'")
                body(conn)
            if tried > 1:
                log.warning("%s: readers held it; done at try %d after %.1fs", what, tried, time.monotonic() - started)
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":
                raise
            waited = time.monotonic() - started
            if waited >= patience:
                raise SwapWaitError(
                    f"{what} gave up after {tried} tries in {waited:.0f}s: queries reading it held it throughout "
                    f"(lock timeout {SWAP_TRY_MS} ms a try, so other readers never waited long behind it). Nothing "
                    "was changed. Retry the task once the long queries have ended (pg_stat_activity lists them); "
                    "SCORING_SWAP_LOCK_TIMEOUT_S sets how long it keeps trying (three times its value).") from None
            first, longest = SWAP_PAUSE_S
            time.sleep(min(longest, first * 2 ** (tried - 1)) * random.uniform(0.5, 1.0))


def _patient(conn: Connection) -> None:
    """PostgreSQL: from here on, the transaction's lock waits are as long as a swap's patience: a one-time
    migration (a table made from its whole history) that ``_short_locks`` rolled back for a short wait
    late in it would redo all its work at every try. Readers wait for it once, as for any migration."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(SWAP_TRIES * settings.swap_lock_timeout_s() * 1000)}ms'")


def _check_key_type(table: str, key: str, key_type: str, columns: list[dict[str, Any]]) -> None:
    """Refuse a run whose keys are of another kind than the existing table's key column (BIGINT vs TEXT):
    PostgreSQL would fail the COPY with an unhelpful error, SQLite would turn 00123 into 123."""
    found = next((c["type"] for c in columns if c["name"] == key), None)
    if found is None:
        return
    is_int = isinstance(found, sa.Integer)
    if is_int == (key_type == "int"):
        return
    if is_int:
        raise ConfigError(
            f"table {table}: its key column {key!r} is BIGINT (an earlier run read the keys as integers) but this run "
            "reads them as text (neither the job file nor the model card sets entity_key_type: integer, and CSV keys "
            "are text by default so that 00123 stays 00123). Set entity_key_type: integer in the job file to keep "
            "this table, or rename the table so that the next run makes a new one with text keys.")
    raise ConfigError(
        f"table {table}: its key column {key!r} is TEXT but this run reads the keys as integers (entity_key_type: "
        "integer in the job file or the model card, or an integer column of a Parquet or SQL source). Set "
        "entity_key_type: string in the job file to keep this table, or rename the table so that the next run "
        "makes a new one with BIGINT keys.")


def ensure_predictions(engine: Engine, table: str, key: str, key_type: str, schema: str | None = None,
                       job_id: str | None = None) -> None:
    """Create a job's predictions table, its index, its latest-row table and its analyst views if they
    are missing (in the analysts' ``schema`` on PostgreSQL, the days and the latest rows in its
    ``storage_schema``), with their comments; ``job_id``: the job publishing into it, whose ledger,
    drift and quarantine counts the reader views of the schema show (sql/050, sql/051)."""
    ids = {"predictions": table, "key": key, "latest": f"{table}_latest", "daily": f"{table}_daily"}

    def ensure(conn: Connection) -> None:
        home = analyst_schema(conn, schema)
        parts = storage_schema(conn, schema)
        if schema and not home:
            log.info("%s has one schema: predictions table %s stays there (output.schema %r is for PostgreSQL)",
                     conn.dialect.name, table, schema)
        for name in (home, parts):
            if name:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(conn, name)}")
        for stmt in render_sql(conn, "010_predictions.sql", schema, key_type=key_type, **ids):
            conn.exec_driver_sql(stmt)
        # tables created before a column existed get it (the column list is the DDL's)
        found = sa.inspect(conn).get_columns(table, schema=home)
        _check_key_type(table, key, key_type, found)
        have = {c["name"] for c in found}
        for column, typ in (("flags", "TEXT"), ("route", "TEXT"), ("router_model", "TEXT"),
                            ("router_version", "INTEGER")):
            if column not in have:
                conn.exec_driver_sql(f"ALTER TABLE {table_name(conn, table, schema)} ADD COLUMN {column} {typ}")
        views = [ids["latest"], ids["daily"], *READER_VIEWS]
        readers = _view_readers(conn, home, [table, *views])
        # the views depend on scored_at: dropped if it must change type, made anew below in any case
        upgrade_types(conn, table, ("scored_at",), schema=home, views=(ids["latest"], ids["daily"]))
        if _is_plain_table(conn, table, home):
            _patient(conn)
            partition_by_day(conn, table, key, home, views=(ids["latest"], ids["daily"]))
        if parts:  # this table's days, and those of any other predictions table left beside it (a retired job's)
            for name in {table, *_tables_with_days_beside(conn, home)}:
                move_partitions(conn, name, home, parts)
        pk = sa.inspect(conn).get_pk_constraint(table, schema=home)["constrained_columns"]
        if pk[:1] != [key]:  # the primary key does not serve an entity's history: an index by key
            for stmt in render_sql(conn, "015_predictions_index.sql", schema, by_key=f"{table}_by_key", **ids):
                conn.exec_driver_sql(stmt)
        current = ensure_latest_table(conn, table, key, schema)
        for stmt in render_sql(conn, "020_views.sql", schema, literals={"table": table},
                               quoted={"current": current, "newest": _newest(conn, schema)}, **ids):
            conn.exec_driver_sql(stmt)
        if job_id is not None:
            _reader_views(conn, job_id, table, key, key_type, schema)
        for view, grantee in readers:  # views made anew, a table migrated: who could read them still can
            conn.exec_driver_sql(f"GRANT SELECT ON {table_name(conn, view, schema)} TO {_quote_role(conn, grantee)}")
        comment(conn, dictionary.objects("analyst", table, key), schema)
        if job_id is not None:
            comment(conn, dictionary.objects("reader"), schema)
        comment(conn, dictionary.objects("storage", partition_prefix(table), key), parts)
        if job_id is not None:
            comment(conn, dictionary.objects("jobs"), parts)

    _short_locks(engine, f"preparing table {table}", ensure)


READER_VIEWS = ("scoring_attempts", "scoring_drift_daily", "scoring_quarantine_daily")
JOBS_TABLE = "scoring_jobs"


def _reader_views(conn: Connection, job_id: str, table: str, key: str, key_type: str, schema: str | None) -> None:
    """The analysts' views of the ledger, the drift and the quarantine (``sql/050``, ``sql/051``), limited
    to the jobs recorded in the storage schema's ``scoring_jobs`` as publishing into this schema."""
    parts = storage_schema(conn, schema)
    jobs = table_name(conn, JOBS_TABLE, parts)
    names = {"attempts": READER_VIEWS[0], "drift_daily": READER_VIEWS[1], "quarantine_daily": READER_VIEWS[2]}
    for stmt in render_sql(conn, "050_reader_views.sql", schema, quoted={"jobs": jobs}, **names):
        conn.exec_driver_sql(stmt)
    params = {"j": job_id, "t": table, "k": key, "kt": {"int": "BIGINT", "str": "TEXT"}[key_type],
              "u": dt.datetime.now(dt.UTC).replace(tzinfo=None)}
    row = conn.execute(sa.text(f"SELECT table_name, entity_key, key_type FROM {jobs} WHERE job_id = :j"),
                       params).first()
    if row is None:
        conn.execute(sa.text(f"INSERT INTO {jobs} (job_id, table_name, entity_key, key_type, updated_at) "
                             "VALUES (:j, :t, :k, :kt, :u)"), params)
    elif tuple(row) != (table, key, params["kt"]):
        conn.execute(sa.text(f"UPDATE {jobs} SET table_name = :t, entity_key = :k, key_type = :kt, updated_at = :u "
                             "WHERE job_id = :j"), params)
    for stmt in render_sql(conn, f"051_quarantine_daily.{conn.dialect.name}.sql", schema, quoted={"jobs": jobs},
                           quarantine_daily=names["quarantine_daily"]):
        conn.exec_driver_sql(stmt)


NEWEST_TABLE = "scoring_latest_partitions"  # per storage schema: the newest day of each predictions table


def _newest(conn: Connection | Engine, schema: str | None) -> str:
    """The qualified, quoted table of the predictions tables' newest days (sql/021) of an analysts' schema."""
    return table_name(conn, NEWEST_TABLE, storage_schema(conn, schema))


def latest_table(table: str) -> str:
    """The name of a predictions table's latest-row table (in its storage schema): ``<prefix>_current``."""
    return f"{partition_prefix(table)}_current"


def ensure_latest_table(conn: Connection, table: str, key: str, schema: str | None) -> str:
    """The latest-row table of a predictions table (``sql/021_latest_table.sql``): made if missing, from the
    table's history (``sql/022``), in the caller's transaction; columns the table gained are added.
    Returns its qualified, quoted name."""
    parts = storage_schema(conn, schema)
    name = latest_table(table)
    current = table_name(conn, name, parts)
    inspector = sa.inspect(conn)
    existed = inspector.has_table(name, schema=parts)
    prefix = partition_prefix(table)
    ids = {"predictions": table, "key": key, "current_key": f"{prefix}_current_key"}
    columns = [c["name"] for c in inspector.get_columns(table, schema=analyst_schema(conn, schema))]
    if existed:  # (021 not run again: its CREATE INDEX IF NOT EXISTS would wait for a publish's lock on the table)
        have = {c["name"] for c in sa.inspect(conn).get_columns(name, schema=parts)}
        for column in (c for c in inspector.get_columns(table, schema=analyst_schema(conn, schema))
                       if c["name"] not in have):
            conn.exec_driver_sql(f"ALTER TABLE {current} ADD COLUMN {quote_column(conn, column['name'], 'column')} "
                                 f"{column['type'].compile(dialect=conn.dialect)}")
        return current
    _patient(conn)  # filled from the whole history
    quoted = {"current": current, "newest": _newest(conn, schema), **_column_lists(conn, columns)}
    for stmt in [*render_sql(conn, "021_latest_table.sql", schema, quoted=quoted, **ids),
                 *render_sql(conn, "022_latest_fill.sql", schema, literals={"table": table}, quoted=quoted, **ids)]:
        conn.exec_driver_sql(stmt)
    log.info("made the latest-row table %s of %s from its history", current, table)
    return current


def _column_lists(conn: Connection | Engine, columns: list[str]) -> dict[str, str]:
    """``{columns}``, ``{p_columns}``, ``{o_columns}``, ``{n_columns}`` and ``{updates}`` of sql/022 and sql/023."""
    quoted = [conn.dialect.identifier_preparer.quote_identifier(check_column_name(c, "column", reserved=frozenset()))
              for c in columns]
    return {"columns": ", ".join(quoted), **{f"{a}_columns": ", ".join(f"{a}.{c}" for c in quoted) for a in "pon"},
            "updates": ", ".join(f"{c} = excluded.{c}" for c in quoted)}


def latest_statements(engine: Engine | Connection, table: str, key: str, columns: list[str], day: dt.date,
                      schema: str | None, new: str) -> list[str]:
    """The statements of a publish of ``day`` that keep the latest-row table in step (``sql/023``), for the
    transaction of the publish; ``new``: the qualified table holding the day's new rows."""
    literal = f"DATE '{day.isoformat()}'" if engine.dialect.name == "postgresql" else f"'{day.isoformat()}'"
    quoted = {"current": table_name(engine, latest_table(table), storage_schema(engine, schema)), "new": new,
              "day": literal, "newest": _newest(engine, schema), **_column_lists(engine, columns)}
    return render_sql(engine, "023_latest_publish.sql", schema, literals={"table": table}, quoted=quoted,
                      predictions=table, key=key, cur=latest_table(table))


def _tables_with_days_beside(conn: Connection, home: str) -> list[str]:
    """PostgreSQL: the predictions tables of schema ``home`` (partitioned, with the pipeline's columns) that have
    day partitions in ``home`` itself (the layout before issue 24)."""
    return list(name for name in conn.execute(sa.text(
        "SELECT DISTINCT p.relname FROM pg_class p JOIN pg_inherits i ON i.inhparent = p.oid "
        "JOIN pg_class c ON c.oid = i.inhrelid AND c.relnamespace = p.relnamespace "
        "WHERE p.relkind = 'p' AND p.relnamespace = CAST(:h AS regnamespace) AND (SELECT count(*) FROM pg_attribute a "
        "WHERE a.attrelid = p.oid AND NOT a.attisdropped AND a.attname = ANY(:cols)) = :n"),
        {"h": _quote(conn, home), "cols": list(PREDICTION_COLUMNS[:6]), "n": 6}).scalars()
        if IDENTIFIER_RE.match(name))  # the pipeline's names only: a table an analyst made otherwise is left alone


def move_partitions(conn: Connection, table: str, home: str, parts: str) -> list[str]:
    """PostgreSQL: move the day partitions of ``home.table`` made beside it (before issue 24), and load tables
    of it left there, into ``parts`` (its ``storage_schema``). ``SET SCHEMA`` changes the catalogue only:
    no row moves. Recorded in scoring_schema_migrations as ``day_partitions_schema:<home>.<table>``."""
    parent = f"{_quote(conn, home)}.{_quote(conn, table)}"
    found = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:p AS regclass) AND c.relnamespace = CAST(:h AS regnamespace) "
        "UNION ALL SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(:h AS regnamespace) "
        "AND c.relkind = 'r' AND NOT c.relispartition "
        "AND CASE WHEN starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), :mark) "
        "THEN CAST(substr(obj_description(c.oid, 'pg_class'), :at) AS json) ->> 'table' = :t ELSE false END"),
        {"p": parent, "h": _quote(conn, home), "mark": LOAD_MARK, "at": len(LOAD_MARK) + 1, "t": table}).scalars().all()
    for name in found:
        conn.exec_driver_sql(f"ALTER TABLE {_quote(conn, home)}.{_quote(conn, name)} SET SCHEMA {_quote(conn, parts)}")
    record = f"day_partitions_schema:{home}.{table}"
    if found and conn.execute(sa.text("SELECT 1 FROM scoring_schema_migrations WHERE name = :n"),
                              {"n": record}).first() is None:
        conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                     {"n": record, "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    if found:
        log.info("moved %d day partition(s) of %s.%s to schema %s (out of the analysts' listing)",
                 len(found), home, table, parts)
    return list(found)


SHADOW_COLUMNS = ["partition_date", "model_name", "model_version", "prediction", "score", "run_id", "scored_at"]


def ensure_shadow(engine: Engine, table: str, key: str, key_type: str, job_id: str, schema: str | None = None) -> None:
    """With model.challengers: ``<table>_shadow`` and the view ``<table>_compare`` (``sql/040_shadow.sql``)."""

    def ensure(conn: Connection) -> None:
        home = analyst_schema(conn, schema)
        if home:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(conn, home)}")
        readers = _view_readers(conn, home, [f"{table}_compare"])
        if sa.inspect(conn).has_table(f"{table}_shadow", schema=home):
            _check_key_type(f"{table}_shadow", key, key_type,
                            sa.inspect(conn).get_columns(f"{table}_shadow", schema=home))
        # {comparisons} unqualified: the view binds to the operational table the session's search path finds
        for stmt in render_sql(conn, "040_shadow.sql", schema, literals={"job": job_id}, key=key, key_type=key_type,
                               shadow=f"{table}_shadow", compare=f"{table}_compare",
                               comparisons="scoring_shadow_comparisons"):
            conn.exec_driver_sql(stmt)
        for view, grantee in readers:
            conn.exec_driver_sql(f"GRANT SELECT ON {table_name(conn, view, schema)} TO {_quote_role(conn, grantee)}")
        comment(conn, dictionary.objects("shadow", table, key), schema)

    _short_locks(engine, f"preparing table {table}_shadow", ensure)


def replace_shadow(engine: Engine, *, table: str, key: str, partition_date: dt.date, batches: Iterable[pa.Table],
                   schema: str | None = None) -> int:
    """Replace a partition's rows of every challenger in ``<table>_shadow`` in one transaction."""
    shadow = f"{table}_shadow"
    columns = [key, *SHADOW_COLUMNS]
    written = 0
    if engine.dialect.name == "postgresql":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(libpq_uri(engine)) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_schema()")
            home = analyst_schema(engine, schema) or cur.fetchone()[0]
            cur.execute(f"DELETE FROM {_qualified(engine, home, shadow)} WHERE partition_date = $1",
                        parameters=(partition_date,))
            written = _copy_rows(cur, shadow, home, columns, batches)
            conn.commit()
        return written
    quoted = ", ".join([quote_column(engine, key), *SHADOW_COLUMNS])
    with begin(engine) as conn:
        qt = table_name(conn, shadow, schema)
        conn.execute(sa.text(f"DELETE FROM {qt} WHERE partition_date = :d"), {"d": partition_date})
        for batch in batches:
            rows = list(zip(*(batch.column(c).to_pylist() for c in columns), strict=True))
            if rows:
                conn.exec_driver_sql(f"INSERT INTO {qt} ({quoted}) VALUES ({', '.join('?' for _ in columns)})", rows)
            written += batch.num_rows
    return written


def _is_plain_table(conn: Connection, table: str, schema: str | None) -> bool:
    """PostgreSQL: the predictions table is a plain table (made before it was partitioned by day)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(sa.text(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = COALESCE(:s, current_schema()) AND c.relname = :t"), {"s": schema, "t": table}).scalar()
    return kind == "r"


def partition_by_day(conn: Connection, table: str, key: str, schema: str | None, views: tuple[str, ...]) -> None:
    """PostgreSQL: migrate a plain predictions table into one partitioned by day (``sql/030_partition_by_day.sql``),
    in the caller's transaction; the ``views`` on it are dropped (the caller makes them anew)."""
    home = schema or conn.execute(sa.text("SELECT current_schema()")).scalar_one()
    days_in = storage_schema(conn, schema) or home  # the day partitions' schema
    rows = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table_name(conn, table, schema)}")).scalar_one()
    for view in views:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {table_name(conn, view, schema)}")
    legacy = f"{table[:50]}_plain"
    for stmt in render_sql(conn, "030_partition_by_day.sql", schema,
                           literals={"schema": days_in, "prefix": partition_prefix(table)},
                           predictions=table, key=key, legacy=legacy, legacy_q=legacy,
                           old_by_key=f"{table}_by_key", legacy_by_key=f"{legacy}_by_key"):
        conn.execute(sa.text(stmt))  # text(): the DO block's format() holds % signs the driver must not read
    conn.execute(sa.text("INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t)"),
                 {"n": f"030_partition_by_day.sql:{home}.{table}", "t": dt.datetime.now(dt.UTC).replace(tzinfo=None)})
    log.info("migrated predictions table %s.%s (%d rows) to a table partitioned by day", home, table, rows)


def partition_prefix(table: str) -> str:
    """The name prefix of a predictions table's day partitions and load tables: the table's name, or for
    a long one its first 31 characters and a hash (``<prefix>_<yyyymmdd>_load_<token>`` stays under 63)."""
    if len(table) <= 40:
        return table
    return f"{table[:31]}_{hashlib.sha256(table.encode()).hexdigest()[:8]}"


def _view_readers(conn: Connection, schema: str | None, views: list[str]) -> list[tuple[str, str]]:
    """PostgreSQL: (view or table, role) of every SELECT granted on them to roles other than their owner."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.execute(sa.text(
        "SELECT table_name, grantee FROM information_schema.role_table_grants WHERE privilege_type = 'SELECT' "
        "AND table_schema = COALESCE(:s, current_schema()) AND table_name = ANY(:v) AND grantee <> current_user"),
        {"s": schema, "v": views}).all()
    return [(r[0], r[1]) for r in rows]


def _quote_role(conn: Connection, role: str) -> str:
    """A role name read from the catalogue, quoted (roles may have any name PostgreSQL allows)."""
    return conn.dialect.identifier_preparer.quote_identifier(role)


def comment(conn: Connection, objects: list[dictionary.DbObject], schema: str | None = None) -> None:
    """PostgreSQL: ``COMMENT ON`` every table or view and each of its columns (texts: sql/dictionary.yaml).

    The comments in place are read in one query and only those that differ are written, so a run's
    start does not rewrite some 80 comments every time.
    """
    if conn.dialect.name != "postgresql":
        return
    have = _comments(conn, analyst_schema(conn, schema), [obj.name for obj in objects])
    for obj in objects:
        name = table_name(conn, obj.name, schema)
        if have.get((obj.name, None)) != obj.description:
            conn.exec_driver_sql(f"COMMENT ON {'VIEW' if obj.kind == 'view' else 'TABLE'} {name} IS "
                                 f"{_literal(conn, obj.description)}")
        for column, text in obj.columns.items():
            if have.get((obj.name, column)) == text:
                continue
            quoted = conn.dialect.identifier_preparer.quote_identifier(
                check_column_name(column, "column", reserved=frozenset()))
            conn.exec_driver_sql(f"COMMENT ON COLUMN {name}.{quoted} IS {_literal(conn, text)}")


def _comments(conn: Connection, schema: str | None, names: list[str]) -> dict[tuple[str, str | None], str]:
    """The comments of the named tables and views (key ``(name, None)``) and of their columns."""
    rows = conn.execute(sa.text(
        "SELECT c.relname, NULL AS col, obj_description(c.oid, 'pg_class') FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = COALESCE(:s, current_schema()) "
        "AND c.relname = ANY(:names) "
        "UNION ALL SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
        "AND a.attnum > 0 AND NOT a.attisdropped WHERE n.nspname = COALESCE(:s, current_schema()) "
        "AND c.relname = ANY(:names)"), {"s": schema, "names": names}).all()
    return {(r[0], r[1]): r[2] for r in rows if r[2] is not None}


def _literal(conn: Connection, text: str) -> str:
    """A string literal for a statement that takes no bound parameters (COMMENT): the dialect quotes it."""
    return str(sa.literal(text, sa.String()).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))


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
    with begin(engine) as conn:
        _ddl_lock(conn)
        if conn.execute(sa.text("SELECT current_schema()")).scalar_one() == schema:
            raise ConfigError(
                f"schema {schema!r} is this connection's own, where the ledger and the quarantine live: a reader "
                "there could read them. Give the jobs an output.schema of their own (e.g. analytics) and grant that.")
        q_schema, q_role = _quote(conn, schema), _quote(conn, role)
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
    with begin(engine) as conn:
        db, me = conn.execute(sa.text("SELECT current_database(), current_user")).one()
        q_db = conn.dialect.identifier_preparer.quote_identifier(db)
        could = set(conn.execute(sa.text(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> :me "
            "AND has_database_privilege(oid, current_database(), 'TEMPORARY')"), {"me": me}).scalars())
        conn.exec_driver_sql(f"GRANT TEMPORARY ON DATABASE {q_db} TO {_quote_role(conn, me)}")  # the pipeline keeps it
        conn.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {q_db} FROM PUBLIC")
        conn.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {q_db} FROM {_quote(conn, role)}")
        may = sa.text("SELECT has_database_privilege(CAST(:r AS name), current_database(), 'TEMPORARY')")
        still = conn.execute(may, {"r": role}).scalar_one()
        lost = sorted(r for r in could if not conn.execute(may, {"r": r}).scalar_one())
        q_me = _quote_role(conn, me)
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


# -- writes --------------------------------------------------------------------------
def replace_partition(
    engine: Engine,
    *,
    table: str,
    key: str,
    job_id: str,
    partition_date: dt.date,
    batches: Iterable[pa.Table],
    quarantine: Iterable[list[dict[str, Any]]] = (),
    schema: str | None = None,
    attempt: tuple[str, int] | None = None,
    constants: dict[str, Any] | None = None,
) -> int:
    """Replace one partition's predictions (and quarantine rows) in one transaction.

    Args:
        batches: tables with the key column and PREDICTION_COLUMNS, but ``constants``'s; the lineage
            columns may be left out (null).
        constants: columns with the same value on every row (the run's: date, model, run id, scored at).
            PostgreSQL sends them once, as the load table's defaults, not in every row of the COPY.
        quarantine: lists of quarantine rows (dicts of the scoring_quarantine columns).
        attempt: (run id, attempt) publishing: in the same transaction, ``pipeline.lease`` checks that
            no later attempt took the partition over and marks this one the ``live`` copy.
    """
    qt = table_name(engine, table, schema)
    check_column_name(key, "entity_key")  # a bad name is the job file's error, not the database's
    written = 0
    started = time.perf_counter()
    columns = [key, *PREDICTION_COLUMNS]
    constants = constants or {}
    try:
        if engine.dialect.name == "postgresql":
            written = _replace_adbc(engine, table, columns, job_id, partition_date, batches, quarantine,
                                    analyst_schema(engine, schema), attempt, constants)
        else:
            batches = _with_lineage(_with_constants(batches, constants))
            with begin(engine) as conn:
                conn.execute(sa.text(f"DELETE FROM {qt} WHERE partition_date = :d"), {"d": partition_date})
                _delete_quarantine(conn, job_id, partition_date)
                for batch in batches:
                    written += _insert(conn, qt, key, batch.select(columns))
                _keep_latest(conn, table, key, partition_date, schema)
                _insert_quarantine(conn, quarantine)
                if attempt is not None:
                    livecopy.publish(conn, job_id, *attempt, partition_date)
    except Exception as exc:
        if not _is_db_error(exc):
            raise
        raise store_failure(exc, doing="writing", partition_date=partition_date, table=table,
                            where=describe(engine), key=key) from exc
    seconds = time.perf_counter() - started
    log.info("replaced partition %s of %s: %d rows in %.2fs (%.0f rows/s)", partition_date, table,
             written, seconds, written / seconds if seconds else 0)
    return written


def _keep_latest(conn: Connection, table: str, key: str, day: dt.date, schema: str | None) -> None:
    """SQLite: the latest-row table kept in step with the day just replaced, in the same transaction."""
    columns = [c["name"] for c in sa.inspect(conn).get_columns(latest_table(table), schema=storage_schema(conn, schema))]
    for stmt in latest_statements(conn, table, key, columns, day, schema, table_name(conn, table, schema)):
        conn.exec_driver_sql(stmt)


LINEAGE_TYPES = {"route": pa.string(), "router_model": pa.string(), "router_version": pa.int32()}


def _with_constants(batches: Iterable[pa.Table], constants: dict[str, Any]) -> Iterator[pa.Table]:
    """Batches with the constant columns added to every row (SQLite's inserts)."""
    for batch in batches:
        for name, value in constants.items():
            batch = batch.append_column(name, pa.repeat(pa.scalar(value, PREDICTION_TYPES[name]), batch.num_rows))
        yield batch


PREDICTION_TYPES = {"partition_date": pa.date32(), "model_name": pa.string(), "model_version": pa.int32(),
                    "run_id": pa.string(), "scored_at": pa.timestamp("us")}


def _default_sql(engine: Engine, value: Any) -> str:
    """A constant as a column default (DDL takes no bound parameters: text is quoted by the dialect)."""
    if isinstance(value, bool) or not isinstance(value, int | str | dt.date):
        raise TypeError(f"no column default for {value!r}")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return f"CAST({_literal(engine, aware.isoformat())} AS TIMESTAMPTZ)"
    if isinstance(value, dt.date):
        return f"CAST({_literal(engine, value.isoformat())} AS DATE)"
    return _literal(engine, value)


def _with_lineage(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Batches without a cascade's lineage columns get them as nulls (one-model rows)."""
    for batch in batches:
        for name, typ in LINEAGE_TYPES.items():
            if name not in batch.column_names:
                batch = batch.append_column(name, pa.nulls(batch.num_rows, typ))
        yield batch


def replace_quarantine(
    engine: Engine, *, job_id: str, partition_date: dt.date, quarantine: Iterable[list[dict[str, Any]]]
) -> int:
    """Replace one partition's quarantine rows in one transaction (push mode has no predictions table)."""
    try:
        with begin(engine) as conn:
            _delete_quarantine(conn, job_id, partition_date)
            return _insert_quarantine(conn, quarantine)
    except sa.exc.SQLAlchemyError as exc:
        raise store_failure(exc, doing="writing", partition_date=partition_date, table="scoring_quarantine",
                            where=describe(engine)) from exc


def _delete_quarantine(conn: Connection, job_id: str, partition_date: dt.date) -> None:
    conn.execute(
        sa.text("DELETE FROM scoring_quarantine WHERE job_id = :j AND partition_date = :d"),
        {"j": job_id, "d": partition_date},
    )


def _insert_quarantine(conn: Connection, quarantine: Iterable[list[dict[str, Any]]]) -> int:
    count = 0
    for rows in quarantine:
        if rows:
            conn.execute(
                sa.text(
                    "INSERT INTO scoring_quarantine (job_id, partition_date, run_id, entity_key, entity_key_int, "
                    "reasons, row_values, quarantined_at) VALUES (:job_id, :partition_date, "
                    ":run_id, :entity_key, :entity_key_int, :reasons, :row_values, :quarantined_at)"
                ),
                rows,
            )
            count += len(rows)
    return count


def _is_db_error(exc: BaseException) -> bool:
    """SQLAlchemy errors and raw driver errors (ADBC, psycopg, sqlite3)."""
    return isinstance(exc, sa.exc.SQLAlchemyError) or type(exc).__module__.startswith(
        ("psycopg", "sqlite3", "adbc_driver"))


QUARANTINE_SCHEMA = pa.schema([("job_id", pa.string()), ("partition_date", pa.date32()), ("run_id", pa.string()),
                               ("entity_key", pa.string()), ("entity_key_int", pa.int64()), ("reasons", pa.string()),
                               ("row_values", pa.string()),
                               ("quarantined_at", pa.timestamp("us"))])


def _quarantine_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Quarantine rows for ADBC: ``row_values`` as Arrow's JSON type, which the driver copies into jsonb."""
    table = pa.Table.from_pylist(rows, QUARANTINE_SCHEMA)
    i = table.schema.get_field_index("row_values")
    return table.set_column(i, "row_values", table.column(i).cast(pa.json_(pa.string())))


def libpq_uri(engine: Engine) -> str:
    """The engine's PostgreSQL URL as a libpq URI (for ADBC)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


LOAD_MARK = "scoring load table "  # the COMMENT of a table a persist is loading: this, then JSON (table, attempt)
SWAP_TRIES = 3


def _replace_adbc(engine: Engine, table: str, columns: list[str], job_id: str, partition_date: dt.date,
                  batches: Iterable[pa.Table], quarantine: Iterable[list[dict[str, Any]]],
                  schema: str | None = None, attempt: tuple[str, int] | None = None,
                  constants: dict[str, Any] | None = None) -> int:
    """PostgreSQL: load the partition's rows into a table of their own, index it, swap it in.

    1. **load**: ``<prefix>_<yyyymmdd>_load_<token>`` (``LIKE`` the predictions table, no index) takes
       the rows by binary COPY; committed, it is visible to no reader of the predictions table. The
       COPY carries only the columns that vary by row: ``constants`` are the load table's defaults
       while it loads (dropped after), and absent lineage columns are null.
    2. **index**: the primary key and the index by key, as the predictions table has them, and a
       ``CHECK`` on the day that lets ``ATTACH`` skip its scan; ``ANALYZE``.
    3. **swap**, one short transaction (``_swap``): the quarantine rows replaced, the publish check of
       ``pipeline.lease``, the day's old partition detached and dropped, the new one attached. The table
       is taken from its readers in tries of ``SWAP_TRY_MS`` (``_take_from_readers``): readers never
       queue behind a waiting swap for longer than that.

    Readers see the old partition until 3 commits, then the new one: a re-run costs what a first
    load costs (no DELETE, no index maintenance during the COPY). A failure anywhere drops the load
    table; one left by a killed attempt is dropped by the next persist into the table.
    """
    import adbc_driver_postgresql.dbapi as adbc

    prefix, key = partition_prefix(table), columns[0]
    token = hashlib.sha256(f"{attempt}:{os.getpid()}:{time.time_ns()}".encode()).hexdigest()[:6]
    load = f"{prefix}_{partition_date:%Y%m%d}_load_{token}"
    with adbc.connect(libpq_uri(engine)) as conn, conn.cursor() as cur:  # autocommit off
        cur.execute("SELECT current_schema()")
        db_schema = cur.fetchone()[0]  # the operational tables' (the quarantine's)
        mark = LOAD_MARK + json.dumps({"table": table, "job_id": job_id, "day": partition_date.isoformat(),
                                       "run_id": attempt and attempt[0], "attempt": attempt and attempt[1],
                                       "ledger": db_schema})
        home = schema or db_schema
        days_in = storage_schema(engine, schema) or db_schema  # the day partitions' and load tables' schema
        parent, q_load = _qualified(engine, home, table), _qualified(engine, days_in, load)
        _drop_dead_loads(cur, engine, days_in, table, partition_date)
        constants = constants or {}
        _create_load(engine, cur, q_load, parent, partition_date, mark, constants)
        conn.commit()
        try:
            written = _copy_rows(cur, load, days_in, [c for c in columns if c not in constants], batches)
            conn.commit()
            if constants:
                cur.execute(f"ALTER TABLE {q_load} " + ", ".join(
                    f"ALTER COLUMN {_quote(engine, c)} DROP DEFAULT" for c in constants))
                conn.commit()  # before the index builds: the other connections' wait for this lock
            _index_load(engine, cur, days_in, load, parent, f"{prefix[:40]}_{partition_date:%Y%m%d}_{token}_pkey")
            cur.execute(f"ANALYZE {q_load}")
            conn.commit()
            rows = list(quarantine)  # read once: a swap that must wait for readers is tried again
            _tried(SWAP_TRIES, conn, f"swapping partition {partition_date} of {table} in", lambda: _swap(
                cur, engine, Homes(home, days_in, db_schema, schema), table, key, load, partition_date, job_id, rows,
                attempt, mark))
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
                cur.execute(f"DROP TABLE IF EXISTS {q_load}")
                conn.commit()
            raise
    return written


def _tried(tries: int, conn: Any, what: str, transaction: Callable[[], None]) -> None:
    """Run and commit ``transaction``; rolled back and tried again while it waits too long for a lock."""
    for tried in range(1, tries + 1):
        try:
            transaction()
            conn.commit()
            return
        except Exception as exc:
            conn.rollback()
            if getattr(exc, "sqlstate", None) != "55P03" or tried == tries:
                raise
            log.warning("%s: another transaction held a table it writes for %.0fs (try %d/%d)", what,
                        settings.swap_lock_timeout_s(), tried, tries)


def _create_load(engine: Engine, cur: Any, q_load: str, parent: str, day: dt.date, mark: str,
                 constants: dict[str, Any]) -> None:
    """The load table: ``LIKE`` the parent, a ``CHECK`` on the day (checked row by row by the COPY, it lets
    ATTACH skip its scan), the attempt's mark as its COMMENT, the run's constants as column defaults."""
    cur.execute(f"CREATE TABLE {q_load} (LIKE {parent} INCLUDING DEFAULTS, CHECK (partition_date = DATE "
                f"'{day.isoformat()}'))")
    cur.execute(f"COMMENT ON TABLE {q_load} IS {_literal(engine, mark)}")
    if constants:
        cur.execute(f"ALTER TABLE {q_load} " + ", ".join(
            f"ALTER COLUMN {_quote(engine, c)} SET DEFAULT {_default_sql(engine, v)}" for c, v in constants.items()))


def _index_load(engine: Engine, cur: Any, home: str, load: str, parent: str, pk_name: str) -> None:
    """The load table's indexes, as the predictions table has them (its primary key leads with the key;
    a table made before issue 15 leads with the date and has an index by key besides, and an analyst
    may have added more): every plain index built at the same time, one connection each (a build
    mostly waits on one core), then the unique one made the primary key (no second build). ATTACH
    then finds each of the parent's indexes ready; an expression or partial index it builds itself."""
    import psycopg

    q_load = _qualified(engine, home, load)
    cur.execute("SELECT i.indisprimary, i.indisunique, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY "
                "AS k(num, pos) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos) "
                "FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indexprs IS NULL AND i.indpred IS NULL "
                "ORDER BY i.indisprimary DESC", parameters=(parent,))
    builds = []
    for primary, unique, names in cur.fetchall():
        cols = ", ".join(engine.dialect.identifier_preparer.quote_identifier(n) for n in names)
        name = f" {_quote(engine, pk_name)}" if primary else ""
        builds.append((primary, f"CREATE {'UNIQUE ' if unique else ''}INDEX{name} ON {q_load} ({cols})"))
    failure: list[BaseException] = []

    def build(sql: str) -> None:
        try:
            with psycopg.connect(libpq_uri(engine), autocommit=True) as other:
                other.execute("SET lock_timeout = '60s'")  # the load table is this persist's alone: never wait long
                other.execute(sql)
        except BaseException as exc:
            failure.append(exc)

    helpers = [threading.Thread(target=build, args=(sql,), name=f"index {load}") for _, sql in builds[1:]]
    for helper in helpers:
        helper.start()
    try:
        if builds:
            cur.execute(builds[0][1])
    finally:
        for helper in helpers:
            helper.join()
    if failure:
        raise failure[0]
    if builds and builds[0][0]:
        cur.execute(f"ALTER TABLE {q_load} ADD PRIMARY KEY USING INDEX {_quote(engine, pk_name)}")


def _qualified(engine: Engine, schema: str, name: str) -> str:
    preparer = engine.dialect.identifier_preparer
    return f"{preparer.quote_identifier(schema)}.{_quote(engine, name)}"


def _copy_rows(cur: Any, table: str, schema: str, columns: list[str], batches: Iterable[pa.Table]) -> int:
    """Binary COPY (``adbc_ingest``) of the batches' ``columns`` into ``schema.table``; an error raised while
    reading the batches is raised as itself (ADBC would wrap it).

    ``adbc_ingest`` (adbc-driver-postgresql 1.13) matches the Arrow columns to the table's by
    name and quotes them itself in its COPY, embedded double quotes included: the entity key
    may have any name ``check_column_name`` accepts. tests/integration/test_user_columns.py
    writes keys with a space, mixed case and a double quote through this path.
    """
    pending = iter(batches)
    first = next(pending, None)
    if first is None:
        return 0
    columns = [c for c in columns if c in first.column_names or c not in LINEAGE_TYPES]  # absent lineage: null
    arrow = first.select(columns).schema
    failure: list[BaseException] = []

    def record_batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in itertools.chain([first], pending):
                yield from batch.select(columns).cast(arrow).to_batches()
        except BaseException as exc:
            failure.append(exc)
            raise

    try:
        return int(cur.adbc_ingest(table, pa.RecordBatchReader.from_batches(arrow, record_batches()),
                                   mode="append", db_schema_name=schema))
    except Exception:
        if failure:
            raise failure[0] from None
        raise


@dataclasses.dataclass(frozen=True)
class Homes:
    """PostgreSQL: the schemas of a persist: the predictions table's, its days' (and load tables'), the ledger's,
    and the job's analysts' schema (None: the connection's own)."""

    table: str
    days: str
    ledger: str
    analyst: str | None


def _swap(cur: Any, engine: Engine, homes: Homes, table: str, key: str, load: str, day: dt.date, job_id: str,
          quarantine: list[list[dict[str, Any]]], attempt: tuple[str, int] | None, mark: str) -> None:
    """The swap transaction: the latest-row table kept in step, quarantine, publish check, then (holding
    the table's lock only for these catalogue changes) the old partition of ``day`` detached and dropped
    and ``load`` attached as it."""
    parent, q_load = _qualified(engine, homes.table, table), _qualified(engine, homes.days, load)
    current = _qualified(engine, homes.days, latest_table(table))
    # one publish of the table at a time keeps its latest rows (readers are not held: they take ACCESS SHARE)
    cur.execute(f"LOCK TABLE {current} IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(f"SET LOCAL lock_timeout = '{int(settings.swap_lock_timeout_s() * 1000)}ms'")
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", parameters=(current,))
    columns = [r[0] for r in cur.fetchall()]
    for stmt in latest_statements(engine, table, key, columns, day, homes.analyst, q_load):
        cur.execute(stmt)
    cur.execute("DELETE FROM scoring_quarantine WHERE job_id = $1 AND partition_date = $2", parameters=(job_id, day))
    for rows in quarantine:
        if rows:
            cur.adbc_ingest("scoring_quarantine", _quarantine_table(rows), mode="append", db_schema_name=homes.ledger)
    if attempt is not None:
        livecopy.publish_adbc(cur, job_id, *attempt, day)
    final = f"{partition_prefix(table)}_{day:%Y%m%d}"
    cur.execute(
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass AND pg_get_expr(c.relpartbound, c.oid) = $2",
        parameters=(parent, f"FOR VALUES IN ('{day.isoformat()}')"))
    olds = [r[0] for r in cur.fetchall()]
    if olds:  # DETACH takes the table from its readers: in short tries, so they never queue behind it for long
        _take_from_readers(cur, engine, f"ONLY {parent}, {', '.join(olds)}", f"partition {day} of {table}")
    for old in olds:
        cur.execute(f"ALTER TABLE {parent} DETACH PARTITION {old}")
        cur.execute(f"DROP TABLE {old}")
    cur.execute(f"ALTER TABLE {q_load} RENAME TO {_quote(engine, final)}")
    cur.execute(f"ALTER TABLE {parent} ATTACH PARTITION {_qualified(engine, homes.days, final)} "
                f"FOR VALUES IN (DATE '{day.isoformat()}')")
    info = json.loads(mark[len(LOAD_MARK):])
    cur.execute(f"COMMENT ON TABLE {_qualified(engine, homes.days, final)} IS " + _literal(
        engine, f"Partition {day} of {table}: the rows of run {info['run_id']} attempt {info['attempt']}."))


SWAP_TRY_MS = 300  # one try's lock_timeout: how long readers may queue behind a swap waiting for the table
SWAP_PAUSE_S = (0.05, 1.0)  # the pause after the first failed try, doubling (jittered) up to the second


class SwapWaitError(StoreError):
    """A swap gave up waiting for readers of the predictions table. A retry can help: the readers end."""

    retryable = True


def _take_from_readers(cur: Any, engine: Engine, tables: str, what: str) -> None:
    """Lock ``tables`` (``ONLY parent, old partition``) ACCESS EXCLUSIVE for the swap, in the caller's transaction.

    While a lock request waits, every reader that comes after it queues behind it: one long query
    would stall all of them for as long as the swap waits. So each try waits ``SWAP_TRY_MS`` at most
    (``sql/060_swap_take.sql``, a PL/pgSQL loop: a failed try is a subtransaction rolled back), then steps
    out of the queue for a jittered pause that doubles up to ``SWAP_PAUSE_S[1]``, for up to ``SWAP_TRIES``
    times ``settings.swap_lock_timeout_s()`` in all. Raises ``SwapWaitError`` when it never got the lock.
    """
    patience = SWAP_TRIES * settings.swap_lock_timeout_s()
    first, longest = SWAP_PAUSE_S
    started = time.monotonic()
    numbers = {"try_ms": SWAP_TRY_MS, "first_s": first, "longest_s": longest, "patience_s": patience,
               "rest_ms": int(settings.swap_lock_timeout_s() * 1000)}
    quoted = {"tables": tables, **{k: str(v) for k, v in numbers.items()}}
    for stmt in render_sql(engine, "060_swap_take.sql", quoted=quoted):
        cur.execute(stmt)
    cur.execute("SELECT current_setting('scoring.swap_locked'), current_setting('scoring.swap_tries')")
    locked, tries = cur.fetchone()
    waited = time.monotonic() - started
    if locked == "yes":
        if int(tries) > 1:
            log.warning("swapping %s in: readers held the table; took it at try %s after %.1fs", what, tries, waited)
        return
    raise SwapWaitError(
        f"swapping {what} in gave up after {tries} tries in {waited:.0f}s: queries reading the table held it "
        f"throughout (lock timeout {SWAP_TRY_MS} ms a try, so other readers never waited long behind the swap). "
        "The transaction was rolled back; the previous copy of the partition is unchanged. Retry the persist task "
        "once the long queries on the table have ended (pg_stat_activity lists them); SCORING_SWAP_LOCK_TIMEOUT_S "
        "sets how long a swap keeps trying (three times its value).")


def _drop_dead_loads(cur: Any, engine: Engine, home: str, table: str, day: dt.date) -> None:
    """Drop the load tables of ``table`` left by attempts that are not running (killed, failed, abandoned),
    and any earlier load of ``day`` (this persist supersedes it): the next persist into the table clears
    them (the caller commits). Another day's running attempt keeps its own."""
    cur.execute("SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' "
                "AND starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), $2)", parameters=(home, LOAD_MARK))
    for name, text in cur.fetchall():
        info = _load_info(text)
        if info.get("table") != table:
            continue
        status = _attempt_status(livecopy.adbc_query(cur), info)
        if info.get("day") == day.isoformat() or (info.get("run_id") is not None and status != "running"):
            cur.execute(f"DROP TABLE IF EXISTS {_qualified(engine, home, name)}")
            log.info("dropped load table %s.%s of an attempt no longer running", home, name)


def _load_info(comment_text: str) -> dict[str, Any]:
    """The JSON of a load table's mark (``LOAD_MARK`` + JSON); {} when it cannot be read."""
    try:
        info = json.loads(comment_text[len(LOAD_MARK):])
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _attempt_status(query: livecopy.Query, info: dict[str, Any]) -> str | None:
    """The ledger status of the attempt that made a load table (None: no such row, or no attempt in the mark)."""
    if info.get("run_id") is None:
        return None
    rows = query("SELECT status FROM scoring_runs WHERE job_id = :j AND run_id = :r AND attempt = :a",
                 {"j": info.get("job_id"), "r": info["run_id"], "a": info.get("attempt")})
    return str(rows[0]["status"]) if rows else None


REAP_LOCK_TIMEOUT_MS = 2000  # a load table still in use (a zombie's COPY) is skipped, not waited for


def drop_dead_loads(engine: Engine, job_id: str) -> list[str]:
    """Drop the load tables of ``job_id``, of any day and any predictions table, in any schema of the
    database, whose attempt is of this ledger (scoring_runs of the connection's schema) and not
    ``running`` there (killed then abandoned, failed, its row deleted); returns their qualified names
    (``schema.table``).

    The reaper's sweep (``pipeline.lease.reap``): a killed attempt's load table goes even when its day is
    never run again. A load table without an attempt in its mark (a direct ``replace_partition`` call)
    is left to the next persist of its day, and one of another ledger (its mark names the schema of the
    ledger that made it; a mark from before, the load table's own schema) to that ledger. Each table is
    dropped in its own short transaction with a lock timeout: one still in use (a zombie still copying
    into it) is skipped and logged, and the next sweep takes it. SQLite has no load tables: [].
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        ledger = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        found = conn.execute(sa.text(
            "SELECT n.nspname, c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition "
            "AND starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), :mark)"), {"mark": LOAD_MARK}).all()
    dropped: list[str] = []
    for home, name, text in found:
        info = _load_info(text)
        if info.get("job_id") != job_id or info.get("run_id") is None or info.get("ledger", home) != ledger:
            continue  # another job's, a direct call's, or another ledger's (a second deployment in the database)
        try:
            with begin(engine) as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{REAP_LOCK_TIMEOUT_MS}ms'")
                status = _attempt_status(livecopy.sa_query(conn), info)
                if status == "running" or (status is None and "ledger" not in info):
                    continue  # alive; or, by a mark of before, maybe another ledger's (nothing to judge it by)
                preparer = engine.dialect.identifier_preparer  # names read from the catalogue, quoted as they are
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {preparer.quote_identifier(home)}."
                                     f"{preparer.quote_identifier(name)}")
        except sa.exc.OperationalError as exc:
            log.warning("load table %s.%s of job %s (attempt %s) is in use: left for the next sweep (%s)",
                        home, name, job_id, info.get("attempt"), str(exc).splitlines()[0])
            continue
        log.info("dropped load table %s.%s of job %s: attempt %s/%s is %s", home, name, job_id,
                 info.get("run_id"), info.get("attempt"), status or "gone from the ledger")
        dropped.append(f"{home}.{name}")
    return dropped


def _insert(conn: Connection, qtable: str, key: str, batch: pa.Table) -> int:
    """SQLite: executemany (PostgreSQL takes ADBC, see _replace_adbc) of the key and ``PREDICTION_COLUMNS``."""
    columns = [key, *PREDICTION_COLUMNS]
    quoted = ", ".join(_prediction_columns(conn, key))
    marks = ", ".join("?" for _ in columns)
    rows = list(zip(*(batch.column(c).to_pylist() for c in columns), strict=True))
    if rows:  # sqlite3's executemany refuses an empty list
        conn.exec_driver_sql(f"INSERT INTO {qtable} ({quoted}) VALUES ({marks})", rows)
    return batch.num_rows


def count_partition(engine: Engine, table: str, partition_date: dt.date, schema: str | None = None) -> int:
    """Rows of one partition in a predictions table."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"SELECT COUNT(*) FROM {table_name(engine, table, schema)} WHERE partition_date = :d"),
                {"d": partition_date},
            ).scalar_one()
        )


def daily_summary(engine: Engine, table: str, partition_date: dt.date, schema: str | None = None) -> list[dict[str, Any]]:
    """The ``<table>_daily`` view's rows of one partition (one per model version): rows, mean score, scored at."""
    view = table_name(engine, f"{table}_daily", schema)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {view} WHERE partition_date = :d"), {"d": partition_date})
        return [{k: v if isinstance(v, int | float | None) else str(v) for k, v in r.items()} for r in rows.mappings()]
