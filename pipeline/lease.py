"""One live attempt per partition, and the truth about the others.

The ledger row of an attempt is its lease: ``status = 'running'``, the ``holder`` (the process
that last worked on it) and ``heartbeat_at`` (refreshed every few seconds while one of its steps
runs). The rules, applied under a per-partition lock (PostgreSQL: a transaction-scoped advisory
lock; SQLite: a file lock beside the database), so two attempts never both pass them:

- **Opening an attempt** (``open_attempt``) looks at the partition's other running attempts.
  One is *dead* when it belongs to the same run (Airflow runs one try of a task at a time, so an
  earlier attempt of the run is over), when its holder was a ``scoring run`` process on this
  machine that no longer exists, or when it has not been seen for ``SCORING_LEASE_SECONDS``. Dead
  ones are marked ``abandoned`` (with when they were last seen, by whom, and who took over) and
  their staging is removed. A live one refuses the new attempt: its row is recorded ``failed`` at
  stage ``start`` with a message naming the live attempt (retryable: Airflow's retry waits).
- **Every step** (``resume``) first checks that no later attempt of the partition has started;
  if one has, this attempt is *superseded* and stops (its row says by whom). Otherwise it takes
  the lease (holder, heartbeat) and keeps it fresh while it runs (``heartbeat``).
- **Publishing** (``publish_sql``, in the same transaction as the rows) checks the same again and
  moves ``live`` to this attempt: the ledger says which attempt's rows are the published copy.

The **reaper** (``reap``) applies the same rules to the running attempts of *every* day of the job:
an attempt whose ``scoring run`` process on this machine is gone, or that has not been seen for
``SCORING_LEASE_SECONDS``, is marked ``abandoned`` (with why, when it was last seen and what found
it), its staging is removed and its load tables dropped (``load_tables.drop_dead_loads``), so a killed
attempt of a day that is never run again does not linger. It runs at the start of every attempt
of the job (other days: one query, and a lock only for a day that has an expired attempt), from
``scoring runs JOB --reap`` and from the ``scoring_maintenance`` DAG. A live attempt of another day
(seen within the lease) is never touched; one reaped while it was in fact only waiting between two
of its tasks longer than the lease stops at its next step as superseded and publishes nothing.

Dry runs write nothing and take no part. Staging areas of attempts that are not running are
removed at the next attempt of their partition, and any of the job's older than
``SCORING_STAGING_RETENTION_HOURS`` at every start (``sweep``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import ledger, metrics, settings
from pipeline.config import load_jobs
from pipeline.errors import ScoringError
from pipeline.livecopy import (
    SupersededError,
    advisory_lock,
    sa_query,
    superseded_by,
)
from pipeline.redact import redact
from pipeline.settings import safe_name
from pipeline.store import engines, load_tables
from pipeline.store.engines import begin

log = logging.getLogger(__name__)


class PartitionBusyError(ScoringError):
    """Another attempt of the partition is alive; this one was refused (a retry later can succeed)."""

    retryable = True


def holder(kind: str) -> str:
    """``kind:host:pid:start``: who works on the attempt (kind ``process`` for ``scoring run``, ``task`` in Airflow)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{_started(os.getpid())}"


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart), or '' off Linux."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_gone(who: str | None) -> bool:
    """True when ``who`` was a whole-attempt process on this machine that no longer runs."""
    parts = (who or "").split(":")
    if len(parts) != 4 or parts[0] != "process" or parts[1] != socket.gethostname():
        return False
    pid, started = int(parts[2]), parts[3]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return bool(started) and _started(pid) != started


def staging_of(job_id: str, partition_date: str, run_id: str, attempt: int) -> Path:
    """The staging folder of an attempt (as ``run.start`` makes it)."""
    return settings.staging_dir() / job_id / partition_date / f"{safe_name(run_id)}.{attempt}"


# -- the per-partition lock --------------------------------------------------------------
@contextlib.contextmanager
def locked(engine: Engine, job_id: str, partition_date: str | dt.date) -> Iterator[Connection]:
    """A transaction holding the partition's lock until it has committed.

    PostgreSQL: an advisory lock scoped to the transaction (any machine). SQLite: a file lock
    beside the database taken before the transaction and released after its commit (and by
    the kernel if the process dies).
    """
    if engine.dialect.name == "postgresql":
        with begin(engine) as conn:
            advisory_lock(conn, job_id, partition_date)
            yield conn
        return
    database = engine.url.database
    with contextlib.ExitStack() as stack:
        if database and database != ":memory:":
            handle = stack.enter_context(open(f"{database}.scoring-lock", "a+"))  # noqa: SIM115 - closed by the stack
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield stack.enter_context(begin(engine))


