"""Airflow itself: a throwaway AIRFLOW_HOME, `airflow dags test`, and a real scheduler."""

from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
# on the PYTHONPATH of the stacks' Airflow processes: the scheduler and Celery workers import the pipeline's
# stage modules before they fork the tasks (preload/sitecustomize.py)
PRELOAD = str(Path(__file__).with_name("preload"))


def airflow_env(airflow_home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment (with the home's SCORING_* and AIRFLOW_CONN_*) for Airflow."""
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
        AIRFLOW__API_AUTH__JWT_SECRET="test-only-jwt-secret",
        SCORING_HOME=str(ROOT),
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow home with a migrated SQLite metadata database, shared by the tests of one worker.

    `airflow db migrate` runs once per test run; each pytest-xdist worker gets a copy of the migrated
    database (SQLite takes one writer at a time: the workers' runs would wait on each other's locks).
    """
    def build(home: Path) -> None:
        out = subprocess.run([AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    migrated = shared(tmp_path_factory, "airflow_home", build)
    home = tmp_path_factory.mktemp("airflow_home")
    shutil.copy2(migrated / "airflow.db", home / "airflow.db")
    return home


@pytest.fixture
def airflow_pg_db(pg_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards."""
    import uuid

    import psycopg

    name = f"airflow_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


RUNNER = Path(__file__).with_name("airflow_runner.py")
_runners: dict[tuple, subprocess.Popen] = {}


def dags_test(airflow_home: Path, dag_id: str, date: str, conf: str | None = None) -> subprocess.CompletedProcess:
    """`airflow dags test DAG_ID DATE [--conf CONF]` with the test's environment, by Airflow's own CLI."""
    return airflow_cli(airflow_home, airflow_env(airflow_home),
                       ["dags", "test", dag_id, date, *(["--conf", conf] if conf else [])], timeout=600)


def airflow_cli(home: Path, env: dict[str, str], argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """`airflow ARGV` with ``env``, as a finished process.

    The command runs in a process kept for this Airflow home and this set of Airflow settings
    (``airflow_runner.py``): it takes each command's environment (the test's SCORING_* and
    AIRFLOW_CONN_*) and calls Airflow's own CLI entry point, so the interpreter's start-up and imports are
    paid once per home, not once per command. Airflow settings of their own (AIRFLOW__*) get a process of
    their own, as Airflow reads some of them once.
    """
    key = (str(home), tuple(sorted((k, v) for k, v in env.items() if k.startswith("AIRFLOW__"))))
    runner = _runners.get(key)
    if runner is None or runner.poll() is not None:
        log = (home / f"runner-{len(_runners)}.log").open("a")
        runner = _runners[key] = subprocess.Popen([sys.executable, str(RUNNER)], env=env, text=True,
                                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    name = uuid.uuid4().hex[:8]
    out, err = home / f"run-{name}.out", home / f"run-{name}.err"
    assert runner.stdin is not None and runner.stdout is not None
    runner.stdin.write(json.dumps({"argv": argv, "env": env, "stdout": str(out), "stderr": str(err)}) + "\n")
    runner.stdin.flush()
    ready, _, _ = select.select([runner.stdout], [], [], timeout)
    answer = runner.stdout.readline() if ready else ""
    if not answer:  # timed out, or the process died: the next command starts another
        runner.kill()
        runner.wait()
    code = json.loads(answer)["code"] if answer else 1
    stdout, stderr = (p.read_text() if p.exists() else "" for p in (out, err))
    if not answer:
        stderr += f"\n[airflow {' '.join(argv)}: {'timed out' if not ready else 'its process exited'}; " \
                  f"see {home}/runner-*.log]"
    for p in (out, err):
        p.unlink(missing_ok=True)
    return subprocess.CompletedProcess([AIRFLOW, *argv], code, stdout, stderr)


@atexit.register
def _stop_runners() -> None:
    for runner in _runners.values():
        if runner.poll() is None:
            runner.stdin.close()  # type: ignore[union-attr]
            try:
                runner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runner.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """api-server, scheduler and dag-processor as processes of one Airflow home."""

    def __init__(self, airflow_home: Path, **extra: str) -> None:
        self.port = free_port()
        self.home = airflow_home
        self.env = airflow_env(
            airflow_home,
            AIRFLOW__CORE__EXECUTOR=extra.pop("executor", "LocalExecutor"),
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{self.port}/execution/",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            # a task's start (PATCH .../run) that times out client-side but lands is retried into a 409 and the
            # task is lost until its heartbeat times out: on a busy 2-core machine the API can take over 5 s
            AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="30",
            # should a task still be lost that way, it is failed (and retried) after 2 minutes, not the default 5,
            # which is a test's whole wait; the supervisor heartbeats every few seconds whatever the task does
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="120",
            PYTHONPATH=os.pathsep.join(p for p in (PRELOAD, os.environ.get("PYTHONPATH")) if p),
            **extra,
        )
        self.procs: list[subprocess.Popen] = []

    def start(self, *components: list[str]) -> None:
        for args in components:
            log = (self.home / f"{args[0]}.log").open("w")
            self.procs.append(subprocess.Popen([AIRFLOW, *args], env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = airflow_cli(self.home, self.env, list(args))
        if check:
            assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out

    def sql(self, query: str) -> list[tuple]:
        """Rows of ``query`` on the stack's metadata database: a cheap look instead of an `airflow` CLI process."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(query))]
        except sa.exc.OperationalError:
            return []
        except sa.exc.ProgrammingError:  # not migrated yet
            return []
        finally:
            engine.dispose()

    def api_up(self) -> bool:
        """Whether the stack's API server answers its health check."""
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5).ok
        except requests.ConnectionError:
            return False

    def parsed(self, *dag_ids: str) -> bool:
        """Whether the DAG processor has serialised every one of ``dag_ids`` (what `airflow dags list` shows)."""
        found = {d for (d,) in self.sql("SELECT d.dag_id FROM dag d JOIN serialized_dag s ON s.dag_id = d.dag_id "
                                        "WHERE NOT d.is_stale")}
        return set(dag_ids) <= found

    def wait_for(self, what: str, predicate, timeout: float = 180, every: float = 0.5) -> None:
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if predicate():
                print(f"waited {time.monotonic() - started:.1f}s for {what}")  # shown by -s, and on a failure
                return
            for p in self.procs:
                assert p.poll() is None, f"{p.args} exited with {p.returncode}; logs in {self.home}"
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; logs in {self.home}\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """What a timed-out wait needs to be explained from a CI log alone: the DAG runs, the task instances that
        started and are not done (state, try, start, heartbeat), and the scheduler's and api-server's last errors
        and retries."""
        runs = self.sql("SELECT dag_id, run_id, state, start_date, end_date FROM dag_run ORDER BY dag_id, run_id")
        rows = self.sql("SELECT dag_id, run_id, task_id, state, try_number, start_date, last_heartbeat_at "
                        "FROM task_instance WHERE state NOT IN ('success', 'skipped') ORDER BY dag_id, run_id")
        lines = [f"DAG runs ({len(runs)}):", *(f"  {r}" for r in runs[:30]),
                 f"task instances started and not done ({len(rows)}):", *(f"  {r}" for r in rows[:30])]
        telling = ("[error", "heartbeat", "retry", "Retry", "409", "Traceback", "Error:")
        for name in ("scheduler", "api-server"):
            log = self.home / f"{name}.log"
            text = log.read_text(errors="replace").splitlines() if log.exists() else []
            bad = [t[:300] for t in text if any(w in t for w in telling)][-12:]
            lines += [f"last errors and retries in {name}.log ({len(bad)}):", *(f"  {t}" for t in bad)]
        return "\n".join(lines)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5  # a test's stack: a short grace, then its process groups are killed
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def stack_factory() -> Iterator:
    stacks: list[Stack] = []

    def make(airflow_home: Path, **extra: str) -> Stack:
        stack = Stack(airflow_home, **extra)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        message = "Debian's chromium is not installed (make test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def stack_session(api: str, stack_home: Path) -> tuple[str, Any]:
    """A JWT of the native stack's admin (password from the file the stack names) and a session using it."""
    import requests

    password = json.loads((stack_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = requests.post(f"{api}/auth/token", json={"username": "admin", "password": password},
                          timeout=30).json()["access_token"]
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    return token, http


def wait_for_dag(http: Any, api: str, dag_id: str, timeout: float = 180) -> None:
    """Until the stack's DAG processor has parsed ``dag_id``."""
    deadline = time.monotonic() + timeout
    while http.get(f"{api}/api/v2/dags/{dag_id}", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, f"the DAG processor never parsed {dag_id}"
        time.sleep(2)


STACK = [sys.executable, str(ROOT / "scripts" / "native_stack.py")]


@dataclass
class NativeStack:
    """A running ``scripts/native_stack.py`` stack: its API, home, `up` output and predictions database URL, and
    its state (``stack.json``: the online door's URL and tokens file under ``serve``)."""

    api: str
    home: Path
    up: subprocess.CompletedProcess
    scoring_db: str
    state: dict[str, Any]


@contextmanager
def native_stack(tmp_path: Path, pg_server: str, workers: int, serve: str | None = None) -> Iterator[NativeStack]:
    """Start the native Celery stack on fresh databases and a fresh Redis database; stop and drop them after.

    ``serve``: the job its online door serves (on a free port); none by default (a test that does not look at it
    does not pay for its start)."""
    import psycopg
    import redis

    suffix = uuid.uuid4().hex[:8]
    # a Redis database of this xdist worker's own: two stacks on one broker database would take each other's
    # tasks (the queue names are the same), and the workers run their stack tests at the same time
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    # (SCORING_TEST_REDIS_DB: the first database of a suite's own, for two suites run side by side on one
    # machine; each xdist worker of the suite still takes one of its own above it)
    metadata, scoring = f"airflow_{suffix}", f"scoring_{suffix}"
    redis_db = (int(os.environ.get("SCORING_TEST_REDIS_DB") or 8) + int(worker.removeprefix("gw"))) % 16
    broker = redis.Redis(host="127.0.0.1", port=6379, db=redis_db)
    broker.flushdb()
    home = tmp_path / "stack"
    up = subprocess.run([*STACK, "up", "--home", str(home), "--workers", str(workers), "--metadata-db", metadata,
                         "--scoring-db", scoring, "--redis-db", str(redis_db), "--port", "0",
                         "--serve", serve or "none", "--serve-port", "0",
                         "--env", "PYTHONPATH=" + os.pathsep.join(p for p in (PRELOAD, os.environ.get("PYTHONPATH")) if p),
                         # a lost task fails (and is retried) after 2 minutes of no heartbeat, not 5 (as in Stack)
                         "--env", "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=120"],
                        capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        state = json.loads(up.stdout.strip().splitlines()[-1])
        yield NativeStack(state["api"], home, up, f"{pg_server.rsplit('/', 1)[0]}/{scoring}", state)
    finally:
        subprocess.run([*STACK, "down", "--home", str(home)], capture_output=True, timeout=120)
        broker.flushdb()
        with psycopg.connect(pg_server, autocommit=True) as conn:
            for name in (metadata, scoring):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
