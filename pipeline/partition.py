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
import fnmatch
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pipeline import steps
from pipeline.errors import ConfigError, InputError, PartitionNotFoundError

if TYPE_CHECKING:
    from pipeline.staging import RunSpec

log = logging.getLogger(__name__)


# exactly YYYY-MM-DD: Python 3.11's date.fromisoformat also takes 20261120 and 2026-W47-5 (and callers
# used to strip blanks), so a typo could score another day than the one meant
DAY_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_date(value: str | dt.date, what: str = "partition_date") -> dt.date:
    """Parse a day given as exactly ``YYYY-MM-DD``; refuse anything else, naming ``what`` (the parameter).

    ``20261120``, `` 2026-11-20 `` (blanks around it) and week dates (``2026-W47-5``) are refused, not
    guessed: every place a user gives a day (the CLI's ``--date``, the trigger form's and a run conf's
    ``partition_date``, an asset event's partition key) goes through here.
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value)
    if DAY_FORM.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"{what} {text!r} is not a day of the calendar: give a real day as YYYY-MM-DD, "
                              "e.g. 2026-11-20") from None
    raise ConfigError(f"{what} {text!r} is not a date in the form YYYY-MM-DD (4-digit year, 2-digit month and day, "
                      f"dashes between them, nothing before or after), e.g. 2026-11-20{_hint(text)}")


def _hint(text: str) -> str:
    """What looks wrong in a refused day, when it is one of the usual slips."""
    if text != text.strip():
        return f": remove the blanks around it ({text.strip()!r})"
    if re.fullmatch(r"[0-9]{8}", text):
        return f": add the dashes ({text[:4]}-{text[4:6]}-{text[6:]})"
    if "W" in text.upper():
        return ": week dates are not accepted, give the calendar day"
    return ""


def resolve_partition_date(
    *,
    tz: ZoneInfo,
    param: str | dt.date | None = None,
    logical_date: dt.datetime | None = None,
    run_after: dt.datetime | None = None,
    schedule: str | None = None,
    run_type: str | None = None,
    partition_key: str | None = None,
) -> dt.date:
    """Apply the partition-date rule above (an asset-triggered run: its partition key's day)."""
    if partition_key and param in (None, ""):
        day = partition_key[:10]  # a key may carry a time after the day (2026-11-20T00:00:00)
        if not DAY_FORM.fullmatch(day) or partition_key[10:11] not in ("", "T", " "):
            raise ConfigError(f"the run's partition key {partition_key!r} is not a date (YYYY-MM-DD): the upstream "
                              "asset event must carry the partition's day")
        return parse_date(day, "the run's partition key")
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


@dataclass(frozen=True)
class RunPartition:
    """The partition an orchestrator's run scores, and what decided it (for the run's note)."""

    day: dt.date
    how: str


def run_partition(dag_run: Any, *, tz: ZoneInfo, schedule: str | None,
                  param: str | dt.date | None = None) -> RunPartition:
    """The rule above applied to a run of the orchestrator: the one place a DagRun becomes the rule's arguments.

    ``dag_run`` is read by attribute (``logical_date``, ``run_after``, ``run_type``, and an asset-triggered
    run's ``partition_key``), so the package never imports Airflow; ``param`` is the ``partition_date``
    given at trigger time (the task's params, or the run's conf).

    Raises:
        ConfigError: the rule refuses the run (a backfill given a partition_date, a key that is not a day).
    """
    run_type = getattr(dag_run, "run_type", None)
    key = getattr(dag_run, "partition_key", None)
    day = resolve_partition_date(tz=tz, param=param, logical_date=getattr(dag_run, "logical_date", None),
                                 run_after=getattr(dag_run, "run_after", None), schedule=schedule,
                                 run_type=str(getattr(run_type, "value", run_type) or ""), partition_key=key)
    if param not in (None, ""):
        return RunPartition(day, "partition_date in the conf")
    if key:
        return RunPartition(day, f"the asset event's partition key {key!r}")
    return RunPartition(day, "the run's logical date and trigger time")


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


# -- when a partition's data is due ----------------------------------------------------
# A day's data is expected by ``source.expected_by`` (HH:MM, the job's time zone) on the day
# ``source.expected_days_after`` days after it (default: 00:00 the next day, the moment the day
# is over). Before that the partition is "not due yet" and the sensor waits; after it the
# partition is "late" and the sensor still waits, for ``wait_timeout_minutes``; past that it is
# "missing": the sensor fails at once (a backfill of a day whose data never came does not
# wait 6 hours to say so).
@dataclass(frozen=True)
class Due:
    """When a partition's data is expected, and when waiting for it stops."""

    expected: dt.datetime  # aware, in the job's time zone
    give_up: dt.datetime  # expected + wait_timeout_minutes

    def state(self, now: dt.datetime) -> str:
        """``not_due`` before ``expected``, ``late`` until ``give_up``, then ``missing``."""
        if now < self.expected:
            return "not_due"
        return "late" if now < self.give_up else "missing"


    def waiting(self, now: dt.datetime, zone: str) -> str:
        """What the sensor's log line says while it waits: 'not due yet (...)' or 'LATE: ...'."""
        expected = f"{self.expected:%Y-%m-%d %H:%M} {zone}"
        if self.state(now) == "not_due":
            return f"not due yet (expected by {expected})"
        return f"LATE: expected by {expected}, {(now - self.expected).total_seconds() / 60:.0f} min ago"


def due(day: dt.date, tz: ZoneInfo, expected_by: dt.time | None, days_after: int, wait_minutes: float) -> Due:
    """The partition's expected arrival and give-up time (rule above)."""
    expected = dt.datetime.combine(day + dt.timedelta(days=days_after), expected_by or dt.time(), tzinfo=tz)
    return Due(expected, expected + dt.timedelta(minutes=wait_minutes))


def partition_dir(root: Path, layout: str, date: dt.date) -> Path:
    """Directory of one partition."""
    return root / layout.format(date=date.isoformat())


# -- which files of a partition folder are read ------------------------------------------
# A data file's name ends in ``.<format>`` (any case: part-0.CSV, part-0.Parquet); a CSV may
# also be compressed (part-0.csv.gz, .bz2, .lz4, .zst), read with pyarrow's codecs. Names that
# start with '_' or '.' are markers and hidden files (_SUCCESS, .part-0.csv.crc, _temporary/,
# the Spark/Hadoop convention) and are never read; so are names matching a glob of the job
# file's ``source.ignore``. Anything else in the folder fails the run: rows are never skipped
# because a file has an unexpected name.
CSV_CODECS = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".lz4": "lz4", ".zst": "zstd", ".zstd": "zstd"}


