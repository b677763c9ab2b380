"""The partition view and the failure pages as an operator sees them: the native Celery stack, in a real browser.

One stack start for all of it (the suite's budget). Some days are real runs through the stack: a published day,
a day that fails at ingest (a stray file in its folder) and the scheduler's own run of yesterday, whose data
never came. The other states are ledger rows in the shared vocabulary, inserted by SQL: a drifting published day
(breach 'drift', with its scoring_drift rows), a day blocked at the drift gate, a quarantine-flagged day, a
`missing` row, a dry run, a skipped day; and challenger comparisons and realised performance for the trend
charts. A day with no row at all, long past its expected arrival, is derived as missing.

Checked in the browser: the DAG's *Partitions* tab shows the missing, failed and drifting days (and the others);
the failed run's *Run report* tab shows its failed stage, error and next step instead of raw JSON; the validate
task's *Run report* extra link renders on its task instance page (Details) and opens the report.
Screenshots go to test-output/.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from urllib.parse import quote, unquote

import psycopg
import pytest

from tests.conftest import ROOT, write_job, write_partition
from tests.e2e.conftest import native_stack, stack_session, wait_for_dag

pytestmark = [pytest.mark.airflow, pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres]
SHOTS = ROOT / "test-output"
JOB = "churn_test"


def test_partition_view_and_failure_pages_in_the_browser(home: Path, tmp_path: Path, pg_server: str,
                                                          browser) -> None:  # type: ignore[no-untyped-def]
    today = dt.datetime.now(dt.UTC).date()

    def day(n: int) -> dt.date:
        return today - dt.timedelta(days=n)

    write_partition(home, day=day(2), n=800)  # published
    write_partition(home, day=day(3), n=800)  # fails at ingest: a file that is neither data nor a marker
    (home / "data" / "churn" / f"date={day(3)}" / "notes.txt").write_text("exported by hand\n")
    write_job(home, start_date=day(10).isoformat(), schedule="0 0 * * *", retries=0)
    with native_stack(tmp_path, pg_server, workers=1) as stack:
        api = stack.api
        token, http = stack_session(api, stack.home)
        wait_for_dag(http, api, JOB)
        # unpaused, the scheduler runs yesterday by itself (catchup off): its data never comes
        assert http.patch(f"{api}/api/v2/dags/{JOB}", json={"is_paused": False}, timeout=30).ok
        runs = {}
        for n in (2, 3):
            resp = http.post(f"{api}/api/v2/dags/{JOB}/dagRuns", timeout=30,
                             json={"logical_date": None, "conf": {"partition_date": day(n).isoformat()}})
            assert resp.status_code == 200, resp.text
            runs[n] = resp.json()["dag_run_id"]
        states = wait_for_runs(http, api, 420)
        assert states[runs[2]] == "success" and states[runs[3]] == "failed", (states, _tails(stack.home))
        scheduled = [r for r in states if r.startswith("scheduled__")]
        assert scheduled, states

        with psycopg.connect(stack.scoring_db, autocommit=True) as conn:
            insert_vocabulary(conn, day)
            [(stage, error)] = conn.execute("SELECT failed_stage, error FROM scoring_runs WHERE run_id = %s",
                                            (runs[3],)).fetchall()
            [(written,)] = conn.execute("SELECT rows_written FROM scoring_runs WHERE run_id = %s", (runs[2],)).fetchall()
        assert stage == "ingest" and "notes.txt" in error, (stage, error)

        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_cookies([{"name": "_token", "value": token, "url": api}])
        page = context.new_page()
        SHOTS.mkdir(exist_ok=True)

        # 1. the DAG's Partitions tab: a calendar of days with their state
        page.goto(f"{api}/dags/{JOB}/plugin/scoring-partitions")
        view = page.frame_locator("iframe").first
        view.locator("#calendar").wait_for(timeout=60_000)
        shown = {str(day(n)): view.locator(f"#calendar td[data-day='{day(n)}']").get_attribute("data-state")
                 for n in range(1, 11)}
        assert shown == {str(day(1)): "missing",  # the scheduler's run: the sensor found no data (or no row yet)
                         str(day(2)): "published", str(day(3)): "failed", str(day(4)): "drifting",
                         str(day(5)): "failed", str(day(6)): "quarantine", str(day(7)): "missing",
                         str(day(8)): "dry_run", str(day(9)): "missing", str(day(10)): "skipped"}, shown
        row = view.locator(f"#d-{day(4)}")
        assert "breach: drift" in row.inner_text() and "1.110" in row.inner_text(), "the largest PSI of the day"
        assert "failed at ingest" in view.locator(f"#d-{day(3)}").inner_text()
        assert "drift" in view.locator(f"#d-{day(5)}").inner_text()
        assert "no data for" in view.locator(f"#d-{day(7)}").inner_text()
        assert "no run recorded" in view.locator(f"#d-{day(9)}").inner_text()
        published = view.locator(f"#d-{day(2)}").inner_text()
        assert "churn v1" in published and f"\t{written:,}\t" in published, published
        assert view.locator("#challengers + h3 + svg polyline.trend").count() == 1, "agreement across days"
        assert view.locator("#performance ~ svg circle.point").count() >= 6
        page.screenshot(path=str(SHOTS / "partitions-tab.png"), full_page=True)
        page.goto(f"{api}/scoring-partitions/{JOB}")  # the page itself, whole
        page.screenshot(path=str(SHOTS / "partitions-view.png"), full_page=True)

        # 2. from the failed day to its Run report tab: what failed, the error and the next step
        page.goto(f"{api}/dags/{JOB}/plugin/scoring-partitions")
        page.frame_locator("iframe").first.locator(f"#d-{day(3)} a.report").click()
        page.wait_for_url(lambda url: url.endswith("/plugin/scoring-run-report"), timeout=60_000)
        assert runs[3] in unquote(page.url), page.url
        report = page.frame_locator("iframe").first
        assert report.locator(".stage").inner_text(timeout=60_000) == "ingest"
        assert "notes.txt" in report.locator(".error").inner_text()
        assert "re-export the files, then clear the run" in report.locator(".next").inner_text()
        assert "detail" not in report.locator("body").inner_text(), "no raw JSON"
        page.screenshot(path=str(SHOTS / "report-tab-failed-run.png"), full_page=True)
        raw = http.get(f"{api}/scoring-reports/{JOB}/{runs[3]}", timeout=30)
        assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/html")
        missing = http.get(f"{api}/scoring-reports/{JOB}/{scheduled[0]}", timeout=30).text
        assert "wait_for_partition" in missing and "upstream export" in missing, missing[-1500:]

        # 3. the Run report extra link on the validate task's page (its Details tab)
        page.goto(f"{api}/dags/{JOB}/runs/{quote(runs[2], safe='')}/tasks/validate/details")
        link = page.get_by_role("link", name="Run report")
        link.wait_for(timeout=60_000)
        assert link.get_attribute("href") == f"/scoring-reports/{JOB}/{runs[2]}"
        page.screenshot(path=str(SHOTS / "task-extra-link.png"))
        link.click()  # a link of the UI's own origin opens in the same tab
        page.wait_for_url(lambda url: "/scoring-reports/" in url, timeout=60_000)
        assert f"{JOB}, partition {day(2)}" in page.locator("h1").inner_text()
        print(f"screenshots: {SHOTS}")


def wait_for_runs(http, api: str, timeout: float) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Every run of the job and its state, once none is queued or running (the scheduler's own run included)."""
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        listed = http.get(f"{api}/api/v2/dags/{JOB}/dagRuns", timeout=30).json()["dag_runs"]
        states = {r["dag_run_id"]: r["state"] for r in listed}
        if len(states) >= 3 and all(s in ("success", "failed") for s in states.values()):
            return states
        time.sleep(3)
    raise AssertionError(f"runs not finished after {timeout}s: {states}")


