"""Publication deadlines: the alert of a run that missed its job's ``deadline.publish_by``.

The DAG of a job with a ``deadline`` carries an Airflow deadline alert (Airflow 3.1+): when a
scheduled run has not succeeded by its partition's day + ``days_after`` at ``publish_by`` (the
job's time zone), the scheduler marks the deadline missed and the triggerer calls ``missed``
here, which alerts as drift does (``pipeline.alerts``: an ERROR log line of record and a POST
to ``drift.alert_connection``). A run that succeeds in time clears its deadline. Only scheduled
runs alert: Airflow gives every run a deadline, and a backfill of past days or a manual re-run
is late by design. The deadline is a fixed time after the run's logical date, so on the two
days a year the clocks change it falls an hour off the local ``publish_by``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
from typing import Any

from pipeline import alerts
from pipeline.config import load_job
from pipeline.connections import from_airflow
from pipeline.partition import resolve_partition_date

log = logging.getLogger(__name__)


def _airflow_resolver() -> Any:
    """Airflow's connections (metadata DB, secrets backend) when this runs inside Airflow, else None.

    The package never imports Airflow: it uses the SDK only when the process has loaded it.
    """
    sdk = sys.modules.get("airflow.sdk")
    if sdk is None:
        return None
    return lambda conn_id: from_airflow(conn_id, sdk.BaseHook.get_connection(conn_id))


def message(job: Any, dag_run: dict[str, Any], deadline_time: Any) -> tuple[str, dict[str, Any]]:
    """The alert's text and webhook body for a run of ``job`` that missed its deadline."""
    conf = dag_run.get("conf") or {}
    logical = dag_run.get("logical_date")
    day = resolve_partition_date(
        tz=job.tz, param=conf.get("partition_date"),
        logical_date=dt.datetime.fromisoformat(logical) if isinstance(logical, str) else logical,
        run_after=dt.datetime.fromisoformat(dag_run["run_after"]) if dag_run.get("run_after") else None,
        schedule=job.schedule, run_type=str(dag_run.get("run_type") or ""))
    due = dt.datetime.fromisoformat(deadline_time) if isinstance(deadline_time, str) else deadline_time
    due_local = due.astimezone(job.tz) if due is not None and due.tzinfo else due
    text = (f"DEADLINE MISSED job {job.job_id}: partition {day} was not published by "
            f"{due_local:%Y-%m-%d %H:%M} {job.timezone} (deadline.publish_by {job.deadline.publish_by}, "
            f"{job.deadline.days_after} day(s) after the partition); run {dag_run.get('dag_run_id') or dag_run.get('run_id')} "
            f"is {dag_run.get('state')}. Look at the run in the Airflow UI and at scoring_runs for this partition; "
            "whoever waits on the predictions should know they are late.")
    body = {"kind": "deadline_missed", "job_id": job.job_id, "partition_date": day.isoformat(),
            "run_id": dag_run.get("dag_run_id") or dag_run.get("run_id"), "state": dag_run.get("state"),
            "deadline": due.isoformat() if due is not None else None}
    return text, body


async def missed(job_file: str, context: dict[str, Any] | None = None, **_: Any) -> str:
    """The deadline alert's callback (Airflow's AsyncCallback, run by the triggerer)."""
    job = load_job(job_file)
    context = context or {}
    dag_run, deadline = context.get("dag_run") or {}, context.get("deadline") or {}
    if str(dag_run.get("run_type") or "") != "scheduled":
        # Airflow gives every run a deadline; a backfill of past days or a manual re-run is late by design
        log.info("deadline of %s run %s passed: not a scheduled run, no alert", dag_run.get("run_type"),
                 dag_run.get("dag_run_id"))
        return "not a scheduled run: no alert"
    text, body = message(job, dag_run, deadline.get("deadline_time"))
    key = f"deadline:{job.job_id}:{body['run_id']}"
    await asyncio.to_thread(alerts.send, text, job.drift.alert_connection, body, key, _airflow_resolver(), log)
    return text
