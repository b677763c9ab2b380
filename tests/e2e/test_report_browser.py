"""The run report as a person sees it: opened in a real browser (Debian's chromium through Playwright).

Screenshots land in test-output/ at the checkout's root (git-ignored) and their paths are printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import local
from pipeline.config import load_job
from tests.conftest import DAY, ROOT, write_job, write_partition

pytestmark = pytest.mark.slow


def test_the_run_report_shows_failures_first_with_charts_and_drift(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    write_partition(home, n=2500, shift=1.0)  # broken records get quarantined; the shift makes inputs drift
    job = load_job(write_job(home))
    summary = local.run_partition(job, DAY, run_id="report-demo")
    assert summary["rows_quarantined"] > 0 and summary["drifted_features"]
    [html] = (home / "reports" / "churn_test" / str(DAY)).glob("*.html")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(html.as_uri())
    assert "churn_test, partition 2026-11-20" in page.locator("h1").inner_text()
    assert "within the threshold" in page.locator(".verdict").inner_text()
    failed = [int(t) for t in page.locator("#checks tr td:first-child").all_inner_texts()]
    assert failed == sorted(failed, reverse=True) and min(failed) > 0, "the failed checks, most failures first"
    assert page.locator("#checks .null").count() >= 1, "a missing sample value reads null, not nan"
    assert page.locator("details summary").inner_text().endswith("checks passed")
    headings = page.locator("h2").all_inner_texts()
    quarantined = next(i for i, h in enumerate(headings) if h.startswith("Quarantined rows"))
    assert headings.index("What failed") == 0 < quarantined, headings
    assert any(h.startswith("Drift per input") for h in headings) and "Scores against training" in headings
    assert page.locator("svg rect.bar").count() >= len(summary["drifted_features"]) + 2
    red = page.locator("#drift + svg rect.bar[fill='#b33']").count()
    assert red == len([f for f in summary["drifted_features"] if not f.startswith("__")]), "drifted inputs in red"
    assert page.locator("text=Drifted:").count() == 1
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    shot = out / "run-report.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