def insert_vocabulary(conn: psycopg.Connection, day) -> None:  # type: ignore[no-untyped-def]
    """Ledger rows of the shared vocabulary for the days no real run made, and the per-day tables' rows."""
    now = dt.datetime.now(dt.UTC)
    rows = [  # n, status, failed_stage, breach, dry_run, error, rows_in, rows_quarantined
        (4, "success", None, "drift", False, None, 900, 3),
        (5, "failed", "drift_gate", None, False, "drift over the threshold on tenure (PSI 0.93): nothing published",
         900, 2),
        (6, "success", None, "quarantine", False, None, 900, 120),
        (7, "missing", "wait_for_partition", None, False,
         f"no data for {day(7)} (expected by {day(6)} 00:00 UTC); waited 360 min", None, None),
        (8, "success", None, None, True, None, 900, 4),
        (10, "skipped", None, None, False, None, None, None),
    ]
    for n, status, stage, breach, dry, error, rows_in, quarantined in rows:
        written = None if rows_in is None or status != "success" else rows_in - quarantined
        conn.execute(
            "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, mode, dry_run, model_name, "
            "model_version, status, failed_stage, error, breach, rows_in, rows_quarantined, rows_written, "
            "started_at, finished_at) VALUES (%s, %s, 1, %s, 'persist', %s, 'churn', 1, %s, %s, %s, %s, %s, %s, %s, "
            "%s, %s)",
            (JOB, f"manual__sql_{day(n)}", day(n), dry, status, stage, error, breach, rows_in, quarantined, written,
             now, now))
    for feature, value in (("tenure_months", 1.11), ("monthly_charges", 0.05), ("__score__", 0.48)):
        conn.execute(
            "INSERT INTO scoring_drift (job_id, partition_date, run_id, model_name, model_version, feature, kind, "
            "statistic, value, threshold, drifted, row_count, computed_at) VALUES (%s, %s, %s, 'churn', 1, %s, "
            "'numeric', 'psi', %s, 0.2, %s, 900, %s)", (JOB, day(4), f"manual__sql_{day(4)}", feature, value,
                                                         value > 0.2, now))
    for n in range(2, 10):
        conn.execute(
            "INSERT INTO scoring_shadow_comparisons (job_id, partition_date, challenger_ref, run_id, model_name, "
            "champion_version, challenger_version, status, rows_compared, agreement, mean_abs_diff, spearman, "
            "computed_at) VALUES (%s, %s, 'candidate', 'r', 'churn', 1, 2, 'compared', 900, %s, 0.03, %s, %s)",
            (JOB, day(n), 0.97 - 0.01 * n, 0.9 - 0.02 * n, now))
        for version, role, value in ((1, "champion", 0.80 - 0.01 * n), (2, "challenger", 0.82 - 0.005 * n)):
            conn.execute(
                "INSERT INTO scoring_performance (job_id, partition_date, model_name, model_version, role, metric, "
                "value, rows_predicted, rows_labelled, bound, breached, outcome_date, computed_at) VALUES (%s, %s, "
                "'churn', %s, %s, 'roc_auc', %s, 900, 850, 0.75, %s, %s, %s)",
                (JOB, day(n), version, role, value, value < 0.75, day(n), now))


def _tails(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(home.glob("*.log")))
