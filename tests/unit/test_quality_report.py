"""The report's banner: the partition's verdict first, never 'within the threshold' for a breaching partition."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline import report

DRIFTED = {"feature": "region", "kind": "categorical", "value": 0.41, "threshold": 0.2, "drifted": True,
           "row_count": 2000, "p_value": 3.2e-12}
NOISY = {"feature": "neighbourhood", "kind": "categorical", "value": 0.31, "threshold": 0.2, "drifted": False,
         "row_count": 148, "p_value": 0.2}


def _report(quarantined: int = 10, rows: list[dict[str, Any]] | None = None, **policies: str) -> dict[str, Any]:
    return {"job_id": "t", "partition": "2026-11-20", "run_id": "r", "model": "m v1", "rows_in": 1000,
            "rows_valid": 1000 - quarantined, "rows_quarantined": quarantined, "max_quarantine_share": 0.05,
            "on_breach": {"validation": "block", "drift": "flag", **policies}, "checks": [], "drift": rows,
            "drift_settings": {"psi_threshold": 0.2, "alpha": 0.01, "min_rows": 100}}


@pytest.mark.parametrize(("rep", "level", "words"), [
    (_report(), "ok", "No breach: 10 of 1000 rows quarantined (1.00%), within the threshold of 5.00%; drift is "
                      "checked after scoring"),
    (_report(rows=[NOISY]), "ok", "no input or score drifted (PSI above 0.2 and significant at alpha 0.01"),
    (_report(quarantined=80), "block", "Not published"),
    (_report(rows=[DRIFTED]), "flag", "Published with a breach, flagged"),
    (_report(80, [DRIFTED], validation="flag", drift="ignore"), "flag", "region</b> (PSI 0.41, n 2000, p 3.2e-12)"),
    (_report(rows=[DRIFTED], drift="ignore"), "ignore", "the job ignores these breaches"),
    (_report(rows=[DRIFTED], drift="block"), "block", "(drift.on_breach: block)"),
])
def test_the_banner_says_the_partitions_verdict(rep: dict[str, Any], level: str, words: str) -> None:
    html = report.validation_html(rep)
    banner = html[html.index("id='verdict'"):html.index("</div>", html.index("id='verdict'"))]
    assert f"<div class='banner {level}' id='verdict'>" in html and words in banner, banner
    assert (level == "ok") == ("within the threshold" in html), "said only of a partition without a breach"
    assert html.index("id='verdict'") < html.index("What failed")


def test_the_drift_table_shows_psi_beside_n_and_p_and_why_a_large_psi_is_no_breach() -> None:
    html = report.validation_html(_report(rows=[{**DRIFTED, "alpha_used": 0.005}, {**NOISY, "alpha_used": 0.005}]))
    table = html[html.index("<table id='drift-table'>"):]
    assert "<td>region</td><td>0.410</td><td>2000</td><td>3.2e-12</td><td class='fail'>breach</td>" in table
    assert ("<td>neighbourhood</td><td>0.310</td><td>148</td><td>0.200</td><td>PSI above the threshold, not "
            "significant (sample too small or noise)</td>") in table
    assert "A breach needs p below 0.005" in table
