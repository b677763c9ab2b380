"""Airflow plugin: the scoring runs' reports, one click from the run in the UI.

- ``/scoring-reports/<dag_id>/<run_id>`` (a FastAPI app inside the api-server) serves the run's
  report, to users whom Airflow lets read that DAG's runs (the UI's session cookie or a
  bearer token; ``requires_access_dag``).
- A *Run report* tab on every run page of the UI (an external view) shows it, and the
  ``validate``, ``combine`` and ``finalize`` tasks carry a *Run report* extra link to it (in the
  *Extra Links* of the task instance's *Details* tab).
- With model.split or model.challengers, once the partition's outcomes were evaluated, the report ends with
  each other version's verdict against the champion (better, worse or not yet distinguishable at N rows,
  the difference and its interval), read from ``scoring_ab_results`` when the page is opened.
- A run that did not publish (failed, missing, abandoned, skipped) gets what failed, its error
  (redacted) and the next step from the ledger: above its report, or as the whole page when it
  stopped before validate wrote one; a run with no ledger row at all (it failed before it opened
  one) gets the tasks Airflow recorded as failed.

Airflow finds this file through ``[core] plugins_folder`` (``AIRFLOW__CORE__PLUGINS_FOLDER``,
set to this folder by the Makefile, the native stack and the compose file).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

PREFIX = "/scoring-reports"
REPORT_TASKS = ("validate", "combine", "finalize")
app = FastAPI(title="Scoring run reports")


def report_path(dag_id: str, run_id: str) -> Path | None:
    """The newest report of a run (its partition folder is not in the URL), or None."""
    from pipeline import settings  # light: no pandas or pyarrow in the api-server for this

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", dag_id):
        return None
    found = [(p.stat().st_mtime, p) for p in (settings.reports_dir() / dag_id).glob(
        f"*/{settings.safe_name(run_id)}.html") if p.exists()]
    return max(found)[1] if found else None


@app.get("/{dag_id}/{run_id}", response_class=HTMLResponse,
         dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))])
def run_report(dag_id: str, run_id: str) -> HTMLResponse:
    """The run's report; a run that did not publish gets what failed, its error and the next step on top
    (or as the whole page, when it stopped before validate wrote a report)."""
    path = report_path(dag_id, run_id)
    attempts, problem = ledger_of(dag_id, run_id)
    latest = attempts[0] if attempts else None
    if path is not None:
        html = path.read_text()
        if latest is not None and latest["status"] not in ("success", "running") and not told(html, latest):
            html = html.replace("<body>", f"<body><style>{BANNER_STYLE}</style>" + failure_banner(dag_id, latest), 1)
        if latest is not None and latest["status"] == "success":
            html = with_verdicts(html, dag_id, latest["partition_date"])
        return HTMLResponse(html)
    tasks = failed_tasks(dag_id, run_id) if latest is None else []
    if latest is None and not tasks and problem is None:
        return HTMLResponse(failure_page(dag_id, run_id, None, [], None), status_code=404)
    return HTMLResponse(failure_page(dag_id, run_id, latest, tasks, problem))


def ledger_of(dag_id: str, run_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """The run's ledger rows (newest attempt first), or why they cannot be read."""
    from pipeline import partitions
    from pipeline.errors import ScoringError
    from pipeline.redact import redact

    try:
        job, engine = partitions.open_job(dag_id, airflow_connection)
        return partitions.run_attempts(engine, job.job_id, run_id), None
    except ScoringError as exc:
        return [], redact(str(exc))
    except Exception as exc:  # noqa: BLE001 - a database that is down: the page says so instead of a 500
        return [], redact(f"the ledger could not be read: {type(exc).__name__}: {str(exc).splitlines()[0]}")


def with_verdicts(html: str, dag_id: str, partition_date: Any) -> str:
    """The report with the partition's verdicts (``pipeline.report.verdicts_html``) at its end; as it was when
    there are none yet or they cannot be read (the report stands on its own)."""
    from pipeline import partitions, report

    try:
        job, engine = partitions.open_job(dag_id, airflow_connection)
        section = report.verdicts_html(partitions.partition_verdicts(engine, job.job_id, partition_date),
                                       partition_date)
    except Exception:  # noqa: BLE001 - the report is shown without them
        return html
    return html.replace("</body>", section + "</body>", 1) if section else html


def airflow_connection(conn_id: str) -> Any:
    """An Airflow connection, as the api-server reads it (secrets backends, then the metadata database)."""
    from airflow.models.connection import Connection

    from pipeline.connections import from_airflow

    return from_airflow(conn_id, Connection.get_connection_from_secrets(conn_id))