@dataclass(frozen=True)
class Reaped:
    """An attempt marked ``abandoned`` (by its partition's next attempt or by ``reap``), and why."""

    job_id: str
    partition_date: str
    run_id: str
    attempt: int
    why: str

    @property
    def staging(self) -> Path:
        """The attempt's staging folder (removed with it)."""
        return staging_of(self.job_id, self.partition_date, self.run_id, self.attempt)

    def line(self) -> str:
        """One line for ``scoring runs --reap`` and the maintenance DAG's log."""
        return f"{self.partition_date}  {self.run_id}  attempt {self.attempt}  abandoned: {self.why}"


# -- opening an attempt ------------------------------------------------------------------
def open_attempt(engine: Engine, *, job_id: str, run_id: str, partition_date: dt.date, mode: str, dry_run: bool,
                 model_name: str, model_version: int, kind: str) -> int:
    """Open (or continue) the run's attempt; abandon dead attempts of the partition, refuse if one is alive."""
    who = holder(kind)
    dead: list[Reaped] = []
    with locked(engine, job_id, partition_date) as conn:
        live = None if dry_run else _claim(conn, job_id, run_id, partition_date, who, dead)
        attempt = ledger.open_row(conn, job_id=job_id, run_id=run_id, partition_date=partition_date, mode=mode,
                                  dry_run=dry_run, model_name=model_name, model_version=model_version,
                                  holder=who, refused=live)
    _remove_staging(dead)
    if live:
        raise PartitionBusyError(live)
    if not dry_run:  # the job's other days: an attempt killed on a day never run again goes now
        try:
            reap(engine, job_id, by=f"the start of run {run_id!r} (partition {partition_date})", skip=partition_date)
        except Exception as exc:  # noqa: BLE001 - upkeep of other days never fails this run; the next start retries
            log.warning("job %s: the reaper could not look at the job's other days (%s); the next start, `scoring "
                        "runs %s --reap` or the scoring_maintenance DAG tries again", job_id,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__, job_id)
    sweep(engine, job_id, keep=staging_of(job_id, partition_date.isoformat(), run_id, attempt))
    return attempt


def _expired(row: Any, run_id: str | None, now: dt.datetime, other_day: bool = False) -> str | None:
    """Why a running attempt is dead (same run, process gone, not seen within the lease), or None if alive.
    ``other_day``: the reaper's rule for a day it is not starting, with its longer horizon
    (SCORING_REAP_AFTER_SECONDS) in place of the lease."""
    seen = ledger.utc(row["heartbeat_at"] or row["started_at"])
    quiet = (now - seen).total_seconds()
    if run_id is not None and row["run_id"] == run_id:
        return "a later attempt of the same run started"
    if _process_gone(row["holder"]):
        return f"its process ({row['holder']}) is gone"
    horizon, name = ((settings.reap_after_seconds(), settings.REAP_AFTER) if other_day
                     else (settings.lease_seconds(), settings.LEASE))
    if quiet > horizon:
        return f"it was not seen for {quiet:.0f}s ({name}={horizon:.0f})"
    return None


def _claim(conn: Connection, job_id: str, run_id: str | None, day: Any, who: str, dead: list[Reaped],
           by: str | None = None, other_day: bool = False) -> str | None:
    """Abandon the partition's dead running attempts (appended to ``dead``); the message naming a live one.
    ``run_id`` None: only look (``reap``), taking nothing over; ``by`` says what found them."""
    rows = conn.execute(sa.text(
        "SELECT run_id, attempt, holder, heartbeat_at, started_at FROM scoring_runs WHERE job_id = :j "
        "AND partition_date = :d AND status = 'running' AND NOT dry_run"), {"j": job_id, "d": day}).mappings().all()
    now, live = ledger.now(), None
    for row in rows:
        seen = ledger.utc(row["heartbeat_at"] or row["started_at"])
        quiet = (now - seen).total_seconds()
        why = _expired(row, run_id, now, other_day)
        if why is None:
            live = live or (
                f"partition {day} of job {job_id} is being scored by run {row['run_id']!r} attempt "
                f"{row['attempt']} ({row['holder'] or 'unknown holder'}, last seen {quiet:.0f}s ago). This "
                f"attempt did not start; retry once that one has finished (an Airflow retry waits), or, if it "
                f"is dead, wait {settings.lease_seconds():.0f}s without a sign of it (SCORING_LEASE_SECONDS).")
            continue
        found = f"the partition was taken over by run {run_id!r}" if run_id else f"found by {by or '`scoring runs`'}"
        text = (f"{why}; last seen {seen:%Y-%m-%d %H:%M:%S} UTC ({row['holder'] or 'unknown holder'}); {found}")
        _abandon(conn, job_id, row, seen, f"abandoned: {text}")
        dead.append(Reaped(job_id, _day_text(day), row["run_id"], int(row["attempt"]), text))
    return live


