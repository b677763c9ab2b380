"""A backfill from the Airflow UI runs with the Run Parameters the operator chose, or is refused; a run marked
failed by hand leaves a ledger row and a metric. Real browser (Debian's chromium), native Celery stack.

Airflow 3.3.2's Backfill dialog sends the form's parameters only when "Override parameters on existing runs" is
ticked (plugins/scoring_backfill.py refuses the request otherwise). Screenshots go to test-output/.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.partition import last_complete_day
from tests.conftest import ROOT, statsd_lines, write_job, write_partition
from tests.e2e.conftest import native_stack, stack_session, wait_for_dag

pytestmark = [pytest.mark.airflow, pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres]
SHOTS = ROOT / "test-output"
DAYS = [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]


def _until(what: str, predicate: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_ui_backfill_with_dry_run_writes_no_predictions_and_one_without_the_tick_is_refused(
        home: Path, tmp_path: Path, pg_server: str, browser, statsd: socket.socket) -> None:  # type: ignore[no-untyped-def]
    for day in DAYS:
        write_partition(home, day=day, n=600)
    # the scheduled run's day is not due for a year: it waits, and is the run the operator marks failed
    write_job(home, start_date="2026-09-01", catchup=False,
              source={"path": str(home / "data" / "churn"), "wait_timeout_minutes": 120, "poke_interval_seconds": 20,
                      "expected_days_after": 366})
    with native_stack(tmp_path, pg_server, workers=1) as stack:  # statsd: the run metrics of every stack process
        api = stack.api
        token, http = stack_session(api, stack.home)
        wait_for_dag(http, api, "churn_test")
        assert http.patch(f"{api}/api/v2/dags/churn_test", json={"is_paused": False}, timeout=30).ok

        context = browser.new_context(viewport={"width": 1400, "height": 1100}, timezone_id="UTC")
        context.add_cookies([{"name": "_token", "value": token, "url": api}])
        page = context.new_page()
        SHOTS.mkdir(exist_ok=True)
        page.goto(f"{api}/dags/churn_test")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.locator("[data-scope=dialog][data-part=content]")  # (the date pickers are dialogs too)
        dialog.get_by_text("Backfill", exact=True).first.click()
        for i, day in enumerate(DAYS):  # logical dates 1 and 2 Oct: partitions 1 and 2 Oct
            page.get_by_test_id("datetime-input").nth(i).click()
            page.get_by_placeholder("YYYY/MM/DD").last.fill(f"{day:%Y/%m/%d}")
            page.get_by_placeholder("HH:mm").last.fill("00:00")
            dialog.get_by_text("Date Range").click()  # closes the picker
        dialog.get_by_text("2 runs will be triggered.").wait_for(timeout=60_000)  # the preview still works
        dry_run = dialog.locator("label[id='switch:element_dry_run']")
        dry_run.click()
        assert dry_run.get_attribute("data-state") == "checked"
        dialog.get_by_role("button", name="Run Backfill").click()
        refused = dialog.get_by_text("Backfill of scoring job churn_test refused: the request carries no run parameters")
        refused.wait_for(timeout=60_000)
        assert 'tick "Override parameters on existing runs"' in refused.inner_text()
        refused.scroll_into_view_if_needed()  # the message sits at the top of the dialog
        page.screenshot(path=str(SHOTS / "backfill-refused-without-override.png"))
        assert http.get(f"{api}/api/v2/backfills", params={"dag_id": "churn_test"},
                        timeout=30).json()["total_entries"] == 0, "the refused backfill created nothing"

        override = dialog.get_by_text("Override parameters on existing runs", exact=True)
        override.click()
        override.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "backfill-dry-run-with-override.png"))
        dialog.get_by_role("button", name="Run Backfill").click()
        page.get_by_text("Backfill generated").first.wait_for(timeout=60_000)

        def backfill_runs() -> list[dict]:
            runs = http.get(f"{api}/api/v2/dags/churn_test/dagRuns", params={"run_type": "backfill"},
                            timeout=30).json()["dag_runs"]
            return runs if len(runs) == 2 and all(r["state"] in ("success", "failed") for r in runs) else []

        runs = _until("the two backfill runs to end", backfill_runs)
        assert [r["state"] for r in runs] == ["success", "success"], runs
        assert all(r["conf"].get("dry_run") is True for r in runs), [r["conf"] for r in runs]
        with psycopg.connect(stack.scoring_db) as conn:
            rows = conn.execute("SELECT partition_date, dry_run, rows_written, rows_scored, status FROM scoring_runs "
                                "WHERE run_id LIKE 'backfill__%%' ORDER BY partition_date").fetchall()
            table = conn.execute("SELECT to_regclass('churn_test_predictions')").fetchone()[0]
            written = conn.execute("SELECT count(*) FROM churn_test_predictions").fetchone()[0] if table else 0
        assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(d, True, 0, "success") for d in DAYS], rows
        assert all(r[3] > 500 for r in rows) and written == 0, "a dry run scores every row and writes none"
        first = min(runs, key=lambda r: r["logical_date"])
        assert first["note"].startswith("Scores partition 2026-10-01 (from the run's logical date and trigger "
                                        "time). Outcome: dry run, "), first["note"]
        assert "none written" in first["note"] and "The run id's date (2026-10-02) is when the run was due" in \
            first["note"], first["note"]

        # the scheduled run waits for a day that is not due: the operator marks it failed (the UI's PATCH)
        waiting = last_complete_day(dt.datetime.now(dt.UTC), "0 0 * * *")

        def scheduled() -> str | None:
            runs = http.get(f"{api}/api/v2/dags/churn_test/dagRuns", params={"run_type": "scheduled"},
                            timeout=30).json()["dag_runs"]
            if not runs:
                return None
            tis = http.get(f"{api}/api/v2/dags/churn_test/dagRuns/{runs[0]['dag_run_id']}/taskInstances",
                           timeout=30).json()["task_instances"]
            sensing = [t for t in tis if t["task_id"] == "wait_for_partition" and t["state"] == "up_for_reschedule"]
            return runs[0]["dag_run_id"] if sensing else None

        run_id = _until("the scheduled run's sensor to wait", scheduled)
        statsd_lines(statsd)
        out = http.patch(f"{api}/api/v2/dags/churn_test/dagRuns/{run_id}", json={"state": "failed"}, timeout=60)
        assert out.ok, out.text
        with psycopg.connect(stack.scoring_db) as conn:
            marked = conn.execute("SELECT partition_date, status, failed_stage, error FROM scoring_runs WHERE "
                                  "run_id = %s", (run_id,)).fetchall()
        assert [(m[0], m[1], m[2]) for m in marked] == [(waiting, "failed", "marked_failed")], marked
        assert marked[0][3].startswith("marked failed by hand in Airflow: ")
        lines = statsd_lines(statsd)
        assert any("job:churn_test" in m and "status:failed" in m for m in lines), lines
        note = http.get(f"{api}/api/v2/dags/churn_test/dagRuns/{run_id}", timeout=30).json()["note"]
        assert "Outcome: marked failed by hand in Airflow: " in note, note

        page.goto(f"{api}/dags/churn_test/runs/{first['dag_run_id']}")
        page.get_by_text("Outcome: dry run").first.wait_for(timeout=30_000)
        page.screenshot(path=str(SHOTS / "backfill-run-note.png"))
        print(f"screenshots: {SHOTS}")
