"""Sample retraining DAG of the demo: scheduled on the demo job's breach asset, not on a clock.

``demo_retrain`` runs once per event of ``churn_daily.breach`` (a drift breach of a scoring run,
a performance breach or a decisive verdict of the ``churn_daily_outcomes`` DAG; the event's extra says
which, see ``dags/_scoring/assets.py``). Its one task trains the churn model on the latest labelled days
(the job's partitions joined to their outcomes) and registers it, in one call, as the ``challenger``,
never as the champion (``pipeline/demo/retrain.py``). The job lists ``challengers: [challenger]``: its
next run scores the new version in the champion's shadow (``scoring_shadow_comparisons``), and promotion
stays a decision (``scoring models promote churn --to-challenger challenger --if-better``).

Copy it for your own model: schedule on ``Asset(name="<your job>.breach", uri="scoring://<your job>/breach")``
(``_scoring.assets.breach_asset``; not ``Asset.ref``, whose runs get no event on Airflow 3.3), read
``triggering_asset_events`` for the breach, call your training, register as a challenger.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from _scoring.assets import breach_asset
from _scoring.factory import call, job_and_url
from airflow.sdk import DAG, task

from pipeline.config import load_jobs
from pipeline.settings import jobs_dir

DEMO_JOB = "churn_daily"  # pipeline.demo.retrain.DEMO_JOB (not imported here: parsing stays light)


def retrain(job_file: str, context: Any) -> dict[str, Any]:
    """The breach that triggered the run, then the demo's retraining; what was registered."""
    from pipeline.context import engine_for_job
    from pipeline.demo import retrain as demo_retrain
    from pipeline.errors import ConfigError

    job, url = job_and_url(job_file)
    events = [e for events in context["triggering_asset_events"].values() for e in events]
    if not events:
        raise ConfigError(f"{context['dag'].dag_id} runs on the events of {job.job_id}.breach: let a breach "
                          "trigger it (or post an event of that asset with a partition_date in its extra)")
    breach = dict(events[-1].extra or {})
    if "partition_date" not in breach:
        raise ConfigError(f"the {job.job_id}.breach event has no partition_date in its extra: {breach}")
    print(f"breach of {job.job_id}: {breach.get('kind')} on partition {breach['partition_date']}: "
          f"{breach.get('figures')}")
    mv = demo_retrain.retrain(job, breach, engine=engine_for_job(job, url))
    registered = {"model_name": mv.name, "version": mv.version, "alias": demo_retrain.ALIAS,
                  "breach": {k: breach.get(k) for k in ("kind", "partition_date", "versions")},
                  "metrics": mv.card.get("metrics"), "training": mv.card["training"]["data"]}
    print(f"registered {mv.name} v{mv.version} as {demo_retrain.ALIAS}: {registered}")
    return registered


def build(job_id: str, start_date: dt.datetime, owner: str, job_file: str) -> DAG:
    with DAG(
        dag_id="demo_retrain",
        schedule=[breach_asset(job_id)],  # the asset itself, not Asset.ref: see dags/_scoring/assets.py
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # two breaches close together: one training at a time, each registers its own version
        tags=["demo", "retrain", "example"],
        doc_md=__doc__,
        default_args={"owner": owner, "retries": 1},
    ) as dag:

        @task(task_id="retrain")
        def run(**context: Any) -> dict[str, Any]:
            return call(retrain, job_file, context)

        run()
    return dag


_job = load_jobs(jobs_dir()).jobs.get(DEMO_JOB)
if _job is not None:  # the demo job is there (the shipped jobs folder, or a test's): its retraining DAG
    demo_retrain = build(DEMO_JOB, dt.datetime.combine(_job.start_date, dt.time(), tzinfo=_job.tz), _job.owner,
                         str(jobs_dir() / f"{DEMO_JOB}.yaml"))
