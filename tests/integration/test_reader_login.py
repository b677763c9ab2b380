"""PostgreSQL: the analysts' read-only role as a real login (issue 25, point 4).

A database of its own (owned by a pipeline role that is not a superuser, as in production), a
predictions table published into the analysts' schema, ``grants.grant_reader``, and a login granted
the role: while a re-run's rows sit loaded and waiting to be swapped in, the login reads the old copy
and cannot read the load table, nor create a temporary table or any table; after the swap it reads the
new copy. The pipeline's role keeps its temporary tables.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
import pytest

from pipeline.errors import ConfigError
from pipeline.store import engines, grants, job_tables, load_tables, operational, writes
from tests.conftest import DAY
from tests.integration.test_partition_swap import _rows

pytestmark = pytest.mark.postgres
TABLE = "reader_predictions"


@pytest.fixture
def own_db(pg_server: str):
    """A fresh database owned by a new LOGIN role (not a superuser): (admin URL of it, the pipeline role's URL,
    names). Dropped with its roles at the end."""
    tag = uuid.uuid4().hex[:10]
    names = {k: f"{k}_{tag}" for k in ("db", "pipe", "reader", "alice", "analytics")}
    base = pg_server.rsplit("/", 1)[0]  # postgresql://postgres@127.0.0.1:5432
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{names["pipe"]}" LOGIN CREATEROLE')
        admin.execute(f'CREATE ROLE "{names["alice"]}" LOGIN')
        admin.execute(f'CREATE DATABASE "{names["db"]}" OWNER "{names["pipe"]}"')
    pipe_url = f"{base.replace('postgres@', names['pipe'] + '@')}/{names['db']}"
    try:
        yield f"{base}/{names['db']}", pipe_url, names
    finally:
        engines.engine_for.cache_clear()
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{names["db"]}" WITH (FORCE)')
            for role in ("alice", "reader", "pipe", "other"):
                admin.execute(f'DROP ROLE IF EXISTS "{role}_{tag}"')


def _load_table(conn: psycopg.Connection, schema: str) -> str | None:
    """The name of the load table in ``schema`` once its rows are committed and indexed, else None."""
    row = conn.execute("SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(%s AS regnamespace) "
                       "AND c.relhasindex AND starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), %s)",
                       (f'"{schema}"', load_tables.LOAD_MARK)).fetchone()
    return row[0] if row else None


def test_the_reader_login_sees_published_rows_only_and_makes_no_tables(
        own_db: tuple[str, str, dict[str, str]], caplog: pytest.LogCaptureFixture) -> None:
    admin_url, pipe_url, names = own_db
    analytics, parts = names["analytics"], f"{names['analytics']}_partitions"
    engine = engines.engine_for(engines.url_from_uri(pipe_url))
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, TABLE, "customer_id", "int", schema=analytics, job_id="readers")
    write = dict(engine=engine, table=TABLE, key="customer_id", job_id="readers", partition_date=DAY, schema=analytics)
    assert writes.replace_partition(batches=_rows(500, DAY, "first"), **write) == 500
    with caplog.at_level(logging.WARNING, logger="pipeline.store"):
        grants.grant_reader(engine, analytics, names["reader"])
    assert names["alice"] in caplog.text, "the roles that lost TEMPORARY are named"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'GRANT "{names["reader"]}" TO "{names["alice"]}"')
    alice_url = f"{admin_url.replace('postgres@', names['alice'] + '@')}?options=-csearch_path%3D{analytics}"

    with engine.begin() as conn:  # the re-run's attempt, running
        conn.exec_driver_sql(
            "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, status, started_at, mode, dry_run) "
            "VALUES ('readers', 'rerun', 1, %(d)s, 'running', now(), 'persist', false)", {"d": DAY})
    outcome: dict[str, object] = {}
    with psycopg.connect(admin_url) as long_one, psycopg.connect(admin_url, autocommit=True) as watcher:
        long_one.execute(f'SELECT count(*) FROM "{analytics}".{TABLE}').fetchone()  # holds the table: the swap waits
        rerun = threading.Thread(target=lambda: outcome.update(rows=writes.replace_partition(
            batches=_rows(300, DAY, "rerun"), attempt=("rerun", 1), **write)))
        rerun.start()
        deadline = time.monotonic() + 60
        while (load := _load_table(watcher, parts)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert load, "the re-run's load table was made"
        assert watcher.execute(f'SELECT count(*) FROM "{parts}"."{load}"').fetchone()[0] == 300, "rows not published"
        with psycopg.connect(alice_url, autocommit=True) as alice:
            assert alice.execute(f"SELECT count(*) FROM {TABLE} WHERE partition_date = %s",
                                 (DAY,)).fetchone()[0] == 500, "the published copy"
            assert alice.execute("SELECT status, live FROM scoring_attempts").fetchall() == [("running", None)]
            for statement in (f'SELECT count(*) FROM "{parts}"."{load}"',  # the load table, even by its name
                              "CREATE TEMPORARY TABLE mine (i integer)",
                              "CREATE TABLE public.mine (i integer)",
                              f"CREATE TABLE {analytics}.mine (i integer)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    alice.execute(statement)
        long_one.rollback()
        rerun.join(timeout=120)
    assert outcome.get("rows") == 300
    with psycopg.connect(alice_url, autocommit=True) as alice:
        assert alice.execute(f"SELECT count(*), min(run_id) FROM {TABLE}").fetchone() == (300, "rerun")
        assert alice.execute(f"SELECT count(*) FROM {TABLE}_latest").fetchone()[0] == 300
        assert alice.execute("SELECT status, live FROM scoring_attempts").fetchall() == [("running", True)], \
            "published (finalize, not run here, would close the attempt)"
    with psycopg.connect(pipe_url, autocommit=True) as pipe:  # the pipeline keeps its temporary tables
        pipe.execute("CREATE TEMPORARY TABLE kept (i integer)")
    grants.grant_reader(engine, analytics, names["reader"])  # again: nothing to change, no error


def test_a_connection_that_cannot_make_the_role_or_revoke_public_temporary_says_who_can(
        own_db: tuple[str, str, dict[str, str]]) -> None:
    admin_url, pipe_url, names = own_db
    other = names["pipe"].replace("pipe_", "other_")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{other}" LOGIN')
        admin.execute(f'GRANT CREATE ON DATABASE "{names["db"]}" TO "{other}"')
    engine = engines.engine_for(engines.url_from_uri(pipe_url.replace(names["pipe"] + "@", other + "@")))
    with pytest.raises(ConfigError, match=f"have an administrator run CREATE ROLE {names['reader']} NOLOGIN"):
        grants.grant_reader(engine, names["analytics"], names["reader"])
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{names["reader"]}" NOLOGIN')
    with pytest.raises(ConfigError) as caught:
        grants.grant_reader(engine, names["analytics"], names["reader"])
    message = str(caught.value)
    assert f"only the database's owner ({names['pipe']})" in message
    assert f'REVOKE TEMPORARY ON DATABASE "{names["db"]}" FROM PUBLIC' in message
    with psycopg.connect(admin_url, autocommit=True) as admin:  # the SELECT grants were made all the same
        assert admin.execute("SELECT has_schema_privilege(%s, %s, 'USAGE')",
                             (names["reader"], names["analytics"])).fetchone()[0]
        admin.execute(f'DROP OWNED BY "{other}"')
