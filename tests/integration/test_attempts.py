"""Truthful attempts (issue 13): one live attempt per partition, the dead ones marked abandoned,
their staging removed, a superseded attempt never publishes, and the ledger says whose rows are live.

Real processes: `scoring run` subprocesses started together or SIGKILLed at random moments, on
SQLite and on the local PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import lease, ledger, local, run, steps
from pipeline.config import load_job
from tests.conftest import DAY, ROOT, write_job, write_partition


def _rows(engine: sa.Engine, sql: str, **params: object) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _attempts(engine: sa.Engine) -> list[dict]:
    return _rows(engine, "SELECT run_id, attempt, status, failed_stage, error, live, published_at, heartbeat_at "
                         "FROM scoring_runs WHERE job_id = 'churn_test' ORDER BY started_at")


def _published(engine: sa.Engine) -> tuple[int, set[str]]:
    rows = _rows(engine, "SELECT run_id FROM churn_test_predictions WHERE partition_date = :d", d=DAY)
    return len(rows), {r["run_id"] for r in rows}


def _scoring_run(run_id: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "churn_test", "--date", DAY.isoformat(),
                             "--run-id", run_id, *extra], env=dict(os.environ), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _second_version(home: Path) -> None:
    from pipeline.demo.train import train_churn
    from pipeline.registry import Registry

    train_churn(Registry(home / "models"), end=DAY - dt.timedelta(days=5), days=2, n=2000, seed=11, alias=None)


def test_a_second_attempt_is_refused_while_the_first_lives_and_supersedes_it_once_it_failed(
        home: Path, any_db: str) -> None:
    write_partition(home, n=600)
    job = load_job(write_job(home))
    engine = run.engine(job)
    first = run.start(job, run_id="first", partition_date=DAY)
    ctx = run.context(job, first)
    run.run_step(ctx, steps.INGEST)

    with pytest.raises(lease.PartitionBusyError, match="being scored by run 'first' attempt 1"):
        run.start(job, run_id="second", partition_date=DAY)
    refused = ledger.get(engine, "churn_test", "second")
    assert (refused["status"], refused["failed_stage"]) == ("failed", "start"), "the refused attempt is on record"

    # the first one fails (as a task would): a new attempt may take the partition over, and then the
    # first attempt's retry must not go on, nor publish
    ledger.update(engine, "churn_test", "first", 1, status="failed", failed_stage="validate", error="boom")
    later = local.run_partition(job, DAY, run_id="later")
    assert later["status"] == "success" and later["live"]
    with pytest.raises(lease.SupersededError, match="run 'later' attempt 1 .success. started later"):
        run.run_step(ctx, steps.VALIDATE)
    assert _published(engine)[1] == {"later"}
    rows = {r["run_id"]: r for r in _attempts(engine)}
    assert rows["first"]["status"] == "failed" and not rows["first"]["live"]
    assert rows["later"]["published_at"] is not None


def test_a_superseded_attempt_cannot_publish_even_after_it_has_scored(home: Path, any_db: str) -> None:
    write_partition(home, n=600)
    job = load_job(write_job(home))
    engine = run.engine(job)
    old = run.start(job, run_id="old", partition_date=DAY)
    ctx = run.context(job, old)
    for step in steps.SCORING:
        run.run_step(ctx, step)
    # while it sat between its tasks for longer than the lease, another run took the partition over
    ledger.update(engine, "churn_test", "old", 1, heartbeat_at=dt.datetime(2000, 1, 1))
    new = local.run_partition(job, DAY, run_id="new")
    assert new["status"] == "success"
    old_row = ledger.get(engine, "churn_test", "old")
    assert old_row["status"] == "abandoned" and "not seen for" in old_row["error"] and "'new'" in old_row["error"]
    assert not Path(old.staging_dir).exists(), "the abandoned attempt's staging is removed"
    with pytest.raises(lease.SupersededError):
        run.run_step(ctx, steps.PERSIST)
    assert _published(engine)[1] == {"new"}
    assert [r["run_id"] for r in _attempts(engine) if r["live"]] == ["new"]


@pytest.mark.slow
@pytest.mark.postgres
def test_four_simultaneous_runs_of_one_partition_leave_one_copy_from_one_run(home: Path, pg_url: str) -> None:
    write_partition(home, n=20_000)
    _second_version(home)
    write_job(home)
    procs = {f"r{i}": _scoring_run(f"r{i}", "--model", "1" if i % 2 else "2") for i in range(4)}
    outcomes = {rid: (p.wait(timeout=600), p.stderr.read()) for rid, p in procs.items()}
    engine = run.engine(load_job(home / "jobs" / "churn_test.yaml"))
    attempts = {r["run_id"]: r for r in _attempts(engine)}
    winners = [rid for rid, (code, _) in outcomes.items() if code == 0]
    assert len(winners) >= 1, {rid: err[-800:] for rid, (_, err) in outcomes.items()}
    count, runs = _published(engine)
    assert len(runs) == 1 and count > 19_000, "one complete copy, from one run"
    (live,) = [rid for rid, row in attempts.items() if row["live"]]
    assert runs == {live} and attempts[live]["status"] == "success"
    for rid, (code, err) in outcomes.items():
        row = attempts[rid]
        if code == 0:
            assert row["status"] == "success"
            continue
        assert row["status"] == "failed" and row["failed_stage"] == "start", row
        assert "is being scored by run" in row["error"] and "Traceback" not in err, err[-1500:]
    assert all(r["status"] != "running" for r in attempts.values())


@pytest.mark.slow
@pytest.mark.postgres
def test_sigkills_at_random_moments_leave_no_running_attempt_no_staging_and_an_exact_rerun(
        home: Path, pg_url: str) -> None:
    write_partition(home, n=10_000)
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 1000}))
    engine = run.engine(job)
    reference = local.run_partition(job, DAY, run_id="reference")
    expected = _rows(engine, "SELECT customer_id, prediction, score FROM churn_test_predictions "
                             "WHERE partition_date = :d ORDER BY customer_id", d=DAY)
    rng = random.Random(13)
    kills = 0
    for i in range(10):
        proc = _scoring_run(f"killed{i}")
        time.sleep(rng.uniform(0.3, 5.0))  # a run takes 6 s and more here: imports, then each step
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        before = _attempts(engine)
        count, runs = _published(engine)
        assert count == reference["rows_written"] and len(runs) == 1, "never a partial or mixed partition"
        # the next attempt, in this process (a subprocess would only add its imports): it must find the
        # killed process gone at once and take over
        assert local.run_partition(job, DAY, run_id=f"rerun{i}")["status"] == "success"
        after = {(r["run_id"], r["attempt"]): r for r in _attempts(engine)}
        assert not [k for k, r in after.items() if r["status"] == "running"], "no attempt left running"
        for row in before:
            if row["status"] == "running":
                assert after[(row["run_id"], row["attempt"])]["status"] == "abandoned"
        staged = [p for p in (home / "staging" / "churn_test").rglob("*") if p.is_dir() and p.parent.name == DAY.isoformat()]
        assert staged == [], f"staging of dead attempts left behind: {staged}"
        loads = _rows(engine, "SELECT relname FROM pg_class WHERE relname LIKE :p AND relkind = 'r' "
                      "AND relnamespace = CAST(current_schema() AS regnamespace)",
                      p="churn_test_predictions%load%")
        assert loads == [], f"load tables of dead attempts left behind: {loads}"
        got = _rows(engine, "SELECT customer_id, prediction, score FROM churn_test_predictions "
                            "WHERE partition_date = :d ORDER BY customer_id", d=DAY)
        assert got == expected, "the re-run is exact"
        assert [r["run_id"] for r in after.values() if r["live"]] == [f"rerun{i}"]
    assert kills >= 8, f"only {kills} of 10 runs were killed mid-way"


def test_the_retention_sweep_removes_old_staging_of_attempts_no_longer_running(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_partition(home, n=300)
    write_partition(home, day=DAY - dt.timedelta(days=1), n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    failed = run.start(job, run_id="kept-for-inspection", partition_date=DAY - dt.timedelta(days=1))
    ledger.update(engine, "churn_test", "kept-for-inspection", 1, status="failed", error="x")
    old = time.time() - 3 * 86400
    os.utime(failed.staging_dir, (old, old))
    monkeypatch.setenv("SCORING_STAGING_RETENTION_HOURS", "48")
    local.run_partition(job, DAY, run_id="today")
    assert not Path(failed.staging_dir).exists(), "older than the retention: removed at the next start"


def test_scoring_runs_finds_a_dead_attempt_and_says_when_it_was_last_seen(home: Path) -> None:
    import socket

    statsd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the attempt's end is sent as metrics too
    statsd.bind(("127.0.0.1", 0))
    statsd.settimeout(10)
    write_partition(home, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    spec = run.start(job, run_id="crashed", partition_date=DAY, holder_kind="process")
    host = lease.holder("process").split(":")[1]
    dead_pid = subprocess.Popen(["true"])  # noqa: S607 - a pid that has just ended
    dead_pid.wait()
    ledger.update(engine, "churn_test", "crashed", 1, holder=f"process:{host}:{dead_pid.pid}:1")
    env = dict(os.environ, SCORING_STATSD_HOST="127.0.0.1", SCORING_STATSD_PORT=str(statsd.getsockname()[1]))
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "runs", "churn_test"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = ledger.get(engine, "churn_test", "crashed")
    assert row["status"] == "abandoned" and f"its process (process:{host}:{dead_pid.pid}:1) is gone" in row["error"]
    assert "crashed" in out.stdout and "abandoned" in out.stdout
    assert not Path(spec.staging_dir).exists()
    with statsd:
        lines = statsd.recv(65535).decode().splitlines()
    counted = [x for x in lines if x.startswith("scoring.run.attempts_total:")]
    assert counted and "status:abandoned" in counted[0] and "job:churn_test" in counted[0], lines


def test_a_running_step_keeps_its_attempt_seen(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The heartbeat thread refreshes heartbeat_at while a step runs (every lease/4 s, at least 1 s)."""
    monkeypatch.setenv("SCORING_LEASE_SECONDS", "4")
    write_partition(home, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    spec = run.start(job, run_id="busy", partition_date=DAY)
    before = ledger.utc(ledger.get(engine, "churn_test", "busy")["heartbeat_at"])
    with lease.heartbeat(engine, spec):
        time.sleep(2.5)
    after = ledger.utc(ledger.get(engine, "churn_test", "busy")["heartbeat_at"])
    assert after - before >= dt.timedelta(seconds=1), (before, after)
