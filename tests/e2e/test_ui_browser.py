"""The operator in the Airflow UI, in a real browser (Debian's chromium through Playwright), on the native stack.

Triggering from the form with its defaults scores the last complete day; the run's *Run report*
tab and the validate task's extra link open the report. Screenshots go to test-output/.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import psycopg
import pytest
import requests

from pipeline.partition import last_complete_day
from tests.conftest import ROOT, write_job, write_partition
from tests.e2e.conftest import native_stack, stack_session, wait_for_dag

pytestmark = [pytest.mark.airflow, pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres]
SHOTS = ROOT / "test-output"


def test_form_trigger_scores_the_last_complete_day_and_the_report_is_one_click_away(
        home: Path, tmp_path: Path, pg_server: str, browser) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    expected = last_complete_day(now, "0 0 * * *")
    for day in (expected - dt.timedelta(days=1), expected):  # the day before too: a midnight race scores it
        write_partition(home, day=day, n=800)
    # start today: the scheduler has no complete interval to run, only the form's trigger runs
    write_job(home, start_date=now.date().isoformat(), schedule="0 0 * * *")
    with native_stack(tmp_path, pg_server, workers=1) as stack:
        api, stack_home = stack.api, stack.home
        token, http = stack_session(api, stack_home)
        wait_for_dag(http, api, "churn_test")

        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_cookies([{"name": "_token", "value": token, "url": api}])  # logged in, as after the login page
        page = context.new_page()
        SHOTS.mkdir(exist_ok=True)
        page.goto(f"{api}/dags/churn_test")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        page.screenshot(path=str(SHOTS / "ui-trigger-form.png"))
        dialog.get_by_role("button", name="Trigger").last.click()  # the form as it opens: no partition date

        run_id = None
        deadline = time.monotonic() + 300
        state = note = None
        while time.monotonic() < deadline:
            runs = http.get(f"{api}/api/v2/dags/churn_test/dagRuns", timeout=30).json()["dag_runs"]
            if runs:
                run_id, state, note = runs[0]["dag_run_id"], runs[0]["state"], runs[0]["note"]
                if state in ("success", "failed"):
                    break
            time.sleep(3)
        assert state == "success", (state, run_id)
        with psycopg.connect(stack.scoring_db) as conn:
            [(partition,)] = conn.execute("SELECT partition_date FROM scoring_runs WHERE run_id = %s",
                                          (run_id,)).fetchall()
        assert partition == expected, f"the form's defaults scored {partition}, not the last complete day"
        # the run says which day it scores where the operator looks: its note (plugins/scoring_notes.py)
        assert note.startswith(f"Scores partition {expected} (from the run's logical date and trigger time)."), note

        links = http.get(f"{api}/api/v2/dags/churn_test/dagRuns/{run_id}/taskInstances/validate/links",
                         timeout=30).json()
        assert links["extra_links"]["Run report"] == f"/scoring-reports/churn_test/{run_id}", links
        page.goto(f"{api}/scoring-reports/churn_test/{run_id}")  # the link, with the browser's session only
        assert f"churn_test, partition {expected}" in page.locator("h1").inner_text()
        page.screenshot(path=str(SHOTS / "ui-run-report.png"), full_page=True)
        anonymous = requests.get(f"{api}/scoring-reports/churn_test/{run_id}", timeout=30)
        assert anonymous.status_code in (401, 403), "the report is for users who may read the DAG's runs"

        page.goto(f"{api}/dags/churn_test/runs/{run_id}")
        page.get_by_text(f"Scores partition {expected}").first.wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / "ui-run-note.png"))
        page.get_by_text("Run report").first.click()
        frame = page.frame_locator("iframe").first
        assert f"partition {expected}" in frame.locator("h1").inner_text(timeout=30_000)
        page.screenshot(path=str(SHOTS / "ui-run-report-tab.png"))
        print(f"screenshots: {SHOTS}")
