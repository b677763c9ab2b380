"""The reaper (issue 25, point 3): a killed attempt of a day that is never run again does not linger.

Its ledger row goes from ``running`` to ``abandoned``, its staging folder and its load table go, at the
start of a run of ANY other day of the job, by ``scoring runs --reap`` and by the maintenance DAG's
sweep (``lease.reap_jobs``); a live attempt of another day is never touched. Real processes: a
``scoring run`` subprocess SIGKILLed while its load table exists in the local PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from pipeline import lease, ledger, local, run
from pipeline.config import load_job
from pipeline.store import load_tables
from tests.conftest import DAY, ROOT, write_job, write_partition

OLD = DAY - dt.timedelta(days=3)  # the killed attempt's day: never run again


def _quiet_attempt(home: Path, monkeypatch: pytest.MonkeyPatch, quiet_s: float, run_id: str = "quiet",
                   reap_after_s: float = 60, days: tuple[dt.date, ...] = (DAY, OLD)) -> tuple:
    """The job with 300-row partitions of ``days`` and a running attempt of OLD last seen ``quiet_s`` ago (lease
    60 s, other days reaped after ``reap_after_s``): the job, its engine and the attempt's spec."""
    monkeypatch.setenv("SCORING_LEASE_SECONDS", "60")
    monkeypatch.setenv("SCORING_REAP_AFTER_SECONDS", str(reap_after_s))
    for day in days:
        write_partition(home, day=day, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    spec = run.start(job, run_id=run_id, partition_date=OLD)
    ledger.update(engine, "churn_test", run_id, 1, heartbeat_at=ledger.now() - dt.timedelta(seconds=quiet_s))
    return job, engine, spec


def _loads(engine: sa.Engine, run_id: str) -> list[str]:
    """The load tables (any schema) a persist of ``run_id`` left: found by their mark, not their name."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND obj_description(c.oid, 'pg_class') LIKE :m"),
            {"m": f'{load_tables.LOAD_MARK}%"run_id": "{run_id}"%'}).scalars())


def _kill_while_loading(pg_url: str, run_id: str, day: dt.date) -> subprocess.Popen:
    """Start `scoring run` of ``day`` and SIGKILL it as soon as its load table exists (no except, no finally)."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", "churn_test", "--date", day.isoformat(),
                             "--run-id", run_id], env=dict(os.environ), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    deadline = time.monotonic() + 240
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as watch:
        while time.monotonic() < deadline and proc.poll() is None and not seen:
            seen = watch.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND obj_description(oid, "
                                 "'pg_class') LIKE %s", (f'%"run_id": "{run_id}"%',)).fetchone()
            time.sleep(0.005)
    assert seen, f"never saw the load table (exit {proc.poll()}): {proc.communicate()[1][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the killed client's server process ends when it next reads its socket: on a loaded machine that can take
    # longer than the reaper waits for a load table in use (it skips it for the next sweep, tested apart); this
    # test's one sweep must find the zombie gone
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as watch:
        while time.monotonic() < deadline and watch.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = %s "
                "AND l.pid <> pg_backend_pid()", (seen[0],)).fetchone()[0]:
            time.sleep(0.05)
    return proc


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_attempt_on_a_day_never_rerun_is_reaped_by_a_run_of_another_day(home: Path, pg_url: str) -> None:
    write_partition(home, day=OLD, n=60_000)
    write_partition(home, day=DAY, n=300)
    job = load_job(write_job(home, source={"path": str(home / "data" / "churn"), "batch_rows": 2000}))
    engine = run.engine(job)
    # a live attempt of a third day (an Airflow run between two of its tasks): the reaper must leave it
    alive = run.start(job, run_id="alive", partition_date=DAY - dt.timedelta(days=1))
    _kill_while_loading(pg_url, "killed", OLD)
    killed = ledger.get(engine, "churn_test", "killed")
    staging = lease.staging_of("churn_test", OLD.isoformat(), "killed", 1)
    assert killed["status"] == "running", "the killed process recorded nothing"
    assert staging.is_dir() and _loads(engine, "killed"), "what a killed attempt leaves behind"

    summary = local.run_partition(job, DAY, run_id="another-day")
    assert summary["status"] == "success"

    killed = ledger.get(engine, "churn_test", "killed")
    assert killed["status"] == "abandoned"
    assert "its process (process:" in killed["error"] and "is gone" in killed["error"], killed["error"]
    assert f"found by the start of run 'another-day' (partition {DAY})" in killed["error"], killed["error"]
    assert not staging.exists(), "the killed attempt's staging is removed"
    assert _loads(engine, "killed") == [], "the killed attempt's load table is dropped"
    with engine.connect() as conn:
        published = conn.execute(sa.text("SELECT count(*) FROM churn_test_predictions WHERE partition_date = :d"),
                                 {"d": OLD}).scalar_one()
    assert published == 0, "the killed day was never published and stays so"

    still = ledger.get(engine, "churn_test", "alive")
    assert still["status"] == "running" and Path(alive.staging_dir).is_dir(), "a live attempt of another day stays"
    assert lease.reap(engine, "churn_test").attempts == [], "nothing left to reap"


