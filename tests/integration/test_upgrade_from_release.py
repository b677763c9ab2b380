"""A database made by the previous release (ab69d11, before Alembic) upgrades in place (issue 26, point 5).

Each fixture of ``tests/fixtures/release-ab69d11/`` (made by the release's own code: four jobs on two days) is
restored, upgraded by today's code, and then: every row is still there, the schema is the one a new database
gets (operational tables at once; a job's own tables once its run has ensured them), a new run of a job on it
succeeds and shows through the analysts' views, and a second upgrade changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.store import engines, job_tables, migrate, operational
from tests.conftest import DAY, ROOT, with_challenger, write_job, write_partition
from tests.unit.test_migrate import concurrent_upgrades

FIXTURES = ROOT / "tests" / "fixtures" / "release-ab69d11"
NEW_DAY = DAY + dt.timedelta(days=1)
OLD_DAYS = (DAY - dt.timedelta(days=1), DAY)
SCHEMA = "analytics"  # the jobs' output.schema (PostgreSQL)
# the jobs of the fixtures with tables of their own: (job, table, challengers)
JOB_TABLES = (("churn_daily", "churn_predictions", True), ("cascade_daily", "cascade_predictions", False))


# -- restoring -----------------------------------------------------------------------------------------
def restore_sqlite(path: Path) -> str:
    """The release's SQLite database as a file at ``path``; its URL."""
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "sqlite.sql").read_text())
    return f"sqlite:///{path}"


@pytest.fixture
def new_database(pg_server: str) -> Iterator[Any]:
    """Makes empty PostgreSQL databases of this test's own (dropped at the end, with nothing else touched)."""
    import psycopg

    made: list[str] = []
    base = pg_server.rsplit("/", 1)[0]

    def make() -> str:
        name = f"scoring_upgrade_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{base}/{name}"

    yield make
    engines.engine_for.cache_clear()
    with psycopg.connect(pg_server, autocommit=True) as admin:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restore_postgresql(url: str) -> str:
    """The release's PostgreSQL database (pg_dump's plain SQL) restored into the empty database at ``url``."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FIXTURES / "postgresql.sql").read_text())
    return url


def use(monkeypatch: pytest.MonkeyPatch, uri: str) -> sa.Engine:
    """The output database of the jobs (connection scoring_db) is ``uri``; its engine."""
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", uri)
    engines.engine_for.cache_clear()
    return engines.for_connection("scoring_db")


# -- what is compared --------------------------------------------------------------------------------
def schemas(engine: sa.Engine) -> list[str | None]:
    return [None] if engine.dialect.name == "sqlite" else ["public", SCHEMA, f"{SCHEMA}_partitions"]


def day_partitions(engine: sa.Engine) -> set[tuple[str, str]]:
    """PostgreSQL: (schema, name) of the day partitions, whose number depends on the days run, not the schema."""
    if engine.dialect.name != "postgresql":
        return set()
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relispartition"))}


def shape(engine: sa.Engine, only: set[str] | None = None) -> dict[str, Any]:
    """Tables (columns with type, nullability and default; primary key; unique constraints; indexes) and views
    (their definition) of every schema the pipeline uses; ``only``: these table names."""
    inspector = sa.inspect(engine)
    skip = day_partitions(engine)
    out: dict[str, Any] = {}
    for schema in schemas(engine):
        for table in inspector.get_table_names(schema=schema):
            if (schema, table) in skip or (only is not None and table not in only):
                continue
            out[f"{schema}.{table}"] = {
                "columns": [(c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"], c.get("default"))
                            for c in inspector.get_columns(table, schema=schema)],
                "primary_key": inspector.get_pk_constraint(table, schema=schema),
                "unique": sorted((u["name"], tuple(u["column_names"])) for u in
                                 inspector.get_unique_constraints(table, schema=schema)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in
                                  inspector.get_indexes(table, schema=schema)),
            }
        if only is None:
            for view in inspector.get_view_names(schema=schema):
                out[f"{schema}.{view} (view)"] = " ".join(inspector.get_view_definition(view, schema=schema).split())
    return out


def columns(engine: sa.Engine) -> dict[str, list[str]]:
    """The columns of every table (day partitions through their parent), by the names ``rows`` gives them."""
    inspector = sa.inspect(engine)
    skip = day_partitions(engine)
    return {f"{schema}.{table}": [c["name"] for c in inspector.get_columns(table, schema=schema)]
            for schema in schemas(engine) for table in inspector.get_table_names(schema=schema)
            if (schema, table) not in skip}


def rows(engine: sa.Engine, only: dict[str, list[str]] | None = None) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table (day partitions through their parent), as sorted text tuples; ``only``: these
    tables, these of their columns."""
    out = {}
    with engine.connect() as conn:
        for key, names in (only or columns(engine)).items():
            schema, table = key.split(".", 1)
            name = f'"{table}"' if schema == "None" else f'"{schema}"."{table}"'
            selected = ", ".join(f'"{c}"' for c in names)
            out[key] = sorted(tuple(map(str, r)) for r in conn.execute(sa.text(f"SELECT {selected} FROM {name}")))
    return out


def ensure_job_tables(engine: sa.Engine) -> None:
    """What the start of a run of each fixture job does to its own tables (key customer_id, integer)."""
    for job_id, table, challengers in JOB_TABLES:
        job_tables.ensure_predictions(engine, table, "customer_id", "int", SCHEMA, job_id)
        if challengers:
            job_tables.ensure_shadow(engine, table, "customer_id", "int", job_id, SCHEMA)


