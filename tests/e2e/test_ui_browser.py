"""The operator in the Airflow UI, in a real browser (Debian's chromium through Playwright), on the native stack.

Triggering from the form with its defaults scores the last complete day; the run's *Run report*
tab and the validate task's extra link open the report. Screenshots go to test-output/.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from pipeline.partition import last_complete_day
from tests.conftest import ROOT, write_job, write_partition
from tests.e2e.conftest import stack_session, wait_for_dag

pytestmark = [pytest.mark.airflow, pytest.mark.slow, pytest.mark.postgres]
STACK = [sys.executable, str(ROOT / "scripts" / "native_stack.py")]
SHOTS = ROOT / "test-output"


def _drop(pg: str, *names: str) -> None:
    with psycopg.connect(pg, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_form_trigger_scores_the_last_complete_day_and_the_report_is_one_click_away(
        home: Path, tmp_path: Path, pg_server: str, browser) -> None:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    expected = last_complete_day(now, "0 0 * * *")
    for day in (expected - dt.timedelta(days=1), expected):  # the day before too: a midnight race scores it
        write_partition(home, day=day, n=800)
    # start today: the scheduler has no complete interval to run, only the form's trigger runs
    write_job(home, start_date=now.date().isoformat(), schedule="0 0 * * *")
    suffix = uuid.uuid4().hex[:8]
    metadata, scoring, redis_db = f"airflow_{suffix}", f"scoring_{suffix}", random.randint(8, 15)
    stack_home = tmp_path / "stack"
    up = subprocess.run([*STACK, "up", "--home", str(stack_home), "--workers", "1", "--metadata-db", metadata,
                         "--scoring-db", scoring, "--redis-db", str(redis_db), "--port", "0"],
                        capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        api = json.loads(up.stdout.strip().splitlines()[-1])["api"]
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
        state = None
        while time.monotonic() < deadline:
            runs = http.get(f"{api}/api/v2/dags/churn_test/dagRuns", timeout=30).json()["dag_runs"]
            if runs:
                run_id, state = runs[0]["dag_run_id"], runs[0]["state"]
                if state in ("success", "failed"):
                    break
            time.sleep(3)
        assert state == "success", (state, run_id)
        base = pg_server.rsplit("/", 1)[0]
        with psycopg.connect(f"{base}/{scoring}") as conn:
            [(partition,)] = conn.execute("SELECT partition_date FROM scoring_runs WHERE run_id = %s",
                                          (run_id,)).fetchall()
        assert partition == expected, f"the form's defaults scored {partition}, not the last complete day"

        links = http.get(f"{api}/api/v2/dags/churn_test/dagRuns/{run_id}/taskInstances/validate/links",
                         timeout=30).json()
        assert links["extra_links"]["Run report"] == f"/scoring-reports/churn_test/{run_id}", links
        page.goto(f"{api}/scoring-reports/churn_test/{run_id}")  # the link, with the browser's session only
        assert f"churn_test, partition {expected}" in page.locator("h1").inner_text()
        page.screenshot(path=str(SHOTS / "ui-run-report.png"), full_page=True)
        anonymous = requests.get(f"{api}/scoring-reports/churn_test/{run_id}", timeout=30)
        assert anonymous.status_code in (401, 403), "the report is for users who may read the DAG's runs"

        page.goto(f"{api}/dags/churn_test/runs/{run_id}")
        page.get_by_text("Run report").first.click()
        frame = page.frame_locator("iframe").first
        assert f"partition {expected}" in frame.locator("h1").inner_text(timeout=30_000)
        page.screenshot(path=str(SHOTS / "ui-run-report-tab.png"))
        print(f"screenshots: {SHOTS}")
    finally:
        subprocess.run([*STACK, "down", "--home", str(stack_home)], capture_output=True, timeout=120)
        _drop(pg_server, metadata, scoring)
