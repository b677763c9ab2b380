"""Airflow plugin: the scoring runs' reports, one click from the run in the UI.

- ``/scoring-reports/<dag_id>/<run_id>`` (a FastAPI app inside the api-server) serves the run's
  report, to users whom Airflow lets read that DAG's runs (the UI's session cookie or a
  bearer token; ``requires_access_dag``).
- A *Run report* tab on every run page of the UI (an external view) shows it, and the
  ``validate``, ``combine`` and ``finalize`` tasks carry a *Run report* extra link to it.

Airflow finds this file through ``[core] plugins_folder`` (``AIRFLOW__CORE__PLUGINS_FOLDER``,
set to this folder by the Makefile, the native stack and the compose file).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI, HTTPException
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
    path = report_path(dag_id, run_id)
    if path is None:
        raise HTTPException(404, f"no report for run {run_id} of {dag_id} yet: the validate task (combine, for "
                                 "a sharded job) writes it; a run that stopped before has none")
    return HTMLResponse(path.read_text())


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