def _day_text(day: Any) -> str:
    """A partition date as the staging folder names it (a date, or SQLite's text)."""
    return day.isoformat() if isinstance(day, dt.date) else str(day)[:10]


def _remove_staging(dead: list[Reaped]) -> None:
    for reaped in dead:
        shutil.rmtree(reaped.staging, ignore_errors=True)


@dataclass(frozen=True)
class Reaping:
    """What one pass of the reaper did for a job: attempts marked abandoned, load tables dropped."""

    job_id: str
    attempts: list[Reaped]
    load_tables: list[str]

    def __bool__(self) -> bool:
        return bool(self.attempts or self.load_tables)

    def text(self) -> str:
        """What ``scoring runs --reap`` and the maintenance DAG print: a line per attempt and per load table."""
        if not self:
            return f"{self.job_id}: nothing to reap (no expired running attempt, no load table of a dead one)"
        lines = [f"{self.job_id}: reaped {len(self.attempts)} expired attempt(s) (their staging removed), "
                 f"dropped {len(self.load_tables)} load table(s) of attempts no longer running"]
        lines += [f"  {r.line()}" for r in self.attempts]
        lines += [f"  dropped load table {name}" for name in self.load_tables]
        return "\n".join(lines)


def reap(engine: Engine, job_id: str, by: str = "`scoring runs`", skip: dt.date | None = None,
         drop_loads: bool = True) -> Reaping:
    """The reaper: mark the job's expired running attempts of any day ``abandoned`` (rules above), remove
    their staging and drop the load tables of its attempts no longer running; what it did.

    Args:
        by: what found them, for the ledger's error text ("found by ...").
        skip: a day the caller has just dealt with under its lock (the start of an attempt of that day).
        drop_loads: False: look for load tables only when this pass abandoned an attempt (the start of
            a run stays cheap); True: always (``scoring runs --reap``, the maintenance DAG).

    Cheap when there is nothing to do: one query over the job's running attempts; a day's lock is taken
    only when one of its attempts looks expired, and the rules are checked again under it (an attempt
    that beat in the meantime stays).
    """
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT partition_date, run_id, attempt, holder, heartbeat_at, started_at FROM scoring_runs "
            "WHERE job_id = :j AND status = 'running' AND NOT dry_run"), {"j": job_id}).mappings().all()
    now = ledger.now()
    days = sorted({row["partition_date"] for row in rows if _expired(row, None, now, other_day=True)
                   and _day_text(row["partition_date"]) != (skip.isoformat() if skip else None)}, key=str)
    dead: list[Reaped] = []
    for day in days:
        with locked(engine, job_id, day) as conn:
            _claim(conn, job_id, None, day, "", dead, by=by, other_day=True)
    _remove_staging(dead)
    if dead:
        log.warning("job %s: the reaper (%s) marked %d expired attempt(s) abandoned: %s", job_id, by, len(dead),
                    "; ".join(f"{r.partition_date} {r.run_id} attempt {r.attempt}" for r in dead))
    loads = load_tables.drop_dead_loads(engine, job_id) if drop_loads or dead else []  # after the marks' commit
    return Reaping(job_id, dead, loads)


@dataclass(frozen=True)
class Sweep:
    """The reaper over every job of a jobs folder: each job's ``Reaping``, and what could not be looked at."""

    reaped: list[Reaping]
    errors: dict[str, str]  # job id -> why it could not be reaped (its database, most likely)
    broken: dict[str, str]  # a job file that does not load -> why (its config-error DAG says it too)

    def text(self) -> str:
        """A block per job, then the errors (``scoring runs --reap`` with no job, the maintenance DAG's log)."""
        lines = [r.text() for r in self.reaped]
        lines += [f"{name}: NOT reaped: {why}" for name, why in {**self.errors, **self.broken}.items()]
        return "\n".join(lines) or "no job files: nothing to reap"


def reap_jobs(folder: Path | None = None, resolver: Any = None, by: str = "the scoring_maintenance DAG") -> Sweep:
    """Reap every job of the jobs folder (``SCORING_JOBS_DIR``) in its own output database; a job whose
    database cannot be reached is reported in ``errors``, a job file that does not load in ``broken``, and
    the others go on.

    Args:
        resolver: turns a connection id into a connection (Airflow's, in a DAG); default: ``AIRFLOW_CONN_*``.
    """
    loaded = load_jobs(folder or settings.jobs_dir())
    reaped: list[Reaping] = []
    errors: dict[str, str] = {}
    broken = {str(path): f"the job file is not valid: {error.splitlines()[0]}" for path, error in loaded.errors.items()}
    for job_id, job in loaded.jobs.items():
        try:
            engine = engines.for_connection(job.output.connection, resolver)
            if not sa.inspect(engine).has_table("scoring_runs"):
                reaped.append(Reaping(job_id, [], []))  # never ran here: no ledger, nothing to reap
                continue
            reaped.append(reap(engine, job_id, by=by))
        except Exception as exc:  # noqa: BLE001 - one job's database being down never stops the others' upkeep
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            errors[job_id] = redact(f"{type(exc).__name__}: {first}")
            log.warning("job %s: the reaper could not run: %s", job_id, errors[job_id])
    return Sweep(reaped, errors, broken)


