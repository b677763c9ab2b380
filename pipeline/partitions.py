"""A job's days as the ledger tells them: the partition view's data (read only).

One ``Day`` per partition date: the days the job's schedule intended (from ``start_date``, in the
job's time zone) and every other day the ledger holds a row for (a manual run of an earlier day,
an asset-triggered job's days). A day's state comes from its deciding attempt, the latest one
by start time; a dry run decides only a day no real attempt touched (it publishes nothing):

==============  ==============================================================================
state           when
==============  ==============================================================================
published       status success, no breach
dry_run         only dry runs, the latest succeeded
drifting        status success with ``breach`` naming drift (published and flagged)
quarantine      status success with ``breach`` naming quarantine (published and flagged)
failed          status failed or abandoned (``failed_stage`` says where: validate, drift_gate,
                marked_failed, ...)
missing         status missing (the data never arrived), or no row at all once waiting for the
                data has stopped (``source.expected_by`` plus ``source.wait_timeout_minutes``)
skipped         status skipped (marked so by hand)
running         status running
late            no row yet, past the data's expected arrival (``source.expected_by``, default
                the next midnight), still within the wait
upcoming        no row yet, not due: its data is not expected yet
==============  ==============================================================================

The expected arrival follows ``pipeline.partition.due``, the rule the sensor follows. ``late`` is
also a flag on a running day past the job's ``deadline`` (``publish_by``) and on a day published
after it.
A day's ``verdicts`` are the realised comparisons of its other versions (A/B arms, challengers) against the
champion, cumulative up to it (``pipeline.verdicts``).
Nothing here writes; the tables a job has not created yet (no challengers, no outcomes) read
as empty, and so does the ``breach`` column of a ledger made before it existed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import partition, settings
from pipeline.config import JobConfig, load_jobs
from pipeline.errors import ConfigError
from pipeline.partition import parse_date
from pipeline.redact import redact
from pipeline.store import engines

STATES = ("published", "dry_run", "drifting", "quarantine", "failed", "missing", "skipped", "running", "late",
          "upcoming")
MAX_DAYS = 366


@dataclass
class Day:
    """One partition date of a job, as the partition view shows it."""

    day: dt.date
    state: str
    detail: str = ""  # one line: why this state (the failed stage, the breach, when it was expected)
    late: bool = False
    expected_by: dt.datetime | None = None  # when the day's data is expected (UTC)
    give_up: dt.datetime | None = None  # when waiting for it stops (UTC)
    deadline: dt.datetime | None = None  # by when it must be published, if the job has a deadline (UTC)
    row: dict[str, Any] | None = None  # the deciding ledger row (error redacted)
    attempts: int = 0
    breaches: list[str] = field(default_factory=list)
    quarantine_share: float | None = None
    max_psi: float | None = None
    drifted_inputs: int = 0
    challengers: list[dict[str, Any]] = field(default_factory=list)
    performance: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # scoring_ab_results' cumulative rows of the day


def schedule_days(job: JobConfig, first: dt.date, last: dt.date) -> dict[dt.date, dt.datetime]:
    """The days in [first, last] the schedule intends, each with its first cron tick on that day (aware).

    A cron interval's start names its partition (``pipeline.partition``), so the days are the ticks'
    days from ``start_date`` on; a manual-only or asset-scheduled job intends no day of its own.
    """
    if job.schedule is None:
        return {}
    from croniter import croniter

    start = max(first, job.start_date)
    if start > last:
        return {}
    ticks = croniter(job.schedule, dt.datetime.combine(start, dt.time(), job.tz) - dt.timedelta(seconds=1))
    out: dict[dt.date, dt.datetime] = {}
    while True:
        tick = ticks.get_next(dt.datetime)
        if tick.date() > last:
            return out
        out.setdefault(tick.date(), tick)


def arrival(job: JobConfig, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """When a day's data is expected and when waiting for it stops (``pipeline.partition.due``'s rule:
    ``source.expected_by`` on the day ``source.expected_days_after`` after it, default the next midnight,
    plus ``source.wait_timeout_minutes``)."""
    due = partition.due(day, job.tz, job.source.expected_time(), job.source.expected_days_after,
                        job.source.wait_timeout_minutes)
    return due.expected, due.give_up


def calendar(job: JobConfig, engine: Engine, now: dt.datetime, days: int = 35) -> list[Day]:
    """The job's last ``days`` days up to today (in the job's time zone), newest first."""
    days = max(1, min(int(days), MAX_DAYS))
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    last = now.astimezone(job.tz).date()
    first = last - dt.timedelta(days=days - 1)
    intended = schedule_days(job, first, last)
    by_day: dict[dt.date, list[dict[str, Any]]] = {}
    for row in ledger_rows(engine, job.job_id, first, last):
        by_day.setdefault(row["partition_date"], []).append(row)
    drift = _drift(engine, job.job_id, first, last)
    shadow = _grouped(engine, "scoring_shadow_comparisons", job.job_id, first, last, "challenger_ref")
    performance = _grouped(engine, "scoring_performance", job.job_id, first, last, "role, metric, model_version")
    judged = _grouped(engine, "scoring_ab_results", job.job_id, first, last, "design, arm, model_version")
    out = []
    for day in sorted(set(intended) | set(by_day), reverse=True):
        tick = intended.get(day)
        deadline = tick + job.deadline_interval() if tick is not None and job.deadline is not None else None
        entry = classify(job, day, by_day.get(day, []), now, intended=tick is not None, deadline=deadline)
        run_id = entry.row["run_id"] if entry.row else None
        psi = drift.get((day, run_id))
        if psi is not None:
            entry.max_psi, entry.drifted_inputs = psi
        entry.challengers = shadow.get(day, [])
        entry.performance = performance.get(day, [])
        entry.verdicts = [r for r in judged.get(day, []) if r["scope"] == "period"]
        out.append(entry)
    return out


def classify(job: JobConfig, day: dt.date, attempts: list[dict[str, Any]], now: dt.datetime, *,
             intended: bool = True, deadline: dt.datetime | None = None) -> Day:
    """A day's state from its ledger rows (any order) and, for an intended day without rows, the clock."""
    expected, give_up = arrival(job, day)
    entry = Day(day, "upcoming", expected_by=expected.astimezone(dt.UTC), give_up=give_up.astimezone(dt.UTC),
                deadline=deadline.astimezone(dt.UTC) if deadline else None, attempts=len(attempts))
    if not attempts:
        return _without_attempts(entry, now, expected, give_up, intended=intended)
    real = [a for a in attempts if not a.get("dry_run")]
    row = max(real or attempts, key=lambda a: (_naive(a["started_at"]), a["attempt"]))
    entry.row = dict(row, error=redact(row.get("error")))
    status = row["status"]
    rows_in, quarantined = row.get("rows_in"), row.get("rows_quarantined")
    if rows_in:
        entry.quarantine_share = (quarantined or 0) / rows_in
    entry.breaches = [b.strip() for b in (row.get("breach") or "").split(",") if b.strip()]
    if status == "success":
        _succeeded(entry, row, deadline)
    elif status in ("failed", "abandoned"):
        _failed(job, entry, row)
    elif status in ("missing", "skipped"):
        entry.state = status
        entry.detail = entry.row["error"] or status
    elif status == "running":
        entry.state, entry.late = "running", deadline is not None and now >= deadline
        entry.detail = f"running since {_when(_aware(row['started_at']))}"
    else:  # a status this code does not know yet: say it as it is
        entry.state, entry.detail = "failed", f"status {status!r}"
    return entry


