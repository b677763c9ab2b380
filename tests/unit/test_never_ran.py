"""Ledger rows of runs that never scored (pipeline/never_ran.py) and when a partition is due (pipeline/partition.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from pipeline import ledger, never_ran
from pipeline.partition import due
from pipeline.store import engines, operational

DAY = dt.date(2026, 11, 20)
PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    eng = engines.engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    operational.ensure_ledger(eng)
    return eng


def _record(engine: sa.Engine, outcome: str, run_id: str = "scheduled__2026-11-21T00:00:00+00:00") -> dict | None:
    return never_ran.record(engine, job_id="churn", run_id=run_id, partition_date=DAY, outcome=outcome,
                            error=f"{outcome} by the test", mode="persist", dry_run=False, model_name="churn")


def _rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM scoring_runs ORDER BY attempt")).mappings()]


def test_a_missing_day_leaves_one_row_and_a_metric_even_when_it_times_out_again(engine, statsd) -> None:
    row = _record(engine, "missing")
    assert row is not None and row["status"] == "missing" and row["failed_stage"] == "wait_for_partition"
    assert str(row["partition_date"]) == "2026-11-20" and row["error"] == "missing by the test"
    lines = statsd.recv(65536).decode()
    assert "scoring.run.status" in lines and "job:churn" in lines and "status:missing" in lines, lines
    assert _record(engine, "missing") is None, "a repeat is the same outcome: no second row"
    assert len(_rows(engine)) == 1


def test_a_run_marked_failed_while_running_closes_its_attempt(engine, statsd) -> None:
    attempt = ledger.start_attempt(engine, job_id="churn", run_id="r1", partition_date=DAY, mode="persist",
                                   dry_run=True, model_name="churn", model_version=2)
    row = _record(engine, "marked_failed", "r1")
    assert row is not None and row["attempt"] == attempt
    assert (row["status"], row["failed_stage"]) == ("failed", "marked_failed") and row["finished_at"] is not None
    assert row["dry_run"] in (1, True) and row["model_version"] == 2, "the attempt's own facts stay"
    assert b"status:failed" in statsd.recv(65536)
    _record(engine, "marked_failed", "r1")  # the run, then each of its tasks: the API fires one hook per each
    assert len(_rows(engine)) == 1


def test_a_run_the_pipeline_finished_keeps_its_row(engine) -> None:
    attempt = ledger.start_attempt(engine, job_id="churn", run_id="r2", partition_date=DAY, mode="persist",
                                   dry_run=False, model_name="churn", model_version=1)
    ledger.update(engine, "churn", "r2", attempt, status="success", finished_at=ledger.now())
    assert _record(engine, "skipped", "r2") is None
    assert [r["status"] for r in _rows(engine)] == ["success"]


def test_a_missing_day_cleared_and_marked_skipped_updates_the_same_row(engine) -> None:
    _record(engine, "missing")
    row = _record(engine, "skipped")
    assert row is not None and (row["status"], row["failed_stage"]) == ("skipped", None)
    assert len(_rows(engine)) == 1


def test_an_unknown_outcome_is_refused(engine) -> None:
    with pytest.raises(ValueError, match="not one of"):
        _record(engine, "lost")


@pytest.mark.parametrize(("now", "state"), [
    (dt.datetime(2026, 11, 20, 23, 0, tzinfo=PARIS), "not_due"),  # the day is not over
    (dt.datetime(2026, 11, 21, 0, 0, tzinfo=PARIS), "late"),
    (dt.datetime(2026, 11, 21, 5, 59, tzinfo=PARIS), "late"),
    (dt.datetime(2026, 11, 21, 6, 0, tzinfo=PARIS), "missing"),  # 00:00 + 360 minutes
    (dt.datetime(2026, 12, 1, tzinfo=dt.UTC), "missing"),  # a backfill of a day long past
])
def test_a_partition_is_due_when_its_day_is_over_and_missing_after_the_wait(now: dt.datetime, state: str) -> None:
    assert due(DAY, PARIS, None, 1, 360).state(now) == state


def test_expected_by_sets_the_hour_and_the_day() -> None:
    when = due(DAY, PARIS, dt.time(6, 30), 2, 60)
    assert when.expected == dt.datetime(2026, 11, 22, 6, 30, tzinfo=PARIS)
    assert when.give_up == dt.datetime(2026, 11, 22, 7, 30, tzinfo=PARIS)
    assert when.state(dt.datetime(2026, 11, 22, 5, 29, tzinfo=dt.UTC)) == "not_due"  # 06:29 in Paris


def test_the_wait_says_not_due_yet_or_late() -> None:
    when = due(DAY, PARIS, dt.time(6, 30), 1, 60)
    assert when.waiting(dt.datetime(2026, 11, 21, 6, 0, tzinfo=PARIS), "Europe/Paris") == (
        "not due yet (expected by 2026-11-21 06:30 Europe/Paris)")
    assert when.waiting(dt.datetime(2026, 11, 21, 7, 12, tzinfo=PARIS), "Europe/Paris") == (
        "LATE: expected by 2026-11-21 06:30 Europe/Paris, 42 min ago")
