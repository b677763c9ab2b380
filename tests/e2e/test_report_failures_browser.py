"""The Run report page of runs that did not publish, opened in a real browser (Debian's chromium through Playwright).

The page is what plugins/scoring_reports.py serves at /scoring-reports/<dag>/<run> (its route function, called
here without the api-server's authentication; tests/e2e/test_partitions_browser.py opens the same page through
the native stack's UI). The runs are real (``pipeline.local``) and the ledger is the job's SQLite database.
Screenshots go to test-output/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.errors import ScoringError
from pipeline.store import engines
from tests.conftest import DAY, ROOT, write_job, write_partition

pytestmark = pytest.mark.slow
sys.path.insert(0, str(ROOT / "plugins"))
scoring_reports = pytest.importorskip("scoring_reports")
SHOTS = ROOT / "test-output"


def show(browser, html: str, name: str):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_content(html)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)
    return page


def test_a_run_that_failed_after_validate_shows_what_failed_above_its_report(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    write_partition(home, n=600)
    job = load_job(write_job(home))
    local.run_partition(job, DAY, run_id="late-failure")
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:  # as a failed persist records it (pipeline.run.record_failure)
        conn.execute(sa.text("UPDATE scoring_runs SET status = 'failed', failed_stage = 'persist', error = :e "
                             "WHERE run_id = 'late-failure'"),
                     {"e": "database error (OperationalError): connection to server at \"db\" failed. Retry the task "
                           "once the database is back."})
    response = scoring_reports.run_report("churn_test", "late-failure")
    assert response.status_code == 200
    page = show(browser, response.body.decode(), "report-failed-after-validate.png")
    assert page.locator("body > section").first.get_attribute("id") == "failure", "what failed comes first"
    assert page.locator("#failure .stage").inner_text() == "persist"
    assert "connection to server" in page.locator("#failure .error").inner_text()
    assert "previous copy of the partition is still published" in page.locator("#failure .next").inner_text()
    assert page.locator("#failure").evaluate("e => getComputedStyle(e).borderLeftColor") == "rgb(187, 51, 51)"
    assert f"churn_test, partition {DAY}" in page.locator("h1").first.inner_text(), "the report itself follows"


def test_a_run_blocked_at_validate_keeps_its_reports_own_verdict(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    write_partition(home, n=2500)  # the demo's broken records: a few quarantined rows
    job = load_job(write_job(home, validation={"max_quarantine_share": 0.0001}))
    with pytest.raises(ScoringError):
        local.run_partition(job, DAY, run_id="blocked-run")
    page = show(browser, scoring_reports.run_report("churn_test", "blocked-run").body.decode(),
                "report-failed-validate.png")
    assert page.locator("#failure").count() == 0, "the report's verdict already says it: no second banner"
    assert "Not published" in page.locator("#verdict").inner_text()


def test_a_run_without_a_report_gets_its_stage_redacted_error_and_next_step(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    write_partition(home, n=300)
    job = load_job(write_job(home))
    with pytest.raises(ScoringError):
        local.run_partition(job, DAY, run_id="no-model", model_ref="99")  # refused at start: no report
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:  # a row written before errors were redacted on the way in
        conn.execute(sa.text("UPDATE scoring_runs SET error = error || ' (ledger at postgresql://scorer:hunter2@db/x)' "
                             "WHERE run_id = 'no-model'"))
    response = scoring_reports.run_report("churn_test", "no-model")
    assert response.status_code == 200 and response.media_type == "text/html"
    page = show(browser, response.body.decode(), "report-failed-start.png")
    assert page.locator(".stage").inner_text() == "start"
    error = page.locator(".error").inner_text()
    assert "99" in error and "hunter2" not in error, error
    assert "clear the run" in page.locator(".next").inner_text()
    assert page.locator("a[target=_top]").first.get_attribute("href") == "/dags/churn_test/runs/no-model"


def test_an_unknown_run_is_a_page_not_raw_json(home: Path, browser) -> None:  # type: ignore[no-untyped-def]
    write_job(home)
    response = scoring_reports.run_report("churn_test", "never-was")
    assert response.status_code == 404 and response.media_type == "text/html"
    page = show(browser, response.body.decode(), "report-unknown-run.png")
    assert "No report and no ledger row for run never-was" in page.locator("body").inner_text()


def test_the_partition_view_of_a_database_that_is_down_says_so(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                browser) -> None:  # type: ignore[no-untyped-def]
    scoring_partitions = pytest.importorskip("scoring_partitions")
    write_job(home)
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", "postgresql://scorer:hunter2@127.0.0.1:9/scoring")  # nothing there
    engines.engine_for.cache_clear()
    response = scoring_partitions.partitions_page("churn_test", days=35)
    assert response.status_code == 503
    page = show(browser, response.body.decode(), "partitions-database-down.png")
    text = page.locator(".problem").inner_text()
    assert "the ledger of churn_test could not be read from postgresql 127.0.0.1:9/scoring" in text, text
    assert "hunter2" not in text and "Check that the output database is up" in text
    assert scoring_partitions.partitions_page("not_a_job", days=35).status_code == 404