def _without_attempts(entry: Day, now: dt.datetime, expected: dt.datetime, give_up: dt.datetime, *,
                      intended: bool) -> Day:
    """A day no attempt ran for: upcoming, late or missing by the clock."""
    if not intended or now < expected:
        entry.detail = f"not due yet: its data is expected by {_when(expected)}"
    elif now < give_up:
        entry.state, entry.late = "late", True
        entry.detail = (f"no data and no run yet: expected by {_when(expected)}, waited for until "
                        f"{_when(give_up)}")
    else:
        entry.state = "missing"
        entry.detail = (f"no run recorded: its data was expected by {_when(expected)} and waiting for it "
                        f"stopped at {_when(give_up)}")
    return entry


def _succeeded(entry: Day, row: dict[str, Any], deadline: dt.datetime | None) -> None:
    """A day whose latest attempt succeeded: published (late or not), flagged, or a dry run."""
    finished = row.get("published_at") or row.get("finished_at")
    entry.late = deadline is not None and finished is not None and _aware(finished) > deadline
    if row.get("dry_run"):
        entry.state, entry.detail = "dry_run", "dry run: scored and checked, nothing published"
    elif entry.breaches:
        entry.state = "drifting" if "drift" in entry.breaches else "quarantine"
        entry.detail = f"published and flagged: {', '.join(entry.breaches)} over its threshold"
    else:
        entry.state = "published"