def fresh(uri: str, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A new database made by today's code: the operational tables, and the fixture jobs' tables."""
    engine = use(monkeypatch, uri)
    operational.ensure_ledger(engine)
    return engine


# -- the test ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_of_the_previous_release_upgrades_in_place(
        backend: str, home: Path, challenger_models: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> None:
    if backend == "postgresql":
        make = request.getfixturevalue("new_database")
        old_uri, new_uri = restore_postgresql(make()), make()
    else:
        old_uri, new_uri = restore_sqlite(home / "scoring.db"), f"sqlite:///{home / 'fresh.db'}"
    expected = fresh(new_uri, monkeypatch)
    operational_tables = set(sa.inspect(expected).get_table_names(schema=schemas(expected)[0]))
    engine = use(monkeypatch, old_uri)
    release_columns = columns(engine)
    before = rows(engine)
    with engine.connect() as conn:
        assert migrate.current(conn) is None and len(migrate.recorded(conn) or ()) == 7, "a release's database"
        released = migrate.recorded(conn) or set()
    since = {p.name for p in (ROOT / "sql" / "migrations").glob("*.sql")} - released  # files newer than the release

    with caplog.at_level(logging.INFO, logger="pipeline.store.migrate"):
        operational.ensure_ledger(engine)  # what a run's start (or `scoring db upgrade`) does
    assert "made by a release before Alembic" in caplog.text
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.HEAD
        assert migrate.recorded(conn) == released | since
    for name in released:
        assert f"migration {name}: applied by an earlier release, skipped" in caplog.text, "none ran again"
    for name in since:
        assert f"applied migration {name}" in caplog.text, "a file newer than the release: applied once"
    after = rows(engine, release_columns)
    record = f"{schemas(engine)[0]}.scoring_schema_migrations"
    recorded_now = after.pop(record)
    assert set(before[record]) <= set(recorded_now) and {r[0] for r in recorded_now} - {r[0] for r in before[record]} \
        == since and len(recorded_now) == len(before[record]) + len(since), "the files since the release recorded"
    assert after == {t: r for t, r in before.items() if t != record}, "every row of every table, as the release left it"
    defaults = {("scoring_drift", "source"): "batch"}  # added with a default the release's rows hold (batch rows)
    added = {table: [c for c in names if c not in release_columns[table]]
             for table, names in columns(engine).items() if table in release_columns}
    for table, values in rows(engine, {t: c for t, c in added.items() if c}).items():
        wanted = tuple(defaults.get((table.split(".", 1)[-1], c), "None") for c in added[table])
        assert all(tuple(row) == wanted for row in values), f"{table}: a column added since the release is NULL (or its default)"
    assert rows(engine).pop(f"{schemas(engine)[0]}.scoring_alembic_version") == [(migrate.HEAD,)]
    assert shape(engine, operational_tables) == shape(expected, operational_tables), "operational tables: as new"

    # a run of a job of the release on it: its tables brought up to date, the day published, readable
    ensure_job_tables(expected)
    ensure_job_tables(engine)
    with_challenger(home, challenger_models)
    write_partition(home, NEW_DAY, n=300)
    job = load_job(write_job(home, "churn_daily", source={"path": str(home / "data" / "churn"), "batch_rows": 200},
                             model={"name": "churn", "ref": "champion", "challengers": ["challenger"]},
                             output={"table": "churn_predictions", "connection": "scoring_db", "schema": SCHEMA}))
    summary = local.run_partition(job, NEW_DAY, run_id="after-upgrade")
    assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 250
    assert shape(engine) == shape(expected), "every table, column, index and view: as a new database has them"
    now, kept = rows(engine), rows(engine, release_columns)
    for table, old in before.items():
        assert set(old) <= set(kept[table]) or table.endswith(("_current", "scoring_latest_partitions")), table
    _readable(engine, summary)

    # a second upgrade: nothing to do, nothing changed
    assert migrate.upgrade(engine) == []
    assert shape(engine) == shape(expected) and rows(engine) == now


def _readable(engine: sa.Engine, summary: dict[str, Any]) -> None:
    """The new day and the old ones through the analysts' views (the latest rows, the daily summary)."""
    prefix = f'"{SCHEMA}".' if engine.dialect.name == "postgresql" else ""
    with engine.connect() as conn:
        daily = dict(conn.execute(sa.text(
            f"SELECT partition_date, SUM(rows_scored) FROM {prefix}churn_predictions_daily GROUP BY 1")).all())
        latest = conn.execute(sa.text(f"SELECT count(*), count(DISTINCT customer_id), max(partition_date) "
                                      f"FROM {prefix}churn_predictions_latest")).one()
        history = conn.execute(sa.text(f"SELECT count(DISTINCT customer_id) FROM {prefix}churn_predictions")).scalar()
        compared = conn.execute(sa.text(f"SELECT count(*) FROM {prefix}churn_predictions_compare "
                                        "WHERE partition_date = :d"), {"d": NEW_DAY}).scalar()
    assert {str(d)[:10] for d in daily} == {str(d) for d in (*OLD_DAYS, NEW_DAY)}
    assert daily[next(d for d in daily if str(d)[:10] == str(NEW_DAY))] == summary["rows_written"]
    assert latest[0] == latest[1] == history and str(latest[2])[:10] == str(NEW_DAY)
    assert compared >= 1, "the challenger's comparison of the new day"


def test_concurrent_starts_on_postgresql_migrate_once(new_database: Any) -> None:
    url = new_database().replace("postgresql://", "postgresql+psycopg://", 1)
    outs = concurrent_upgrades(url)
    assert outs.count("[]") == 3 and any(out.startswith("['001_push_counts.sql'") for out in outs), outs