def compression(path: Path) -> str | None:
    """The codec a CSV file is compressed with, from its name (any case); None for plain text."""
    return CSV_CODECS.get(path.suffix.lower())


def is_data_name(name: str, fmt: str) -> bool:
    """Whether a file name is one of a ``fmt`` partition's data files (``x.csv``, ``x.CSV.gz``, ``x.parquet``)."""
    lower = name.lower()
    if fmt == "csv":
        return lower.endswith(tuple(f".csv{ext}" for ext in ["", *CSV_CODECS]))
    return lower.endswith(f".{fmt}")


def _ignored(name: str, ignore: Sequence[str]) -> bool:
    return name.startswith((".", "_")) or any(fnmatch.fnmatchcase(name.lower(), g.lower()) for g in ignore)


def data_files(folder: Path, fmt: str, ignore: Sequence[str] = ()) -> list[Path]:
    """The files of a partition folder whose name says they are data files, sorted (what a sensor waits for).

    Markers, hidden files and names matching ``ignore`` are left out. Nothing else is checked
    here: ``partition_files`` is what a run reads, and it refuses what this lets through.
    """
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not _ignored(p.name, ignore) and is_data_name(p.name, fmt))


@dataclass(frozen=True)
class FolderListing:
    """A partition folder's entries, sorted into the files read and the rest."""

    data: list[Path]  # read by the run
    ignored: list[Path]  # markers, hidden files, source.ignore matches: never read
    unknown: list[Path]  # neither: the run fails naming them
    escaping: list[Path]  # symlinks whose target leaves the source root: refused


def list_folder(root: Path, folder: Path, fmt: str, ignore: Sequence[str] = ()) -> FolderListing:
    """Sort every entry of a partition folder (a directory that exists) into a ``FolderListing``."""
    inside = root.resolve()
    out = FolderListing([], [], [], [])
    for path in sorted(folder.iterdir()):
        if _ignored(path.name, ignore):
            out.ignored.append(path)
        elif not path.resolve().is_relative_to(inside):
            out.escaping.append(path)
        elif is_data_name(path.name, fmt) and path.is_file():
            out.data.append(path)
        else:  # another name, a directory, a broken symlink
            out.unknown.append(path)
    return out


