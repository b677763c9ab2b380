"""quality.check: what the DAG's check task calls after finalize (a flagged breach fails it, nothing else does)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from pipeline import drift, ledger, quality
from pipeline.config import parse_job
from pipeline.errors import QualityBreach, ScoringError
from pipeline.store import engines, operational

DAY = dt.date(2026, 11, 20)


def _job(**drift_settings: Any) -> Any:
    return parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "source": {"path": "data"},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "validation": {"max_quarantine_share": 0.05, "on_breach": "flag"}, "drift": drift_settings,
    }, Path("t.yaml"))


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    url = f"sqlite:///{tmp_path}/q.db"
    operational.ensure_ledger(engines.engine_for(url))
    return url


def _attempt(url: str, run_id: str, status: str, breach: str | None = None, dry_run: bool = False) -> int:
    eng = engines.engine_for(url)
    attempt = ledger.start_attempt(eng, job_id="t", run_id=run_id, partition_date=DAY, mode="persist",
                                   dry_run=dry_run, model_name="m", model_version=1)
    ledger.update(eng, "t", run_id, attempt, status=status, breach=breach, rows_in=2000, rows_quarantined=130,
                  rows_scored=1870)
    return attempt


def _drift(url: str, run_id: str) -> None:
    results = [{"feature": "region", "kind": "categorical", "statistic": "psi", "value": 0.41, "threshold": 0.2,
                "drifted": True, "row_count": 1870, "p_value": 3.2e-12},
               {"feature": "age", "kind": "numeric", "statistic": "psi", "value": 0.31, "threshold": 0.2,
                "drifted": False, "row_count": 1870, "p_value": 0.2}]
    drift.replace(engines.engine_for(url), job_id="t", partition_date=DAY, run_id=run_id, model_name="m",
                  model_version=1, results=results)


def test_a_run_without_a_flagged_breach_passes_quietly(url: str) -> None:
    job = _job()
    quality.check(job, DAY, "never-ran", url)  # no attempt at all
    _attempt(url, "clean", "success")
    quality.check(job, DAY, "clean", url)
    _attempt(url, "failed", "failed", breach="drift")  # not published: its failure is the run's own story
    quality.check(job, DAY.isoformat(), "failed", url)


def test_a_flagged_breach_raises_naming_partition_breaches_figures_and_report(url: str, tmp_path: Path) -> None:
    _attempt(url, "r1", "success", breach="drift,quarantine")
    _drift(url, "r1")
    with pytest.raises(QualityBreach) as err:
        quality.check(_job(), DAY, "r1", url)
    message = str(err.value)
    assert isinstance(err.value, ScoringError) and err.value.retryable is False
    assert message.startswith("partition 2026-11-20 of job t (run r1, attempt 1) was published with a flagged "
                              "breach: drift: region (PSI 0.41, n 1870, p 3.2e-12)"), message
    assert "age" not in message, "only the features that breach, not those with PSI alone above the threshold"
    assert "quarantine: 130 of 2000 rows (6.5%) quarantined, above validation.max_quarantine_share 5.0%" in message
    assert f"Report: {tmp_path / 'reports' / 't' / '2026-11-20' / 'r1.html'}" in message
    assert "stay published" in message and "re-run the partition" in message


def test_the_published_attempt_is_the_one_checked(url: str) -> None:
    _attempt(url, "r2", "success", breach="quarantine")
    with pytest.raises(QualityBreach, match=r"attempt 1\) was published with a flagged breach: quarantine: 130"):
        quality.check(_job(), DAY, "r2", url)
    _attempt(url, "r2", "failed")  # a later attempt of the same run that failed does not unpublish attempt 1
    with pytest.raises(QualityBreach, match="attempt 1"):
        quality.check(_job(), DAY, "r2", url)
    _attempt(url, "r2", "success")  # a later clean attempt is what is published now
    quality.check(_job(), DAY, "r2", url)


def test_a_dry_run_says_its_drift_figures_are_in_the_report(url: str) -> None:
    _attempt(url, "dry", "success", breach="drift", dry_run=True)
    with pytest.raises(QualityBreach, match=r"attempt 1, dry run\) .*drift: see the report"):
        quality.check(_job(), DAY, "dry", url)


def test_the_policies_default_to_flag_for_drift_and_block_for_the_quarantine_share() -> None:
    job = parse_job({"job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "source": {"path": "data"},
                     "model": {"name": "m"}, "output": {"table": "t_predictions"}}, Path("t.yaml"))
    assert (job.drift.on_breach, job.drift.alpha, job.validation.on_breach) == ("flag", 0.01, "block")
    assert _job(block=True).drift.on_breach == "block", "the older drift.block: true"


@pytest.mark.parametrize(("settings", "says"), [
    ({"block": True, "on_breach": "flag"}, "block: true contradicts on_breach: flag"),
    ({"on_breach": "warn"}, "drift.on_breach"),
    ({"alpha": 1.5}, "drift.alpha"),
])
def test_a_wrong_policy_fails_when_the_job_loads(settings: dict[str, Any], says: str) -> None:
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _job(**settings)
    assert says in str(err.value) and "t.yaml" in str(err.value), str(err.value)