# the steps that apply the job's quarantine threshold to the whole partition: validate, a cascade's merge of its
# routes, a sharded run's combine of its shards
THRESHOLD_STEPS = ("validate", "merge_routes", "combine")


def _failed(job: JobConfig, entry: Day, row: dict[str, Any]) -> None:
    """A day whose latest attempt failed or was abandoned, with the breach that stopped it."""
    status, stage = row["status"], row.get("failed_stage")
    over = entry.quarantine_share is not None and entry.quarantine_share > job.validation.max_quarantine_share
    entry.state = "failed"
    if stage == "drift_gate" and "drift" not in entry.breaches:
        entry.breaches.append("drift")
    if (stage or "").split("[")[0] in THRESHOLD_STEPS and over and "quarantine" not in entry.breaches:
        entry.breaches.append("quarantine")
    entry.detail = ("abandoned: its worker went away" if status == "abandoned"
                    else f"failed at {stage or 'an unknown stage'}")


def ledger_rows(engine: Engine, job_id: str, first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    """Every attempt of the job on [first, last], with ``partition_date`` as a date (every column, so a
    column added later, such as ``breach``, is there when the ledger has it)."""
    if not _has(engine, "scoring_runs"):
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM scoring_runs WHERE job_id = :j AND partition_date >= :a "
                                    "AND partition_date <= :b ORDER BY partition_date, started_at"),
                            {"j": job_id, "a": first, "b": last}).mappings().all()
    return [dict(r, partition_date=parse_date(r["partition_date"])) for r in rows]


def run_attempts(engine: Engine, job_id: str, run_id: str) -> list[dict[str, Any]]:
    """The ledger rows of one Airflow run, newest attempt first, errors redacted."""
    if not _has(engine, "scoring_runs"):
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM scoring_runs WHERE job_id = :j AND run_id = :r "
                                    "ORDER BY attempt DESC"), {"j": job_id, "r": run_id}).mappings().all()
    return [dict(r, partition_date=parse_date(r["partition_date"]), error=redact(r["error"])) for r in rows]


NEXT_STEPS = {
    "start": "The run was refused before it held the partition: the error names why (an unknown model version "
             "or alias, an output mode the job lacks, another attempt of the partition still running). Fix that, "
             "then clear the run.",
    "wait_for_partition": "The data never arrived. Check the upstream export for this day; once it has landed, "
                          "clear the run's wait_for_partition task (or trigger the job with partition_date set to "
                          "the day). If the day will never come, mark it skipped.",
    "ingest": "The partition's files could not be read as the model's input: the error names the file and the "
              "column. Fix or re-export the files, then clear the run.",
    "validate": "Too many rows were quarantined, so nothing was published. Look at the quarantine reasons "
                "(scoring_quarantine, or the report once it exists), fix the export and clear the run; raise "
                "validation.max_quarantine_share or set validation.on_breach: flag only if the rows are expected.",
    "drift_gate": "Drift over the threshold blocked the publish (drift.on_breach: block). Compare the inputs with "
                  "the training data; if the shift is real and acceptable, retrain or set drift.on_breach: flag, "
                  "then clear the run.",
    "marked_failed": "Someone marked this run failed in the UI. Clear the run to score the day again.",
    "preprocess": "The model's registered transformation failed on this partition: the error names the column. "
                  "Fix the data or register a corrected model version, then clear the run.",
    "score": "The model failed to score: check the model version and its card, then clear the run.",
    "persist": "Writing the predictions failed; the previous copy of the partition is still published. Check the "
               "output database named in the error, then clear the run.",
    "push": "Delivering the predictions failed: see the sink's error and the dead-letter folder; `scoring redrive` "
            "re-sends what was not delivered.",
    "finalize": "The counts did not reconcile or drift could not be recorded: read the error, then clear the "
                "finalize task.",
}
GENERIC_NEXT_STEP = ("Open the failed task's log in this run's grid for the full error, fix the cause, then clear "
                     "the failed task (Clear, only failed tasks) to run it again.")


