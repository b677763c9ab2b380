"""Realised performance, daily: one DAG per job with an ``outcomes`` section (dag id ``<job_id>_outcomes``).

Each run evaluates the partition whose outcomes are complete: its day (the last complete day, by
the job's schedule, as a scoring run finds its partition) minus ``outcomes.horizon_days``; the
trigger form's ``partition_date`` names the partition to evaluate instead. ``evaluate`` joins the
outcomes to the partition's predictions and records ``scoring_performance`` and, for a job with
``model.split`` or ``model.challengers``, the verdicts (``scoring_ab_results``; ``pipeline.outcomes.evaluate_all``);
``announce_breach`` emits an event of ``<job_id>.breach`` when a metric broke its floor or ceiling
(kind ``performance``) or a version's verdict against the champion over its assignment period turned
decisive, better or worse (kind ``ab_verdict``); it is skipped otherwise. Missing outcomes fail
``evaluate``, naming the folder or table; it retries as the job does.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from _scoring.assets import breach_asset, emit_breach
from _scoring.factory import airflow_connection, call, job_and_url
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, task

from pipeline.config import JobConfig, load_jobs
from pipeline.settings import jobs_dir

TAG = "scoring-outcomes"  # not "scoring": the plugins read that tag as a scoring job's DAG


def evaluated_partition(job: JobConfig, context: Any) -> dt.date:
    """The partition a run evaluates: the form's partition_date, else the run's day minus outcomes.horizon_days."""
    from pipeline.partition import parse_date, run_partition

    param = context["params"].get("partition_date")
    if param:
        return parse_date(param, "partition_date")
    day = run_partition(context["dag_run"], tz=job.tz, schedule=job.schedule).day
    return day - dt.timedelta(days=job.outcomes.horizon_days if job.outcomes else 0)


def evaluate(job_file: str, context: Any) -> dict[str, Any]:
    """Evaluate the partition; its breaches (``pipeline.breaches`` payloads) for announce_breach."""
    from pipeline import breaches, outcomes
    from pipeline.context import engine_for_job

    job, url = job_and_url(job_file)
    day = evaluated_partition(job, context)
    performance, verdicts = outcomes.evaluate_all(job, day, engine_for_job(job, url, airflow_connection),
                                                  airflow_connection)
    found = breaches.outcome_payloads(job, day, performance, verdicts)
    print(f"partition {day} of {job.job_id}: {len(performance)} metric row(s), {len(verdicts)} verdict row(s), "
          f"{len(found)} breach(es)")
    return {"partition_date": day.isoformat(), "metrics": len(performance), "breaches": found}


def build(job: JobConfig, path: Path) -> DAG:
    schedule = CronDataIntervalTimetable(job.schedule or "0 0 * * *", timezone=job.timezone)
    with DAG(
        dag_id=f"{job.job_id}_outcomes",
        description=f"Realised performance of {job.job_id}'s predictions once their outcomes arrive",
        schedule=schedule,
        start_date=dt.datetime.combine(job.start_date, dt.time(), tzinfo=job.tz),
        catchup=False,
        tags=[TAG, *job.tags],
        doc_md=__doc__,
        default_args={"owner": job.owner, "retries": job.retries,
                      "retry_delay": dt.timedelta(minutes=job.retry_delay_minutes)},
        params={"partition_date": Param(
            None, type=["null", "string"], format="date", title="Partition to evaluate",
            description="The partition whose predictions are judged (its outcomes are dated "
            f"{job.outcomes.horizon_days if job.outcomes else 0} day(s) later). Empty: the last complete day "
            "minus outcomes.horizon_days.")},
    ) as dag:

        @task(task_id="evaluate")
        def run(**context: Any) -> dict[str, Any]:
            return call(evaluate, str(path), context)

        @task(task_id="announce_breach", outlets=[breach_asset(job.job_id)], retries=0)
        def announce(evaluated: dict[str, Any], **context: Any) -> dict[str, Any]:
            """An event of <job_id>.breach for a performance breach or a decisive verdict; skipped otherwise."""
            return emit_breach(job.job_id, evaluated["breaches"], context)

        announce(run())
    return dag


for _job_id, _job in load_jobs(jobs_dir()).jobs.items():
    if _job.outcomes is not None and _job.output.table:
        globals()[f"{_job_id}_outcomes"] = build(_job, jobs_dir() / f"{_job_id}.yaml")
