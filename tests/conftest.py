"""Shared fixtures: an isolated scoring home per test, a trained model, real databases."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAY = dt.date(2026, 11, 20)
PG_BASE = os.environ.get("SCORING_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def switch_while_scoring(score: Callable[[], Any], switch: Callable[[], None], before: int = 2,
                         after: int = 2) -> tuple[list[Any], int]:
    """``score()`` called again and again on a thread: ``before`` answers, then ``switch()`` (a promote and the
    door's reload), then ``after`` more. The answers, and how many came before the switch. A request that raised
    fails the test (it is a failed request during the switch)."""
    answers: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                answers.append(score())
            except Exception as exc:  # noqa: BLE001 - any failure is the test's failure
                errors.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        while len(answers) < before and not errors:
            threading.Event().wait(0.01)
        switch()
        switched = len(answers)
        while len(answers) < switched + after and not errors:
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    return answers, switched


def script_module(name: str) -> Any:
    """A script of ``scripts/`` (``native_stack``, ``statsd_exporter``) imported as a module, for its functions."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses of the script look their module up while it loads
    spec.loader.exec_module(module)
    return module


def shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder ``build`` fills once per test run, whatever the number of pytest-xdist workers.

    The first worker to ask builds it under an exclusive lock in the run's own temporary folder (the parent
    of the workers' ones); the others wait and reuse it. Tests only read it: they copy what they change.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    target = root / f"shared-{name}"
    with (root / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".built").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            build(target)
            (target / ".built").touch()
    return target


# -- the registry database (pipeline.anchors): every test has one of its own ------------------------------
# Models are refused unless anchored in the registry database, which is not the database a job writes to: the
# tests name it once (connection scoring_registry, a SQLite file per test). The shared model builds below are
# registered unanchored and adopted into databases of their own, whose anchors a test's registry database
# starts with.
REGISTRY_CONN = "scoring_registry"
REGISTRY_ENV = "AIRFLOW_CONN_SCORING_REGISTRY"
BUILDS = ("trained_models", "challenger_models", "cascade_models")  # shared model builds, each with a registry.db


@contextlib.contextmanager
def _built_unanchored(root: Path) -> Iterator[Any]:
    """A registry below ``root/models`` with no database: the build registers into it unanchored (the registry
    allows it with SCORING_ALLOW_UNANCHORED=1), then every version is adopted (origin ``adopted``) into
    ``root/registry.db``, which each test's registry database starts from (``registry_db``)."""
    from pipeline.anchors import Anchors
    from pipeline.registry import Registry
    from pipeline.store import engines

    saved = os.environ.get("SCORING_ALLOW_UNANCHORED")
    os.environ["SCORING_ALLOW_UNANCHORED"] = "1"
    try:
        yield Registry(root / "models", anchors=None)
    finally:
        if saved is None:
            os.environ.pop("SCORING_ALLOW_UNANCHORED")
        else:
            os.environ["SCORING_ALLOW_UNANCHORED"] = saved
    adopting = Registry(root / "models", anchors=Anchors(engines.engine_for(f"sqlite:///{root / 'registry.db'}")))
    for name in adopting.names():
        adopting.anchor(name)


def copy_anchors(source: Path, target: Path) -> None:
    """The anchors of the SQLite registry database ``source`` that ``target`` lacks, added to it (a new file is a copy)."""
    import sqlite3

    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        return
    with contextlib.closing(sqlite3.connect(target)) as dst:
        dst.execute("ATTACH DATABASE ? AS src", (str(source),))
        dst.execute("INSERT OR IGNORE INTO scoring_model_registrations SELECT * FROM src.scoring_model_registrations")
        dst.commit()


def use_registry(path: Path, set_env: Callable[[str, str], None]) -> str:
    """Point the registry database (SCORING_REGISTRY_DB) at the SQLite file ``path``; its URL."""
    from pipeline.store import engines

    url = f"sqlite:///{path}"
    set_env("SCORING_REGISTRY_DB", REGISTRY_CONN)
    set_env(REGISTRY_ENV, url)
    engines.engine_for.cache_clear()
    return url


def readopt(name: str) -> None:
    """A model whose files a test changed by hand, adopted again as the folder holds it now: its anchors in this
    test's registry database are replaced (what a registrant would do with ``scoring models anchor`` after
    removing the old records; never done outside tests)."""
    import sqlalchemy as sa

    from pipeline.registry import Registry
    from pipeline.store import engines

    registry = Registry()
    with engines.begin(registry.anchors.engine) as conn:
        conn.execute(sa.text("DELETE FROM scoring_model_registrations WHERE model_name = :n"), {"n": name})
    registry.anchor(name)


@pytest.fixture(scope="session", autouse=True)
def session_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The registry database of session- and module-wide fixtures (each build adds its anchors when it is made);
    every test then gets one of its own (``registry_db``)."""
    path = tmp_path_factory.mktemp("session-registry") / "registry.db"
    saved = {k: os.environ.get(k) for k in ("SCORING_REGISTRY_DB", REGISTRY_ENV)}
    use_registry(path, os.environ.__setitem__)
    yield path
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def registry_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's registry database (a SQLite file), holding the anchors of the shared model builds it uses."""
    path = request.getfixturevalue("tmp_path") / ".registry" / "registry.db"
    for build in BUILDS:
        if build in request.fixturenames:
            copy_anchors(request.getfixturevalue(build).parent / "registry.db", path)
    return use_registry(path, monkeypatch.setenv)


def _shared_build(tmp_path_factory: pytest.TempPathFactory, session_registry: Path, name: str,
                  build: Callable[[Path], None]) -> Path:
    root = shared(tmp_path_factory, name, build)
    copy_anchors(root / "registry.db", session_registry)
    return root / "models"


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory, session_registry: Path) -> Path:
    """A registry holding churn v1 (champion), trained once per test run on small data; anchored in the
    build's ``registry.db`` beside it."""
    from pipeline.demo.train import train_churn

    def build(root: Path) -> None:
        with _built_unanchored(root) as registry:
            train_churn(registry, end=DAY - dt.timedelta(days=3), days=2, n=3000)

    return _shared_build(tmp_path_factory, session_registry, "trained_models", build)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained_models: Path) -> Path:
    """Isolated models, data, staging, reports, jobs folder and SQLite output database."""
    from pipeline.store import engines

    shutil.copytree(trained_models, tmp_path / "models")
    for name in ("data", "staging", "reports", "jobs", "deadletter"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("SCORING_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SCORING_STAGING_DIR", str(tmp_path / "staging"))
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("SCORING_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("SCORING_DEADLETTER_DIR", str(tmp_path / "deadletter"))
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", f"sqlite:///{tmp_path / 'scoring.db'}")
    monkeypatch.setenv("SCORING_DB_RETRY_BACKOFF_S", "0.1")
    engines.engine_for.cache_clear()
    return tmp_path


def scoring_cli(*argv: str) -> subprocess.CompletedProcess:
    """`scoring ARGV...` run by the CLI's own main() in this process: the same parser and error handling
    without an interpreter's start-up. An exception main() lets through is raised here and fails the test:
    it is the traceback a user would see. (Tests that must see the process itself run it as a subprocess.)"""
    from pipeline import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(["scoring", *argv], code, out.getvalue(), err.getvalue())


def write_partition(home: Path, day: dt.date = DAY, n: int = 2000, shift: float = 0.0, **kw: Any) -> Path:
    from pipeline.demo import data as demo_data

    files = demo_data.write_partition(home / "data" / "churn", day, demo_data.customers(day, n=n, shift=shift), **kw)
    return files[0].parent


def clean_customers(n: int, seed: int = 3) -> Any:
    """Demo rows without the generator's few broken records, so every row is scored and counts are exact."""
    from pipeline.demo import data as demo_data

    df = demo_data.customers(DAY, n=n, seed=seed)
    return df[(df["monthly_charges"] >= 0) & df["region"].notna()].reset_index(drop=True)


def write_job(home: Path, job_id: str = "churn_test", **overrides: Any) -> Path:
    """A job file in the home's jobs folder; ``overrides`` replace top-level keys."""
    doc: dict[str, Any] = {
        "job_id": job_id,
        "description": "test job",
        "schedule": "0 0 * * *",
        "start_date": "2026-11-01",
        "entity_key": "customer_id",
        "source": {"path": str(home / "data" / "churn"), "batch_rows": 700,
                   "wait_timeout_minutes": 0.02, "poke_interval_seconds": 1},
        "model": {"name": "churn", "ref": "champion"},
        "output": {"table": f"{job_id}_predictions", "connection": "scoring_db"},
        "validation": {"max_quarantine_share": 0.05},
        # a task that fails for a passing reason (a loaded machine) is retried in 6 s, not the default 5 min: the
        # Airflow tests wait 2 to 7 minutes, and what they check is the run, not how long Airflow waits to retry
        "retry_delay_minutes": 0.1,
    }
    doc.update(overrides)
    path = home / "jobs" / f"{job_id}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The local PostgreSQL; when CI=true an unreachable server fails the run instead of skipping."""
    import psycopg

    try:
        with psycopg.connect(PG_BASE, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_BASE} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        print(f"SKIP: {message}")
        pytest.skip(message)
    return PG_BASE


@pytest.fixture
def pg_url(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh schema in the test database; AIRFLOW_CONN_SCORING_DB points at it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    uri = f"{pg_server}?options=-csearch_path%3D{schema}"
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", uri)
    from pipeline.store import engines

    engines.engine_for.cache_clear()
    yield uri
    engines.engine_for.cache_clear()
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, home: Path) -> str:
    """Run a test once on SQLite and once on the local PostgreSQL."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return os.environ["AIRFLOW_CONN_SCORING_DB"]


@pytest.fixture(scope="session")
def cascade_models(tmp_path_factory: pytest.TempPathFactory, session_registry: Path) -> Path:
    """The demo's router and segment models, trained once per test run (pipeline.demo.cascade)."""
    from pipeline.demo.cascade import train_cascade

    def build(root: Path) -> None:
        with _built_unanchored(root) as registry:
            train_cascade(registry, end=DAY - dt.timedelta(days=3), days=2, n=3000)

    return _shared_build(tmp_path_factory, session_registry, "cascade_models", build)


@pytest.fixture
def cascade_home(home: Path, cascade_models: Path) -> Path:
    for model in cascade_models.iterdir():
        shutil.copytree(model, home / "models" / model.name)
    return home


@pytest.fixture(scope="session")
def challenger_models(tmp_path_factory: pytest.TempPathFactory, session_registry: Path, trained_models: Path) -> Path:
    """trained_models plus churn v2 (alias 'challenger', other days and seed), trained once per test run."""
    from pipeline.demo.train import train_churn

    def build(root: Path) -> None:
        shutil.copytree(trained_models, root / "models")
        copy_anchors(trained_models.parent / "registry.db", root / "registry.db")
        with _built_unanchored(root) as registry:
            train_churn(registry, end=DAY - dt.timedelta(days=5), days=2, n=3000, seed=11, alias="challenger")

    return _shared_build(tmp_path_factory, session_registry, "challenger_models", build)


def with_challenger(home: Path, challenger_models: Path) -> int:
    """The home's churn model folder replaced by the one with a challenger; the challenger's version."""
    shutil.rmtree(home / "models" / "churn")
    shutil.copytree(challenger_models / "churn", home / "models" / "churn")
    return 2


# Fixtures that reach the PostgreSQL server or start Airflow itself: a test using any of them (directly or
# through another fixture) carries the matching marker, so `-m "not postgres"` and `-m "not airflow"` select
# by what a test really needs rather than by what its author remembered to write.
POSTGRES_FIXTURES = frozenset({"pg_server", "pg_url", "airflow_pg_db"})
AIRFLOW_FIXTURES = frozenset({"migrated_home", "stack_factory"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if fixtures & POSTGRES_FIXTURES or "postgresql" in params.values():
            item.add_marker(pytest.mark.postgres)
        if fixtures & AIRFLOW_FIXTURES:
            item.add_marker(pytest.mark.airflow)
        if "stack_factory" in fixtures:
            item.add_marker(pytest.mark.stack)
    # the longest tests first: under pytest-xdist the workers start on them and share the short ones at the
    # end, instead of one worker finishing a minute-long Airflow stack alone while the others wait
    items.sort(key=_weight)


def _weight(item: pytest.Item) -> int:
    marks = {m.name for m in item.iter_markers()}
    return -sum(weight for name, weight in (("stack", 8), ("airflow", 4), ("slow", 2), ("postgres", 1))
                if name in marks)


@pytest.fixture
def statsd(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 receiving the run metrics (SCORING_STATSD_HOST/PORT reach the processes a test
    starts too: a task's, a stack's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    monkeypatch.setenv("SCORING_STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("SCORING_STATSD_PORT", str(sock.getsockname()[1]))
    yield sock
    sock.close()


def statsd_lines(sock: socket.socket, quiet_s: float = 2) -> list[str]:
    """The StatsD lines received so far: read until nothing comes for ``quiet_s``."""
    sock.settimeout(quiet_s)
    lines: list[str] = []
    try:
        while True:
            lines += sock.recv(65536).decode().splitlines()
    except TimeoutError:
        return lines


class Evil:
    """Unpickling it writes the marker file (stands for any code an attacker wants run on the workers)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file a malicious pickle writes when unpickled: the test fails if it exists at the end."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a malicious pickle was unpickled"


@pytest.fixture
def evil(marker: Path) -> bytes:
    """A malicious pickle: unpickling it writes ``marker``."""
    import pickle

    return pickle.dumps(Evil(marker))
