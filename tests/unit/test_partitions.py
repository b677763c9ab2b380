"""The partition view's data (pipeline/partitions.py): a job's days and their state from a real ledger (SQLite)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import ledger, partitions
from pipeline.config import load_job
from pipeline.errors import ConfigError
from pipeline.store import engines, operational
from tests.conftest import write_job

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    eng = engines.engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    operational.ensure_ledger(eng)
    return eng


def add(engine: sa.Engine, day: str, run_id: str, status: str, *, started: str = "2026-11-24T01:00:00",
        dry_run: bool = False, **fields: object) -> None:
    attempt = ledger.start_attempt(engine, job_id="churn_test", run_id=run_id, partition_date=dt.date.fromisoformat(day),
                                   mode="persist", dry_run=dry_run, model_name="churn", model_version=1)
    breach = fields.pop("breach", None)
    ledger.update(engine, "churn_test", run_id, attempt, status=status, **fields)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE scoring_runs SET started_at = :s, breach = :b WHERE run_id = :r"),
                     {"s": dt.datetime.fromisoformat(started), "b": breach, "r": run_id})


def test_the_schedule_intends_its_ticks_days_from_the_start_date(home: Path) -> None:
    daily = load_job(write_job(home, schedule="0 2 * * *", start_date="2026-11-20", timezone="Europe/Paris"))
    days = partitions.schedule_days(daily, dt.date(2026, 11, 18), dt.date(2026, 11, 23))
    assert list(days) == [dt.date(2026, 11, d) for d in range(20, 24)]
    assert days[dt.date(2026, 11, 20)] == dt.datetime(2026, 11, 20, 2, tzinfo=daily.tz)
    weekdays = load_job(write_job(home, schedule="0 2 * * 1-5", start_date="2026-11-01"))
    assert [d.isoformat() for d in partitions.schedule_days(weekdays, dt.date(2026, 11, 20), dt.date(2026, 11, 24))] \
        == ["2026-11-20", "2026-11-23", "2026-11-24"], "Saturday and Sunday are no partition of a weekday job"
    four_times = load_job(write_job(home, schedule="0 */6 * * *"))
    assert len(partitions.schedule_days(four_times, dt.date(2026, 11, 20), dt.date(2026, 11, 21))) == 2
    assert partitions.schedule_days(load_job(write_job(home, schedule=None)), dt.date(2026, 11, 1), NOW.date()) == {}


def test_each_day_gets_the_state_of_its_ledger_rows_or_of_the_clock(home: Path, engine: sa.Engine) -> None:
    job = load_job(write_job(home, start_date="2026-11-15", schedule="0 0 * * *",
                             source={"path": str(home / "data"), "wait_timeout_minutes": 120}))
    add(engine, "2026-11-15", "r15", "success", rows_in=100, rows_quarantined=1, rows_written=99)
    add(engine, "2026-11-16", "r16", "success", breach="drift,quarantine")
    add(engine, "2026-11-17", "r17", "failed", failed_stage="validate", rows_in=100, rows_quarantined=30,
        error="40 rows quarantined: postgresql://scorer:hunter2@db/x")
    add(engine, "2026-11-18", "r18", "failed", failed_stage="drift_gate")
    add(engine, "2026-11-19", "r19", "missing", failed_stage="wait_for_partition",
        error="no data for 2026-11-19 (expected by 2026-11-20 00:00 UTC); waited 120 min")
    add(engine, "2026-11-21", "r21", "success", dry_run=True)
    add(engine, "2026-11-22", "r22a", "success", started="2026-11-23T01:00:00")  # a real run decides ...
    add(engine, "2026-11-22", "r22b", "success", dry_run=True, started="2026-11-23T05:00:00")  # ... not a later dry run
    add(engine, "2026-11-23", "r23a", "failed", failed_stage="score", started="2026-11-24T01:00:00")
    add(engine, "2026-11-23", "r23b", "running", started="2026-11-24T02:00:00")  # the latest attempt decides
    add(engine, "2026-11-10", "manual", "skipped")  # before start_date: shown because the ledger has it
    days = {d.day.isoformat(): d for d in partitions.calendar(job, engine, NOW, days=20)}
    states = {day: d.state for day, d in days.items()}
    assert states == {
        "2026-11-25": "upcoming",  # today: expected at midnight
        "2026-11-24": "missing",  # no row: expected 25 Nov 00:00, waited for until 02:00, NOW is 12:00
        "2026-11-23": "running", "2026-11-22": "published", "2026-11-21": "dry_run",
        "2026-11-20": "missing",  # no row at all, long past
        "2026-11-19": "missing", "2026-11-18": "failed", "2026-11-17": "failed", "2026-11-16": "drifting",
        "2026-11-15": "published", "2026-11-10": "skipped",
    }
    assert days["2026-11-16"].breaches == ["drift", "quarantine"]
    assert days["2026-11-18"].breaches == ["drift"] and days["2026-11-18"].detail == "failed at drift_gate"
    assert days["2026-11-17"].breaches == ["quarantine"] and days["2026-11-17"].quarantine_share == 0.3
    assert "hunter2" not in days["2026-11-17"].row["error"], "errors are shown redacted"
    assert days["2026-11-19"].detail.startswith("no data for 2026-11-19 (expected by")
    assert days["2026-11-23"].row["run_id"] == "r23b" and days["2026-11-23"].attempts == 2
    assert days["2026-11-22"].row["run_id"] == "r22a"
    assert days["2026-11-20"].detail == ("no run recorded: its data was expected by 2026-11-21 00:00 UTC and waiting "
                                         "for it stopped at 2026-11-21 02:00 UTC")
    assert days["2026-11-15"].quarantine_share == 0.01 and days["2026-11-15"].row["rows_written"] == 99


@pytest.mark.parametrize(("now", "state"), [("2026-11-24T23:59:00", "upcoming"), ("2026-11-25T00:30:00", "late"),
                                            ("2026-11-25T02:00:00", "missing")])
def test_a_day_without_rows_is_not_due_then_late_then_missing(home: Path, engine: sa.Engine, now: str,
                                                               state: str) -> None:
    job = load_job(write_job(home, start_date="2026-11-24", source={"path": str(home / "data"),
                                                                    "wait_timeout_minutes": 120}))
    [day] = [d for d in partitions.calendar(job, engine, dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC), 2)
             if d.day == dt.date(2026, 11, 24)]
    assert (day.state, day.late) == (state, state == "late")


def test_a_deadline_marks_a_run_late(home: Path, engine: sa.Engine) -> None:
    job = load_job(write_job(home, start_date="2026-11-23", schedule="0 2 * * *",
                             deadline={"publish_by": "06:00", "days_after": 1}))
    add(engine, "2026-11-23", "r23", "running", started="2026-11-24T02:00:00")
    [day] = [d for d in partitions.calendar(job, engine, NOW, 3) if d.day == dt.date(2026, 11, 23)]
    assert (day.state, day.late) == ("running", True)
    assert day.deadline == dt.datetime(2026, 11, 24, 6, tzinfo=dt.UTC)


def test_drift_challengers_and_performance_join_their_day(home: Path, engine: sa.Engine) -> None:
    job = load_job(write_job(home, start_date="2026-11-24"))
    add(engine, "2026-11-24", "r24", "success")
    with engine.begin() as conn:
        for run_id, feature, value, drifted in [("r24", "tenure", 1.11, True), ("r24", "__score__", 0.48, True),
                                                ("old", "tenure", 9.0, True)]:  # another attempt's drift: not shown
            conn.execute(sa.text(
                "INSERT INTO scoring_drift (job_id, partition_date, run_id, model_name, model_version, feature, kind, "
                "statistic, value, threshold, drifted, row_count, computed_at) VALUES ('churn_test', :d, :r, 'churn', "
                "1, :f, 'numeric', 'psi', :v, 0.2, :x, 500, :t)"),
                {"d": dt.date(2026, 11, 24), "r": run_id, "f": feature, "v": value, "x": drifted, "t": NOW})
        conn.execute(sa.text(
            "INSERT INTO scoring_shadow_comparisons (job_id, partition_date, challenger_ref, run_id, model_name, "
            "champion_version, challenger_version, status, agreement, computed_at) VALUES ('churn_test', :d, '2', "
            "'r24', 'churn', 1, 2, 'compared', 0.93, :t)"), {"d": dt.date(2026, 11, 24), "t": NOW})
        conn.execute(sa.text(
            "INSERT INTO scoring_performance (job_id, partition_date, model_name, model_version, role, metric, value, "
            "rows_predicted, rows_labelled, breached, outcome_date, computed_at) VALUES ('churn_test', :d, 'churn', 1, "
            "'champion', 'roc_auc', 0.81, 500, 480, false, :d, :t)"), {"d": dt.date(2026, 11, 24), "t": NOW})
    [day] = [d for d in partitions.calendar(job, engine, NOW, 2) if d.day == dt.date(2026, 11, 24)]
    assert (day.max_psi, day.drifted_inputs) == (1.11, 1), "the score's PSI is not an input"
    assert [(c["challenger_version"], c["agreement"]) for c in day.challengers] == [(2, 0.93)]
    assert [(p["metric"], p["value"]) for p in day.performance] == [("roc_auc", 0.81)]


def test_a_row_from_before_the_breach_column_reads_as_no_breach(home: Path) -> None:
    job = load_job(write_job(home))
    row = {"run_id": "r", "attempt": 1, "status": "success", "dry_run": False, "started_at": "2026-11-24 01:00:00",
           "finished_at": None, "rows_in": 10, "rows_quarantined": 0}  # no 'breach' key: migration 007 not applied
    day = partitions.classify(job, dt.date(2026, 11, 23), [row], NOW)
    assert (day.state, day.breaches) == ("published", [])


def test_a_ledger_without_tables_reads_as_no_rows(home: Path, tmp_path: Path) -> None:
    job = load_job(write_job(home, start_date="2026-11-24"))
    empty = engines.engine_for(f"sqlite:///{tmp_path / 'empty.db'}")
    assert [d.state for d in partitions.calendar(job, empty, NOW, 2)] == ["upcoming", "missing"]
    assert partitions.run_attempts(empty, "churn_test", "r") == []


@pytest.mark.parametrize("stage", ["merge_routes", "combine"])
def test_a_cascades_or_a_sharded_runs_threshold_failure_is_a_quarantine_breach(home: Path, engine: sa.Engine,
                                                                                stage: str) -> None:
    job = load_job(write_job(home, start_date="2026-11-20", schedule="0 0 * * *"))
    add(engine, "2026-11-20", "over", "failed", failed_stage=stage, rows_in=100, rows_quarantined=30)
    add(engine, "2026-11-21", "under", "failed", failed_stage=stage, rows_in=100, rows_quarantined=1)
    days = {d.day.isoformat(): d for d in partitions.calendar(job, engine, NOW, days=6)}
    assert days["2026-11-20"].breaches == ["quarantine"] and days["2026-11-20"].detail == f"failed at {stage}"
    assert days["2026-11-21"].breaches == [], "under the threshold the step failed for another reason"


@pytest.mark.parametrize(("status", "stage", "words"), [
    ("failed", "validate", "quarantine reasons"), ("failed", "drift_gate", "drift.on_breach"),
    ("missing", "wait_for_partition", "upstream export"), ("failed", "marked_failed", "marked this run failed"),
    ("abandoned", None, "went away"), ("failed", "some_new_stage", "Open the failed task's log")])
def test_every_failure_names_a_next_step(status: str, stage: str | None, words: str) -> None:
    assert words in partitions.next_step(status, stage)


@pytest.mark.parametrize(("stage", "step"), [("validate[shard 2]", "validate"), ("score[route frequent]", "score"),
                                            ("preprocess[route occasional][shard 1]", "preprocess"),
                                            ("ingest[shard 0]", "ingest")])
def test_a_shards_or_a_routes_failure_gets_its_steps_next_step(stage: str, step: str) -> None:
    assert partitions.next_step("failed", stage) == partitions.NEXT_STEPS[step] != partitions.GENERIC_NEXT_STEP
    assert partitions.next_step("failed", "route[shard 1]") == partitions.GENERIC_NEXT_STEP, "a step with no advice"


def test_open_job_finds_the_job_and_its_database_or_says_why_not(home: Path) -> None:
    write_job(home)
    job, engine = partitions.open_job("churn_test")
    assert job.job_id == "churn_test" and engine.url.database.endswith("scoring.db")
    (home / "jobs" / "broken.yaml").write_text("job_id: [")
    with pytest.raises(ConfigError, match=r"no job file in .* has job_id 'nope' \(files that do not load: broken"):
        partitions.open_job("nope")
