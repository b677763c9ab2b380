from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pipeline.errors import ConfigError
from pipeline.partition import resolve_partition_date

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def test_param_wins() -> None:
    got = resolve_partition_date(tz=UTC, param="2026-01-05", logical_date=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    assert got == dt.date(2026, 1, 5)


def test_scheduled_run_scores_its_interval_start() -> None:
    # CronDataIntervalTimetable: the 02:00 run on 21 Nov has logical date 20 Nov 02:00
    logical = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, logical_date=logical, schedule="0 2 * * *") == dt.date(2026, 11, 20)


def test_logical_date_is_read_in_job_timezone() -> None:
    logical = dt.datetime(2026, 11, 19, 23, 30, tzinfo=dt.UTC)  # 00:30 on the 20th in Paris
    assert resolve_partition_date(tz=PARIS, logical_date=logical) == dt.date(2026, 11, 20)
    assert resolve_partition_date(tz=UTC, logical_date=logical) == dt.date(2026, 11, 19)


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        (dt.datetime(2026, 11, 21, 14, 0, tzinfo=dt.UTC), dt.date(2026, 11, 20)),  # after 02:00
        (dt.datetime(2026, 11, 21, 1, 0, tzinfo=dt.UTC), dt.date(2026, 11, 19)),  # before 02:00
        (dt.datetime(2026, 11, 21, 2, 0, tzinfo=dt.UTC), dt.date(2026, 11, 20)),  # on the tick
    ],
)
def test_manual_run_without_logical_date_scores_last_complete_interval(run_after, expected) -> None:
    assert resolve_partition_date(tz=UTC, run_after=run_after, schedule="0 2 * * *") == expected


def test_manual_only_job_scores_yesterday() -> None:
    run_after = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
    assert resolve_partition_date(tz=UTC, run_after=run_after, schedule=None) == dt.date(2026, 11, 20)


def test_bad_param_says_what_is_expected() -> None:
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        resolve_partition_date(tz=UTC, param="20/11/2026")


def test_nothing_to_go_on() -> None:
    with pytest.raises(ConfigError, match="cannot tell the partition"):
        resolve_partition_date(tz=UTC)
