"""Example downstream DAGs: one per persist job, scheduled on its predictions asset (not on a clock).

``<job_id>_summary`` runs once per partition the scoring DAG publishes: the scoring DAG's
``announce_persist`` task emits a partitioned asset event (partition key: the date; extra: the
model version and the row counts, see ``dags/_scoring/assets.py``), and this DAG's
``PartitionedAssetTimetable`` makes a run for that partition key. Its one task reads the day's
row of ``<table>_daily`` and checks it against the event: the shape of a report, an export or
a model-monitoring job that waits on the nightly predictions. Copy it for your own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from _scoring.assets import predictions_asset
from _scoring.factory import call, job_and_url
from airflow.sdk import DAG, PartitionedAssetTimetable, task

from pipeline.config import JobConfig, load_jobs
from pipeline.errors import ConfigError, ScoringError
from pipeline.settings import jobs_dir


def summarize(job_file: str, context: Any) -> dict[str, Any]:
    """The published partition's summary, checked against the asset event that triggered the run."""
    from pipeline.partition import parse_date
    from pipeline.store import analyst, engines

    job, url = job_and_url(job_file)
    key = getattr(context["dag_run"], "partition_key", None)
    if not key:
        raise ConfigError(f"{context['dag'].dag_id} runs on the partitioned asset events of {job.job_id}'s "
                          "predictions: trigger it with a partition key (the date, YYYY-MM-DD), or let the next "
                          "published partition run it")
    day = parse_date(key[:10], "the run's partition key")
    events = [e for events in context["triggering_asset_events"].values() for e in events]
    extra = events[-1].extra if events else {}
    rows = analyst.daily_summary(engines.engine_for(url), str(job.output.table), day, job.output.schema_)
    written = sum(int(r["rows_scored"]) for r in rows)
    if extra.get("rows_written") is not None and int(extra["rows_written"]) != written:
        raise ScoringError(f"partition {day} of {job.output.table}: the asset event says {extra['rows_written']} "
                           f"rows were written, the table holds {written}")
    summary = {"partition_date": day.isoformat(), "rows": written, "by_model_version": rows,
               "event": extra}
    print(f"summary of {job.output.table} for {day}: {summary}")
    return summary


def build(job: JobConfig, path: Path) -> DAG:
    with DAG(
        dag_id=f"{job.job_id}_summary",
        schedule=PartitionedAssetTimetable(assets=predictions_asset(job.job_id)),
        start_date=dt.datetime.combine(job.start_date, dt.time(), tzinfo=job.tz),
        catchup=False,
        tags=["scoring", "summary", "example"],
        doc_md=__doc__,
        default_args={"owner": job.owner, "retries": 1},
    ) as dag:

        @task(task_id="summarize")
        def run(**context: Any) -> dict[str, Any]:
            return call(summarize, str(path), context)

        run()
    return dag


for _job_id, _job in load_jobs(jobs_dir()).jobs.items():
    if "persist" in _job.output.modes:
        globals()[f"{_job_id}_summary"] = build(_job, jobs_dir() / f"{_job_id}.yaml")