def _abandon(conn: Connection, job_id: str, row: Any, seen: dt.datetime, why: str) -> None:
    conn.execute(sa.text(
        "UPDATE scoring_runs SET status = 'abandoned', finished_at = :now, heartbeat_at = :seen, "
        "error = :why WHERE job_id = :j AND run_id = :r AND attempt = :a AND status = 'running'"),
        {"now": ledger.now(), "seen": seen, "why": why, "j": job_id, "r": row["run_id"], "a": row["attempt"]})
    log.warning("job %s: run %s attempt %s %s", job_id, row["run_id"], row["attempt"], why)
    closed = conn.execute(sa.text("SELECT * FROM scoring_runs WHERE job_id = :j AND run_id = :r AND attempt = :a"),
                          {"j": job_id, "r": row["run_id"], "a": row["attempt"]}).mappings().first()
    if closed is not None and closed["status"] == "abandoned":  # a killed attempt is counted like any other end
        metrics.emit_run(dict(closed))


# -- every step --------------------------------------------------------------------------
def resume(engine: Engine, spec: Any, kind: str) -> None:
    """Before a step: stop if a later attempt took the partition over, else take the lease (holder, heartbeat)."""
    day = dt.date.fromisoformat(spec.partition_date)
    with locked(engine, spec.job_id, day) as conn:
        taken = None if spec.dry_run else superseded_by(sa_query(conn), spec.job_id, spec.run_id, spec.attempt, day)
        if taken:
            raise SupersededError(
                f"partition {day}: run {spec.run_id!r} attempt {spec.attempt} was superseded ({taken}); it stops "
                "here and publishes nothing. The later attempt owns the partition; re-run the partition to score it "
                "again.")
        conn.execute(sa.text(
            "UPDATE scoring_runs SET status = 'running', holder = :h, heartbeat_at = :t "
            "WHERE job_id = :j AND run_id = :r AND attempt = :a"),
            {"h": holder(kind), "t": ledger.now(), "j": spec.job_id, "r": spec.run_id, "a": spec.attempt})


@contextlib.contextmanager
def heartbeat(engine: Engine, spec: Any) -> Iterator[None]:
    """Refresh the attempt's ``heartbeat_at`` from a thread while the block runs."""
    stop = threading.Event()
    every = max(1.0, min(30.0, settings.lease_seconds() / 4))

    def beat() -> None:
        while not stop.wait(every):
            try:
                with begin(engine) as conn:
                    conn.execute(sa.text(
                        "UPDATE scoring_runs SET heartbeat_at = :t WHERE job_id = :j AND run_id = :r "
                        "AND attempt = :a AND status = 'running'"),
                        {"t": ledger.now(), "j": spec.job_id, "r": spec.run_id, "a": spec.attempt})
            except Exception as exc:  # noqa: BLE001 - a missed beat is logged; the lease allows for many
                log.warning("heartbeat of run %s attempt %s failed: %s", spec.run_id, spec.attempt,
                            str(exc).splitlines()[0])

    thread = threading.Thread(target=beat, name=f"heartbeat-{spec.run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


# -- staging retention -------------------------------------------------------------------
def sweep(engine: Engine, job_id: str, keep: Path | None = None) -> list[Path]:
    """Remove the job's staging areas of attempts not running: at once for partitions with a newer
    attempt (``keep``'s), after ``SCORING_STAGING_RETENTION_HOURS`` for the others. Returns what went."""
    root = settings.staging_dir() / job_id
    if not root.is_dir():
        return []
    with engine.connect() as conn:
        running = {staging_of(job_id, str(r.partition_date), r.run_id, r.attempt) for r in conn.execute(sa.text(
            "SELECT partition_date, run_id, attempt FROM scoring_runs WHERE job_id = :j AND status = 'running'"),
            {"j": job_id})}
    cutoff = time.time() - settings.staging_retention_hours() * 3600
    removed = []
    for folder in (p for day in root.iterdir() if day.is_dir() for p in day.iterdir() if p.is_dir()):
        if folder == keep or folder in running:
            continue
        if (keep is not None and folder.parent == keep.parent) or folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("job %s: removed %d staging area(s) of attempts no longer running", job_id, len(removed))
    return removed
