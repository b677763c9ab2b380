"""The state the docs assume: a checkout after ``make demo`` / ``make demo-push``, and the same runs in
PostgreSQL with the analysts' schema and a read-only login, or in SQLite (the demo's database)."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DAY
from tests.docs.blocks import sql_blocks
from tests.docs.runner import fresh_checkout

DEMO_DAYS = (DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY)  # make demo's three partitions
SCORED_DAYS = DEMO_DAYS[1:]  # nights already run: the daily view has more than one row
DEMO_ROWS = 2000  # per partition (the demo writes 30 000; the queries do not care)
ANALYSTS_SCHEMA = "analytics"  # the shipped jobs' output.schema


@dataclass(frozen=True)
class DocsDatabase:
    """A database after the demo's nights: the owner's URL and the analysts' (read-only) one."""

    dialect: str  # "sqlite" or "postgresql"
    owner: str  # libpq URL or SQLite file path
    reader: str


def demo_state(home: Path, models: Path, db_url: str, cascade: Path | None = None) -> None:
    """What ``make demo`` and ``make demo-push`` leave in ``home``: the models, the demo partitions, and
    runs of the shipped churn_daily (two nights, with its challenger) and promotions_daily jobs in ``db_url``.
    ``cascade``: the cascade demo's models, when a block needs churn_cascade too."""
    from pipeline import local, run
    from pipeline.demo import data as demo_data
    from pipeline.demo.receiver import Receiver
    from pipeline.store import engines

    shutil.copytree(models, home / "models", dirs_exist_ok=True)
    if cascade is not None:
        shutil.copytree(cascade, home / "models", dirs_exist_ok=True)
    demo_data.write_days(home / "data" / "churn", DEMO_DAYS[0], len(DEMO_DAYS), n=DEMO_ROWS)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MODELS", "STAGING", "REPORTS", "JOBS", "DEADLETTER"):
            mp.delenv(f"SCORING_{name}_DIR", raising=False)
        mp.setenv("SCORING_HOME", str(home))
        mp.setenv("AIRFLOW_CONN_SCORING_DB", db_url)
        mp.setenv("SCORING_DB_RETRY_BACKOFF_S", "0.1")
        mp.setenv("SCORING_STATSD", "0")
        mp.delenv("SCORING_REGISTRY_DB", raising=False)  # make demo's shell: the registry database is scoring_db
        engines.engine_for.cache_clear()
        try:
            from pipeline.registry import Registry

            registry = Registry()
            for name in registry.names():
                registry.anchor(name)  # make demo registers (anchors) its models in its own database
            for day in SCORED_DAYS:
                summary = local.run_partition(run.find_job("churn_daily"), day, run_id=f"docs__{day}")
                assert summary["status"] == "success", summary
            if cascade is not None:
                summary = local.run_partition(run.find_job("churn_cascade"), DAY, run_id=f"docs__{DAY}")
                assert summary["status"] == "success", summary
            token = secrets.token_urlsafe(16)
            with Receiver(token=token) as receiver:
                mp.setenv("AIRFLOW_CONN_PROMOTIONS_WEBHOOK", f"http://:{token}@127.0.0.1:{receiver.port}")
                summary = local.run_partition(run.find_job("promotions_daily"), DAY, run_id=f"docs__{DAY}")
                assert summary["status"] == "success", summary
        finally:
            engines.engine_for.cache_clear()


def _wants_cascade() -> bool:
    return any("cascade" in b.code for b in sql_blocks())


@pytest.fixture
def demo_checkout(tmp_path: Path, challenger_models: Path) -> Path:
    """A scratch copy of a fresh checkout after ``make demo`` and ``make demo-push`` (SQLite, .data/scoring.db);
    no Airflow home yet (a block that runs ``make demo`` makes one)."""
    home = fresh_checkout(tmp_path / "checkout")
    (home / ".data").mkdir()
    demo_state(home, challenger_models, f"sqlite:///{home / '.data' / 'scoring.db'}")
    return home


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def docs_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            challenger_models: Path) -> Iterator[DocsDatabase]:
    """The demo's runs in SQLite, or in a fresh PostgreSQL database with the shipped set-up: predictions in
    ``analytics``, operational tables in the owner's schema, ``scoring db grant-reader`` for a role and a
    login granted it (names unique per fixture: roles are cluster-wide)."""
    home = fresh_checkout(tmp_path_factory.mktemp("docs_db") / "checkout")
    cascade = request.getfixturevalue("cascade_models") if _wants_cascade() else None
    if request.param == "sqlite":
        path = home / ".data" / "scoring.db"
        path.parent.mkdir()
        demo_state(home, challenger_models, f"sqlite:///{path}", cascade)
        yield DocsDatabase("sqlite", str(path), str(path))
        return
    import psycopg

    from pipeline import cli
    from pipeline.store import engines

    server = request.getfixturevalue("pg_server")
    suffix = uuid.uuid4().hex[:10]
    database, role, login = f"docs_{suffix}", f"docs_reader_{suffix}", f"docs_analyst_{suffix}"
    base = server.rsplit("/", 1)[0]
    owner = f"{base}/{database}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        with pytest.MonkeyPatch.context() as mp:  # what the docs tell the DBA to run, as the pipeline's user
            mp.setenv("AIRFLOW_CONN_SCORING_DB", owner)
            engines.engine_for.cache_clear()
            assert cli.main(["db", "grant-reader", "--schema", ANALYSTS_SCHEMA, "--role", role]) == 0
            engines.engine_for.cache_clear()
        with psycopg.connect(owner, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{login}" LOGIN')
            conn.execute(f'GRANT "{role}" TO "{login}"')
        demo_state(home, challenger_models, owner, cascade)
        scheme, rest = base.split("://", 1)
        host = rest.rsplit("@", 1)[-1]
        yield DocsDatabase("postgresql", owner,
                           f"{scheme}://{login}@{host}/{database}?options=-csearch_path%3D{ANALYSTS_SCHEMA}")
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for name in (login, role):  # their grants and default privileges went with the database
                admin.execute(f'DROP ROLE IF EXISTS "{name}"')
