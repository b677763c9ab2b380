"""Which partition a run scores, and where its files are.

The rule (documented in the README, tested in tests/unit/test_partition.py):

1. A ``partition_date`` param given at trigger time wins, except in a backfill: there the
   logical dates decide which days run, so a ``partition_date`` in a backfill's conf (which
   would make every run of the backfill score the same day) is refused with a message.
2. Otherwise the run's logical date decides, read in the job's time zone, when the day it
   names is complete at the moment the run was made (its ``run_after``). Jobs are
   scheduled with ``CronDataIntervalTimetable`` (not Airflow 3's default
   ``CronTriggerTimetable``, whose data interval is zero-length at the trigger time), so a
   scheduled run's logical date is the *start* of the interval it covers: the run at
   02:00 on 21 Nov covers [20 Nov 02:00, 21 Nov 02:00) and scores 20 Nov. A backfill
   scores the logical dates it creates; a manual run with a logical date in the past
   (``airflow dags test JOB 2026-11-20``) scores that day.
3. A manual run whose logical date's day is not over yet (the UI's trigger form fills in
   the trigger time), or that has no logical date, scores what the schedule would have
   scored at that moment: the start of the last complete cron interval before the trigger
   time, or the day before the trigger for manual-only jobs. Never an unfinished day.

Never ``now()``: the same run always scores the same partition.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.errors import ConfigError, PartitionNotFoundError


def parse_date(value: str | dt.date) -> dt.date:
    """Parse YYYY-MM-DD, with an error that says what was expected."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(f"partition_date {value!r} is not a date: use YYYY-MM-DD") from None


def resolve_partition_date(
    *,
    tz: ZoneInfo,
    param: str | dt.date | None = None,
    logical_date: dt.datetime | None = None,
    run_after: dt.datetime | None = None,
    schedule: str | None = None,
    run_type: str | None = None,
) -> dt.date:
    """Apply the partition-date rule above."""
    if param not in (None, ""):
        if run_type == "backfill":
            raise ConfigError(
                f"partition_date {param!r} was given to a backfill: every run of the backfill would score that "
                "one day. A backfill's logical dates choose the partitions (one run per day); create it without "
                "partition_date, or trigger a single run with partition_date instead."
            )
        return parse_date(param)  # type: ignore[arg-type]
    if logical_date is not None:
        local = _aware(logical_date).astimezone(tz)
        if run_after is None or _over(local, _aware(run_after).astimezone(tz), schedule):
            return local.date()
    if run_after is None:
        raise ConfigError("cannot tell the partition: no partition_date, logical date or run time")
    return last_complete_day(_aware(run_after).astimezone(tz), schedule)


def last_complete_day(moment: dt.datetime, schedule: str | None) -> dt.date:
    """The partition the schedule would have scored at ``moment``: the last complete interval's start."""
    if schedule is None:
        return moment.date() - dt.timedelta(days=1)
    from croniter import croniter

    # Airflow aligns a trigger that falls exactly on a tick to that tick: so does the +1 s.
    end = croniter(schedule, moment + dt.timedelta(seconds=1)).get_prev(dt.datetime)
    start = croniter(schedule, end).get_prev(dt.datetime)
    # a schedule ticking more than daily (0 */6 * * *) must not make today, an unfinished day, the partition
    return min(start.date(), moment.date() - dt.timedelta(days=1))


def _over(logical: dt.datetime, run_after: dt.datetime, schedule: str | None) -> bool:
    """Whether the logical date's day and the interval starting at it had both ended when the run was made."""
    end = dt.datetime.combine(logical.date() + dt.timedelta(days=1), dt.time(), logical.tzinfo)
    if schedule is not None:
        from croniter import croniter

        end = max(end, croniter(schedule, logical).get_next(dt.datetime))
    return run_after >= end


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def partition_dir(root: Path, layout: str, date: dt.date) -> Path:
    """Directory of one partition."""
    return root / layout.format(date=date.isoformat())


def data_files(folder: Path, fmt: str) -> list[Path]:
    """A partition folder's data files, sorted; hidden and marker files (``.x``, ``_x``) excluded."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == f".{fmt}" and not p.name.startswith((".", "_")))


def partition_files(root: Path, layout: str, fmt: str, date: dt.date) -> list[Path]:
    """Data files of a partition, sorted; raise PartitionNotFoundError if there are none."""
    folder = partition_dir(root, layout, date)
    if not folder.is_dir():
        raise PartitionNotFoundError(
            f"partition {date} not found: directory {folder} does not exist. "
            "Check that the upstream export ran, or trigger with another partition_date."
        )
    files = data_files(folder, fmt)
    if not files:
        raise PartitionNotFoundError(
            f"partition {date} not found: {folder} holds no *.{fmt} files. "
            "Check that the upstream export finished (a _SUCCESS marker is not enough)."
        )
    return files