def failed_tasks(dag_id: str, run_id: str) -> list[tuple[str, str]]:
    """(task_id, state) of the run's task instances that failed, from Airflow's metadata database."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    try:
        with create_session() as session:
            rows = session.execute(select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id,
                TaskInstance.state.in_(("failed", "upstream_failed")))).all()
    except Exception:  # noqa: BLE001 - the page then says what it knows without them
        return []
    return sorted((str(t), str(getattr(s, "value", s))) for t, s in rows)


# The UI shows a plugin's page in a sandboxed iframe that may not navigate the window itself (no
# allow-top-navigation): a click on a link to a UI page (target _top) asks the UI's own document to follow it.
# Opened on its own (no frame), the link works as it is. (The same lines are in both scoring plugins.)
FOLLOW_IN_UI = ("<script>document.addEventListener('click',function(e){var a=e.target.closest('a[target=_top]');"
                "if(!a||e.defaultPrevented||window.top===window)return;try{var d=window.top.document,x=d.createElement('a');x.href=a.href;"
                "d.body.appendChild(x);x.click();e.preventDefault()}catch(err){}})</script>")


BANNER_STYLE = """.failure{background:#fde8e8;border-left:6px solid #b33;padding:.8rem 1.2rem;margin:0 0 1.2rem;border-radius:.3rem}
.failure h2{margin:.2rem 0 .6rem;color:#a00} .failure dt{font-weight:600;margin-top:.5rem}
.failure pre{white-space:pre-wrap;background:#fff;border:1px solid #e3b5b5;padding:.5rem;font-size:.85rem}"""
STYLE = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:60rem}" + BANNER_STYLE


def told(html: str, row: dict[str, Any]) -> bool:
    """Whether the report already says why the run did not publish: its verdict banner names the breach that
    blocked it at validate or at the drift gate (pipeline/report.py)."""
    return row.get("failed_stage") in ("validate", "drift_gate") and "id='verdict'" in html


def failure_banner(dag_id: str, row: dict[str, Any]) -> str:
    """What failed, the error and the next step, from the run's newest ledger row."""
    from pipeline.partitions import next_step

    run = f"/dags/{quote(dag_id)}/runs/{quote(str(row['run_id']), safe='')}"
    stage = row.get("failed_stage") or row["status"]
    return (f"<section class='failure' id='failure'><h2>Not published: {escape(str(row['status']))} at "
            f"{escape(str(stage))}</h2><dl><dt>Partition</dt><dd>{row['partition_date']} (attempt {row['attempt']}, "
            f"model {escape(str(row.get('model_name')))} v{escape(str(row.get('model_version')))})</dd>"
            f"<dt>Failed stage</dt><dd class='stage'>{escape(str(stage))}</dd>"
            f"<dt>Error</dt><dd><pre class='error'>{escape(row.get('error') or 'no error text recorded')}</pre></dd>"
            f"<dt>Next step</dt><dd class='next'>{escape(next_step(row['status'], row.get('failed_stage')))}</dd>"
            f"</dl><p><a target='_top' href='{escape(run)}'>The run's grid and task logs</a> · "
            f"<a target='_top' href='/dags/{quote(dag_id)}/plugin/scoring-partitions'>the job's partitions</a></p>"
            f"</section>{FOLLOW_IN_UI}")


def failure_page(dag_id: str, run_id: str, row: dict[str, Any] | None, tasks: list[tuple[str, str]],
                 problem: str | None) -> str:
    """The page of a run that has no report: the ledger's failure, else the tasks Airflow says failed."""
    from pipeline.partitions import NEXT_STEPS, next_step

    title = f"{dag_id}, run {run_id}: no report"
    run = f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"
    if row is not None and row["status"] == "running":
        body = (f"<p>Attempt {row['attempt']} of partition {row['partition_date']} is still running: its report "
                "appears here once the validate task (combine, for a sharded job) has written it.</p>")
    elif row is not None:
        body = failure_banner(dag_id, row)
    elif tasks:
        first = tasks[0][0] if len(tasks) == 1 else next((t for t, s in tasks if s == "failed"), tasks[0][0])
        step = NEXT_STEPS.get(first, next_step("failed", first))
        body = (f"<section class='failure' id='failure'><h2>Not published: failed at {escape(first)}</h2>"
                f"<dl><dt>Failed stage</dt><dd class='stage'>{escape(first)}</dd><dt>Error</dt><dd><pre class='error'>"
                f"The run stopped before it opened its ledger row, so the error is in the log of task "
                f"{escape(first)}.</pre></dd><dt>Failed tasks</dt><dd>"
                + ", ".join(f"<a target='_top' href='{escape(run)}/tasks/{quote(t)}'>{escape(t)}</a> ({escape(s)})"
                            for t, s in tasks)
                + f"</dd><dt>Next step</dt><dd class='next'>{escape(step)}</dd></dl></section>")
    else:
        body = (f"<p>No report and no ledger row for run {escape(run_id)} of {escape(dag_id)}: the validate task "
                "(combine, for a sharded job) writes the report, and a run that has not started yet has neither.</p>")
    if problem:
        body += f"<p class='failure'>{escape(problem)}</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{escape(title)}</h1>{body}<p><a target='_top' href='{escape(run)}'>Open the run</a>"
            f"</p>{FOLLOW_IN_UI}</body></html>")


class RunReportLink(BaseOperatorLink):
    """The *Run report* button of the tasks that write or complete the report."""

    name = "Run report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        if operator.task_id not in REPORT_TASKS:
            return ""
        return f"{PREFIX}/{ti_key.dag_id}/{ti_key.run_id}"


class ScoringReportsPlugin(AirflowPlugin):
    name = "scoring_reports"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Scoring run reports"}]
    external_views = [{"name": "Run report", "href": f"{PREFIX.lstrip('/')}/{{DAG_ID}}/{{RUN_ID}}",
                       "destination": "dag_run", "url_route": "scoring-run-report"}]
    global_operator_extra_links = [RunReportLink()]