def test_an_attempt_unseen_past_the_lease_on_another_day_is_reaped_and_a_fresh_one_is_not(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lease rule, on SQLite: an Airflow attempt (holder kind ``task``) not seen for SCORING_LEASE_SECONDS."""
    monkeypatch.setenv("SCORING_LEASE_SECONDS", "60")
    monkeypatch.setenv("SCORING_REAP_AFTER_SECONDS", "60")
    for day in (DAY, OLD, OLD + dt.timedelta(days=1)):
        write_partition(home, day=day, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    quiet = run.start(job, run_id="quiet", partition_date=OLD)
    fresh = run.start(job, run_id="fresh", partition_date=OLD + dt.timedelta(days=1))
    ledger.update(engine, "churn_test", "quiet", 1, heartbeat_at=ledger.now() - dt.timedelta(seconds=90))
    ledger.update(engine, "churn_test", "fresh", 1, heartbeat_at=ledger.now() - dt.timedelta(seconds=30))

    assert local.run_partition(job, DAY, run_id="today")["status"] == "success"

    row = ledger.get(engine, "churn_test", "quiet")
    assert row["status"] == "abandoned" and "it was not seen for 9" in row["error"], row["error"]
    assert "(SCORING_REAP_AFTER_SECONDS=60)" in row["error"] and "found by the start of run 'today'" in row["error"]
    assert not Path(quiet.staging_dir).exists()
    assert ledger.get(engine, "churn_test", "fresh")["status"] == "running"
    assert Path(fresh.staging_dir).is_dir()


def test_a_dry_run_reaps_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job, engine, _ = _quiet_attempt(home, monkeypatch, 90)
    local.run_partition(job, DAY, run_id="dry", dry_run=True)
    assert ledger.get(engine, "churn_test", "quiet")["status"] == "running", "a dry run writes nothing, reaps nothing"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "runs", *args], env=dict(os.environ), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_scoring_runs_reap_prints_what_it_reaped_and_is_safe_to_repeat(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_LEASE_SECONDS", "60")
    monkeypatch.setenv("SCORING_REAP_AFTER_SECONDS", "60")
    write_partition(home, day=OLD, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    quiet = run.start(job, run_id="quiet", partition_date=OLD)
    live = run.start(job, run_id="live", partition_date=DAY)
    ledger.update(engine, "churn_test", "quiet", 1, heartbeat_at=ledger.now() - dt.timedelta(seconds=600))

    out = _cli("churn_test", "--reap")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("churn_test: reaped 1 expired attempt(s)"), out.stdout
    assert f"{OLD}  quiet  attempt 1  abandoned: it was not seen for 6" in out.stdout, out.stdout
    assert "found by `scoring runs --reap`" in out.stdout and "live" not in out.stdout
    assert ledger.get(engine, "churn_test", "quiet")["status"] == "abandoned"
    assert not Path(quiet.staging_dir).exists()
    assert ledger.get(engine, "churn_test", "live")["status"] == "running" and Path(live.staging_dir).is_dir()

    again = _cli("--reap")  # every job of the jobs folder
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == ("churn_test: nothing to reap (no expired running attempt, no load table of a "
                                    "dead one)"), again.stdout

    refused = _cli()
    assert refused.returncode == 2 and "name a job (scoring runs JOB)" in refused.stderr, refused.stderr


def test_the_sweep_over_the_jobs_folder_reports_a_broken_job_and_goes_on(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, engine, _ = _quiet_attempt(home, monkeypatch, 600, days=(OLD,))
    write_job(home, job_id="never_ran")  # a job with no attempt yet: nothing to reap
    (home / "jobs" / "broken.yaml").write_text("job_id: broken\nschedule: [\n")

    sweep = lease.reap_jobs(by="the scoring_maintenance DAG")
    by_job = {r.job_id: r for r in sweep.reaped}
    assert [r.run_id for r in by_job["churn_test"].attempts] == ["quiet"]
    assert not by_job["never_ran"]
    assert sweep.errors == {} and list(sweep.broken) == [str(home / "jobs" / "broken.yaml")]
    assert "the job file is not valid" in sweep.broken[str(home / "jobs" / "broken.yaml")]
    assert "found by the scoring_maintenance DAG" in ledger.get(engine, "churn_test", "quiet")["error"]
    assert "NOT reaped: the job file is not valid" in sweep.text()


def test_the_start_of_a_run_takes_no_lock_when_no_other_day_has_an_expired_attempt(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap: one query; live attempts of other days cost no lock (and are left running)."""
    write_partition(home, day=DAY, n=300)
    job = load_job(write_job(home))
    engine = run.engine(job)
    for i in range(1, 6):
        run.start(job, run_id=f"live{i}", partition_date=DAY - dt.timedelta(days=i))
    taken: list[object] = []
    real = lease.locked

    def counting(engine: sa.Engine, job_id: str, day: object):  # noqa: ANN202 - the context manager as is
        taken.append(day)
        return real(engine, job_id, day)

    monkeypatch.setattr(lease, "locked", counting)
    run.start(job, run_id="today", partition_date=DAY)
    assert taken == [DAY], "only the started day's own lock"
    with engine.connect() as conn:
        running = conn.execute(sa.text("SELECT count(*) FROM scoring_runs WHERE status = 'running'")).scalar_one()
    assert running == 6


def test_an_attempt_reaped_while_it_waited_between_tasks_stops_at_its_next_step(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The price of a lease shorter than a real gap between two tasks: the attempt publishes nothing, and says why."""
    from pipeline import steps
    from pipeline.livecopy import SupersededError

    job, engine, waiting = _quiet_attempt(home, monkeypatch, 300, run_id="waiting")
    local.run_partition(job, DAY, run_id="today")
    with pytest.raises(SupersededError, match="was superseded \\(abandoned: it was not seen for 3"):
        run.run_step(run.context(job, waiting), steps.INGEST)
    assert ledger.get(engine, "churn_test", "waiting")["status"] == "abandoned"


def test_an_attempt_quiet_between_tasks_past_the_lease_is_left_alone_by_other_days(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run queued behind a busy backfill is quiet between two tasks: past the lease but within
    SCORING_REAP_AFTER_SECONDS, another day's start leaves it running (only its own day's next attempt
    may take it over after the lease)."""
    job, engine, queued = _quiet_attempt(home, monkeypatch, 900, run_id="queued", reap_after_s=3600)
    assert local.run_partition(job, DAY, run_id="today")["status"] == "success"
    assert ledger.get(engine, "churn_test", "queued")["status"] == "running"
    assert Path(queued.staging_dir).is_dir()
    ledger.update(engine, "churn_test", "queued", 1, heartbeat_at=ledger.now() - dt.timedelta(seconds=3700))
    assert [r.run_id for r in lease.reap(engine, "churn_test").attempts] == ["queued"]
    assert "(SCORING_REAP_AFTER_SECONDS=3600)" in ledger.get(engine, "churn_test", "queued")["error"]
