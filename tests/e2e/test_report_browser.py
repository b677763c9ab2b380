"""The run report as a person sees it: opened in a real browser (Debian's chromium through Playwright).

Screenshots land in test-output/ at the checkout's root (git-ignored) and their paths are printed.
"""

from __future__ import annotations

import re
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
    banner = page.locator("#verdict")  # the top banner: amber, the shift is published and flagged (the default)
    assert "Published with a breach, flagged" in banner.inner_text()
    assert "within the threshold" not in page.content(), "never said of a breaching partition"
    for feature in summary["drifted_features"]:
        assert f"{feature} (PSI " in banner.inner_text(), feature
    assert re.search(r"\(PSI \d\.\d\d, n \d+, p [0-9.e-]+\)", banner.inner_text()), "PSI beside its rows and p-value"
    box = banner.bounding_box()
    assert box is not None and box["y"] < page.locator("h2").first.bounding_box()["y"], "above what failed"
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 243, 214)", "amber"
    assert page.locator("#drift-table tr").count() == len(summary["drifted_features"]) + 1 + \
        page.locator("#drift-table td:text('stable')").count() + \
        page.locator("#drift-table td:text-matches('not significant')").count()
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


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    out = ROOT / "test-output"
    out.mkdir(exist_ok=True)
    shot = out / name
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_a_blocked_partition_opens_on_a_red_banner_and_a_small_clean_one_on_green(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    from pipeline.errors import DriftError

    write_partition(home, n=2500, shift=1.0)
    job = load_job(write_job(home, drift={"on_breach": "block"}))
    with pytest.raises(DriftError):
        local.run_partition(job, DAY, run_id="report-blocked")
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto((home / "reports" / "churn_test" / str(DAY) / "report-blocked.html").as_uri())
    banner = page.locator("#verdict")
    assert banner.inner_text().startswith("Not published")
    assert "support_tickets_90d (PSI" in banner.inner_text() and "drift.on_breach: block" in banner.inner_text()
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 232, 232)", "red"
    assert "within the threshold" not in page.content()
    _shot(page, "run-report-blocked.png")

    write_partition(home, n=150)  # ~148 rows of the model's own population: PSI is noisy, but no breach
    job = load_job(write_job(home, validation={"max_quarantine_share": 0.2}))
    summary = local.run_partition(job, DAY, run_id="report-small")
    assert summary["breach"] is None
    page.goto((home / "reports" / "churn_test" / str(DAY) / "report-small.html").as_uri())
    assert page.locator("#verdict").inner_text().startswith("No breach")
    assert page.locator("#verdict").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(232, 246, 232)"
    cells = page.locator("#drift-table tr td:nth-child(4)").all_inner_texts()
    assert cells and all(c != "untested" for c in cells), "every feature's p-value is shown"
    _shot(page, "run-report-small-sample.png")