def partition_files(root: Path, layout: str, fmt: str, date: dt.date, ignore: Sequence[str] = ()) -> list[Path]:
    """Data files of a partition, sorted.

    Args:
        ignore: the job file's ``source.ignore`` globs (file names to leave out on purpose).

    Raises:
        PartitionNotFoundError: the folder does not exist or holds no data file.
        InputError: the folder, or a file in it, is a symlink leading out of ``root``; or the folder
            holds a file that is neither a data file nor a marker (it would be skipped silently).
    """
    folder = partition_dir(root, layout, date)
    if not folder.is_dir():
        raise PartitionNotFoundError(
            f"partition {date} not found: directory {folder} does not exist. "
            "Check that the upstream export ran, or trigger with another partition_date."
        )
    if not folder.resolve().is_relative_to(root.resolve()):
        raise InputError(
            f"partition {date}: the partition folder {folder} is a symlink (or below one) leading out of the job's "
            f"source root {root}; nothing was read. Point source.path at a folder that holds the partitions "
            "themselves, or replace the link with the files."
        )
    listing = list_folder(root, folder, fmt, ignore)
    _check_listing(listing, folder, root, fmt, date)
    if listing.ignored:
        log.info("partition %s: not reading %d marker or ignored file(s) in %s: %s", date, len(listing.ignored),
                 folder, ", ".join(p.name for p in listing.ignored))
    return listing.data


def _check_listing(listing: FolderListing, folder: Path, root: Path, fmt: str, date: dt.date) -> None:
    """Escaping symlinks, unknown files and an empty folder fail the partition, naming the files."""
    if listing.escaping:
        raise InputError(
            f"partition {date}: {folder} holds {_names(listing.escaping)}: a symlink leading out of the job's "
            f"source root {root}, which is refused; nothing was read. Copy the file into the partition folder "
            "(or link to a file below the source root), then re-run the partition."
        )
    if listing.unknown:
        one = len(listing.unknown) == 1
        it, glob = "it" if one else "them", _glob_for(listing.unknown[0])
        raise InputError(
            f"partition {date}: {folder} holds {_names(listing.unknown)}: neither {_kinds(fmt)} data nor "
            f"{'a marker' if one else 'markers'} (names starting with '_' or '.', such as _SUCCESS). "
            f"{'Its' if one else 'Their'} rows would be skipped, so nothing was read. If {'it holds' if one else 'they hold'} rows of the "
            f"partition, re-export {it} as {fmt} data files; if not, remove {it} or list a glob matching "
            f"{'its name' if one else 'their names'} in source.ignore in the job file (e.g. source: {{ignore: "
            f"[{glob!r}]}}); then re-run the partition."
        )
    if not listing.data:
        raise PartitionNotFoundError(
            f"partition {date} not found: {folder} holds no {_kinds(fmt)} files"
            f"{f' (only {_names(listing.ignored)}, not read)' if listing.ignored else ''}. "
            "Check that the upstream export finished (a _SUCCESS marker is not enough)."
        )


def _names(paths: list[Path], most: int = 5) -> str:
    """'a.json' (a directory), 'b.txt' and 3 more: what a folder holds, for a message."""
    shown = [repr(p.name) + (" (a directory)" if p.is_dir() else " (a broken symlink)" if not p.exists() else "")
             for p in paths[:most]]
    more = f" and {len(paths) - most} more" if len(paths) > most else ""
    return ("" if len(paths) == 1 else f"{len(paths)} entries, ") + ", ".join(shown) + more


def _glob_for(path: Path) -> str:
    """A source.ignore glob to suggest for an unexpected entry: its extension, else its name."""
    return f"*{path.suffix}" if path.suffix and not path.is_dir() else path.name


def _kinds(fmt: str) -> str:
    return "*.csv (or .csv.gz, .csv.bz2, .csv.lz4, .csv.zst)" if fmt == "csv" else f"*.{fmt}"


def shard_files(files: list[Path], shards: int, shard: int) -> list[Path]:
    """A shard's share of a partition's files (round robin over the sorted files)."""
    return files[shard::shards]


def files_of_shard(spec: RunSpec) -> list[Path]:
    """The files of one shard, from the plan (so a retried shard reads the same files)."""
    planned = spec.read_json(steps.PLAN_STATE, run_level=True)["files"]
    return shard_files([Path(f) for f in planned], spec.shards, spec.shard_index)