def next_step(status: str | None, failed_stage: str | None) -> str:
    """What an operator does next about an attempt that did not publish (a shard's or a route's failure, e.g.
    ``validate[shard 2]`` or ``score[route frequent]``, gets its step's advice)."""
    if status == "abandoned":
        return ("The worker running this attempt went away (killed, or its machine restarted) before it finished. "
                "Clear the run: the next attempt takes the partition over.")
    if status == "missing":
        return NEXT_STEPS["wait_for_partition"]
    if status == "skipped":
        return "The day was marked skipped by hand: nothing is expected. Trigger it with partition_date to score it."
    if status == "running":
        return "The attempt is still running: this page shows its report once validate has written it."
    return NEXT_STEPS.get((failed_stage or "").split("[", 1)[0], GENERIC_NEXT_STEP)


def _drift(engine: Engine, job_id: str, first: dt.date, last: dt.date) -> dict[tuple[dt.date, str], tuple[float, int]]:
    """(day, run_id) -> (largest PSI, drifted inputs) from scoring_drift."""
    if not _has(engine, "scoring_drift"):
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT partition_date, run_id, MAX(value) AS psi, "
            "SUM(CASE WHEN drifted AND substr(feature, 1, 2) <> '__' THEN 1 ELSE 0 END) AS n "
            "FROM scoring_drift WHERE job_id = :j AND partition_date >= :a AND partition_date <= :b "
            "GROUP BY partition_date, run_id"), {"j": job_id, "a": first, "b": last}).all()
    return {(parse_date(r.partition_date), r.run_id): (float(r.psi), int(r.n or 0)) for r in rows}


def _grouped(engine: Engine, table: str, job_id: str, first: dt.date, last: dt.date,
             order: str) -> dict[dt.date, list[dict[str, Any]]]:
    """The rows of a per-day table (``table`` and ``order`` are constants of this module), by day."""
    if not _has(engine, table):
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {table} WHERE job_id = :j AND partition_date >= :a "  # noqa: S608
                                    f"AND partition_date <= :b ORDER BY partition_date, {order}"),
                            {"j": job_id, "a": first, "b": last}).mappings().all()
    out: dict[dt.date, list[dict[str, Any]]] = {}
    for r in rows:
        item = dict(r, partition_date=parse_date(r["partition_date"]))
        if "error" in item:
            item["error"] = redact(item["error"])
        out.setdefault(item["partition_date"], []).append(item)
    return out


def partition_verdicts(engine: Engine, job_id: str, day: dt.date | str) -> list[dict[str, Any]]:
    """The verdicts of a partition's other versions against its champion, cumulative up to it (the run
    report's section; [] before its outcomes were evaluated)."""
    day = parse_date(day)
    rows = _grouped(engine, "scoring_ab_results", job_id, day, day, "design, arm, model_version").get(day, [])
    return [r for r in rows if r["scope"] == "period"]


def _has(engine: Engine, table: str) -> bool:
    return sa.inspect(engine).has_table(table)


def _naive(value: Any) -> dt.datetime:
    """A timestamp read back as naive UTC (PostgreSQL gives it aware, SQLite as text)."""
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


def _aware(value: Any) -> dt.datetime:
    return _naive(value).replace(tzinfo=dt.UTC)


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "?"


def open_job(job_id: str, resolver: Any = None) -> tuple[JobConfig, Engine]:
    """The job of a DAG id and its output database's engine (``AIRFLOW_CONN_<ID>``, else ``resolver``).

    Raises:
        ConfigError: no valid job file has that job id, or its connection is not defined.
    """
    loaded = load_jobs(settings.jobs_dir())
    job = loaded.jobs.get(job_id)
    if job is None:
        broken = [f"{path.name}: {error.splitlines()[0]}" for path, error in loaded.errors.items()]
        raise ConfigError(f"no job file in {settings.jobs_dir()} has job_id {job_id!r}"
                          + (f" (files that do not load: {'; '.join(broken)})" if broken else ""))
    return job, engines.for_connection(job.output.connection, resolver)
