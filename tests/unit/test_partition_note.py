"""The scheduler's listener notes the partition a scoring run scores (plugins/scoring_notes.py)."""

from __future__ import annotations

import datetime as dt
import sys
from types import SimpleNamespace

import pendulum
import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins"))
scoring_notes = pytest.importorskip("scoring_notes")
from airflow.timetables.interval import CronDataIntervalTimetable  # noqa: E402


def dag(tags=("scoring",), cron="0 2 * * *"):  # type: ignore[no-untyped-def]
    tz = pendulum.timezone("Europe/Paris")
    return SimpleNamespace(tags={*tags}, timezone=tz,
                           timetable=CronDataIntervalTimetable(cron, timezone=tz) if cron else None)


def run(conf=None, logical=None, after=None, run_type="scheduled", note=None):  # type: ignore[no-untyped-def]
    return SimpleNamespace(conf=conf, logical_date=logical, run_after=after, run_type=run_type, note=note,
                           run_id="r")


def utc(*a: int) -> dt.datetime:
    return dt.datetime(*a, tzinfo=dt.UTC)


def test_a_scheduled_run_is_noted_with_the_day_its_interval_covers() -> None:
    r = run(logical=utc(2026, 11, 20, 1), after=utc(2026, 11, 21, 1))
    assert scoring_notes.partition_note(dag(), r) == (
        "Scores partition 2026-11-20 (from the run's logical date and trigger time).")


def test_a_form_trigger_is_noted_with_the_last_complete_day_and_the_conf_wins() -> None:
    click = utc(2026, 12, 1, 10, 30)
    assert "2026-11-30" in scoring_notes.partition_note(dag(), run(logical=click, after=click, run_type="manual"))
    noted = scoring_notes.partition_note(dag(), run(conf={"partition_date": "2026-11-02"}, logical=click,
                                                    after=click, run_type="manual"))
    assert noted == "Scores partition 2026-11-02 (from partition_date in the conf)."


def test_a_backfill_with_a_partition_date_is_noted_as_refused_and_other_dags_are_left_alone() -> None:
    r = run(conf={"partition_date": "2026-11-02"}, logical=utc(2026, 11, 20, 1), after=utc(2026, 11, 21, 1),
            run_type="backfill")
    assert scoring_notes.partition_note(dag(), r).startswith("Refused: partition_date '2026-11-02' was given")
    assert scoring_notes.partition_note(dag(tags=("etl",)), r) is None


def test_the_listener_never_overwrites_an_operators_note_nor_raises() -> None:
    mine = run(logical=utc(2026, 11, 20, 1), after=utc(2026, 11, 21, 1), note="rerun for INC-42")
    mine.dag = dag()
    scoring_notes.on_dag_run_running(dag_run=mine, msg="started")
    assert mine.note == "rerun for INC-42"
    fresh = run(logical=utc(2026, 11, 20, 1), after=utc(2026, 11, 21, 1))
    fresh.dag = dag()
    scoring_notes.on_dag_run_running(dag_run=fresh, msg="started")
    assert fresh.note.startswith("Scores partition 2026-11-20")
    broken = run(logical="not a date", after=utc(2026, 11, 21, 1))
    broken.dag = dag()
    scoring_notes.on_dag_run_running(dag_run=broken, msg="started")  # logged, not raised
    assert broken.note is None


def test_an_asset_triggered_run_is_noted_with_its_partition_keys_day() -> None:
    """Its logical date and trigger time are 25 Nov; the asset event says 18 Nov: the note says 18 Nov, and why."""
    r = run(logical=utc(2026, 11, 25, 9), after=utc(2026, 11, 25, 9), run_type="asset_triggered")
    r.partition_key = "2026-11-18"
    assert scoring_notes.partition_note(dag(cron=None), r) == (
        "Scores partition 2026-11-18 (from the asset event's partition key '2026-11-18').")
