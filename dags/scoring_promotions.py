"""``<job_id>_promote``: the promotion gate as a DAG, one per job that scores other versions beside its champion.

A job with ``model.challengers`` or ``model.split`` gets a DAG of one task, triggered by hand (no schedule), whose
form asks for the version to promote (a version number or an alias; default the job's first challenger or arm),
whether to promote only if the realised comparison says it is better (default yes) and why. The task does what
``scoring models promote NAME --to-challenger X --if-better --job JOB --reason ...`` does
(``pipeline.promotion.promote``): it promotes only when the newest verdict of that version against the current
champion is 'better' at the job's ``verdict.confidence`` with ``verdict.min_rows`` labelled rows on each side, and
every promotion and refusal is a row of ``scoring_model_audit`` in the registry database, with the user who
triggered the run, the run id and source ``dag``. A refusal fails the task at once (no retry: the figures will
not change by asking again), with the figures and the next step in its log. Unticking ``if_better`` is a person's
override, audited as one.

Tagged ``scoring-promotion`` (not ``scoring``: that tag makes the plugins treat a DAG as a job's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from _scoring.factory import airflow_connection, call
from airflow.sdk import DAG, Param, task

from pipeline.config import JobConfig, load_jobs
from pipeline.settings import jobs_dir


def promote(job_id: str, model_name: str, alias: str, params: dict[str, Any], context: Any) -> dict[str, Any]:
    """The gate (or the override) for the form's version; what was recorded. A refusal raises (fails the task)."""
    from pipeline import promotion
    from pipeline.registry import Registry

    dag_run = context["dag_run"]
    done = promotion.promote(
        Registry(resolver=airflow_connection), model_name, str(params["challenger"]), alias=alias,
        if_better=bool(params["if_better"]), job_id=job_id, reason=params.get("reason") or None,
        by=getattr(dag_run, "triggering_user_name", None) or "airflow", source="dag", run_id=dag_run.run_id,
        resolver=airflow_connection)
    print(done.text)
    if done.event == promotion.REFUSED:
        raise promotion.PromotionRefused(done)
    return {"event": done.event, "from_version": done.from_version, "to_version": done.to_version,
            "audit_id": done.audit_id}


def build(job: JobConfig) -> DAG:
    """The promotion DAG of one job."""
    refs = job.model.shadowed()
    alias = "champion" if job.model.ref.lstrip("v").isdigit() else job.model.ref
    with DAG(
        dag_id=f"{job.job_id}_promote",
        description=f"Promote a version of {job.model.name} to {alias} if job {job.job_id}'s realised comparison "
                    "says it is better (audited)",
        schedule=None,
        start_date=dt.datetime.combine(job.start_date, dt.time(), tzinfo=job.tz),
        catchup=False,
        max_active_runs=1,
        # not "scoring": the plugins treat a DAG with that tag as a job's (its run note names a partition)
        tags=["scoring-promotion", job.job_id],
        doc_md=__doc__,
        default_args={"owner": job.owner, "retries": 2, "retry_delay": dt.timedelta(minutes=1)},
        params={
            "challenger": Param(refs[0], type="string", examples=refs,
                                description=f"The version of {job.model.name} to promote: one this job scores "
                                            f"beside the champion ({', '.join(refs)}), or a version number."),
            "if_better": Param(True, type="boolean", description="Promote only if the realised comparison with "
                               "the current champion says it is better; untick for an override (audited as one)."),
            "reason": Param(None, type=["null", "string"], description="Why, in your words (recorded in the audit)."),
        },
    ) as dag:

        @task(task_id="promote")
        def run(**context: Any) -> dict[str, Any]:
            """``pipeline.promotion.promote`` with the form's values (a refusal fails the task, not retried)."""
            return call(promote, job.job_id, job.model.name, alias, dict(context["params"]), context)

        run()
    return dag


for _job_id, _job in load_jobs(jobs_dir()).jobs.items():
    if _job.model.shadowed():  # challengers or split: versions judged against the champion
        globals()[f"{_job_id}_promote"] = build(_job)
