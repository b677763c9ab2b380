"""The promotion gate's decisions on verdict rows (pipeline.promotion.decide): only 'better', of the current pair, at
the job's confidence and minimum rows, promotes; every refusal names the figures and the next step."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from pipeline.config import VerdictConfig
from pipeline.promotion import decide, figures_text

JOB = VerdictConfig(confidence=0.95, min_rows=1000)


def row(**changes: Any) -> dict[str, Any]:
    """A cumulative verdict row of v2 against the champion v1 as pipeline.verdicts.latest returns it."""
    base = {"job_id": "churn_daily", "model_name": "churn", "model_version": 2, "champion_version": 1,
            "verdict": "better", "metric": "log_loss", "value": 0.41, "champion_value": 0.45, "difference": -0.04,
            "difference_ci_low": -0.05, "difference_ci_high": -0.03, "rows": 5000, "champion_rows": 5100,
            "confidence": 0.95, "min_rows": 1000, "partition_date": dt.date(2026, 11, 20), "design": "shadow",
            "arm": "challenger", "scope": "period"}
    return {**base, **changes}


def gate(found: dict[str, Any] | None, champion: int | None = 1, candidate: int = 2,
         verdict: VerdictConfig = JOB) -> tuple[bool, str]:
    decision = decide(found, name="churn", job_id="churn_daily", candidate=candidate, champion=champion,
                      verdict=verdict)
    return decision.promote, decision.text


def test_better_at_the_jobs_confidence_and_rows_promotes_and_says_the_figures() -> None:
    promote, text = gate(row())
    assert promote
    assert text.startswith("churn v2 is better than the champion v1: log_loss 0.41 vs champion 0.45")
    assert "difference -0.04 [-0.05, -0.03] at 95% on 5000/5100 labelled rows" in text
    assert "shadow arm 'challenger', up to partition 2026-11-20" in text


@pytest.mark.parametrize(("found", "champion", "verdict", "says"), [
    (None, 1, JOB, ["no realised comparison of v2 against the current champion v1", "scoring outcomes churn_daily"]),
    (row(verdict="not_yet", difference_ci_high=0.01), 1, JOB,
     ["not yet distinguishable from the champion v1 at 5000/5100 rows", "interval of the difference holds 0",
      "then ask again"]),
    (row(verdict="worse", difference=0.03, difference_ci_low=0.02, difference_ci_high=0.04), 1, JOB,
     ["is WORSE than the champion v1", "difference 0.03 [0.02, 0.04]", "retrain"]),
    (row(rows=400, verdict="not_yet"), 1, JOB, ["too few labelled rows to decide: 400 for v2 and 5100 for v1",
                                                "asks 1000 each"]),
    (row(), 1, VerdictConfig(confidence=0.95, min_rows=6000), ["too few labelled rows", "asks 6000 each"]),
    (row(confidence=0.9), 1, JOB, ["judged at 90% confidence, job churn_daily asks 95%"]),
    (row(), 1, VerdictConfig(metric="brier"), ["comparison is on log_loss, but job churn_daily judges on brier"]),
    (row(champion_version=3), 1, JOB, ["is stale: v2 against v3, but the champion is v1 now"]),
    (row(difference_ci_high=0.0), 1, JOB, ["not yet distinguishable"]),  # 'better' whose interval touches 0
    (row(), None, JOB, ["has no champion", "without --if-better"]),
])
def test_anything_but_a_current_better_verdict_is_refused_with_the_figures(
        found: dict[str, Any] | None, champion: int | None, verdict: VerdictConfig, says: list[str]) -> None:
    promote, text = gate(found, champion=champion, verdict=verdict)
    assert not promote
    for words in says:
        assert words in text, text


def test_the_champion_itself_is_not_promoted() -> None:
    promote, text = gate(row(model_version=1), champion=1, candidate=1)
    assert not promote and "is the champion already" in text


def test_figures_text_reads_missing_values_as_na() -> None:
    text = figures_text(row(value=None, difference_ci_low=None))
    assert "log_loss n/a vs champion 0.45" in text and "[n/a, -0.03]" in text
