"""Flagged rows as a metric (issue 25, point 8): ``scoring.validation.flagged_rows`` per flag check, from the run's
report, through the stand-in exporter with the shipped mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline import metrics
from tests.unit.test_metrics import row, scrape, value

REPORT = {"checks": [
    {"reason": "be_between:MonthlyCharges", "on_fail": "quarantine", "unexpected": 4},
    {"reason": "out_of_training_range:MonthlyCharges", "on_fail": "flag", "unexpected": 2},
    {"reason": "out_of_training_range:Tenure Months", "on_fail": "flag", "unexpected": 0},
    {"reason": "unknown_category:Contract", "on_fail": "flag", "unexpected": 1}]}


@pytest.fixture()
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path))
    path = tmp_path / "churn_daily" / "2026-11-28" / "scheduled__2026-11-29T00_00_00_00_00.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(REPORT))
    return path


def test_the_flag_checks_of_the_runs_report_are_counted(report: Path) -> None:
    assert metrics.flagged_counts(row()) == {"out_of_training_range:MonthlyCharges": 2,
                                             "out_of_training_range:Tenure Months": 0,
                                             "unknown_category:Contract": 1}
    assert metrics.flagged_counts(row(run_id="another")) is None, "no report: no metric"
    report.write_text("{half")
    assert metrics.flagged_counts(row()) is None


def test_flagged_rows_reach_prometheus_per_check_and_column(report: Path) -> None:
    lines = metrics.run_lines(row(), flagged=metrics.flagged_counts(row()))
    samples = scrape(lines)
    name = "scoring_validation_flagged_rows"
    assert value(samples, name, job="churn_daily", check="out_of_training_range", column="MonthlyCharges",
                 dry_run="false") == 2
    assert value(samples, name, check="out_of_training_range", column="Tenure_Months") == 0, "0 resets the gauge"
    assert value(samples, name, check="unknown_category", column="Contract") == 1
    assert value(samples, "statsd_exporter_events_conflict_total") == 0
    shapes = {tuple(t.split(":")[0] for t in re.search(r"\|#(.*)$", text).group(1).split(","))
              for text in lines if text.startswith("scoring.validation.flagged_rows:")}
    assert shapes == {("job", "check", "column", "dry_run")}


def test_only_a_success_sends_them(report: Path) -> None:
    flagged = metrics.flagged_counts(row())
    failed = metrics.run_lines(row(status="failed", failed_stage="score"), flagged=flagged)
    assert not [t for t in failed if t.startswith("scoring.validation.")]


def test_emit_run_reads_the_report_of_a_success(report: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(metrics.settings, "statsd_address", lambda: ("127.0.0.1", 9))
    monkeypatch.setattr(metrics, "send", lambda lines, where=None: sent.extend(lines))
    metrics.emit_run(row())
    assert "scoring.validation.flagged_rows:2|g|#job:churn_daily,check:out_of_training_range,column:MonthlyCharges," \
           "dry_run:false" in sent
