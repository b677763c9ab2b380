"""``scoring_maintenance``: the reaper, every hour, for every job of the jobs folder.

An attempt killed on a day that is never run again (a worker lost mid-run, a ``scoring run`` killed)
would keep its ledger row ``running``, its staging folder and its load table. Every run of a job
already reaps the job's expired attempts at its start; this DAG does it for jobs that do not run
often (or whose schedule is paused): for each job file in ``SCORING_JOBS_DIR`` it marks the
expired running attempts of any day ``abandoned`` (their process is gone, or they were not seen
for ``SCORING_REAP_AFTER_SECONDS``, 6 h by default), removes their staging and drops their load tables
(``pipeline.lease.reap_jobs``). A live attempt is never touched, so the DAG is safe at any time;
``scoring runs --reap`` does the same from a shell.

Tagged ``scoring-maintenance`` and ``maintenance`` (not ``scoring``: that tag makes the plugins treat a
DAG as a job's). Paused at creation like every DAG: unpause it once. The task log lists what was
reaped, job by job. It fails (and retries) when a job's database could
not be reached; a broken job file is only logged here (its own ``config-error`` DAG says why).
See docs/operating.md, "The reaper".
"""

from __future__ import annotations

import datetime as dt

from _scoring.factory import airflow_connection
from airflow.sdk import DAG, task

from pipeline.errors import ScoringError

SCHEDULE = "17 * * * *"  # hourly, off the hour the scoring DAGs start on


def reap_all() -> str:
    """Reap every job of the jobs folder; what was reaped (raises when a job's database was not reachable)."""
    from pipeline import lease
    from pipeline.settings import jobs_dir

    sweep = lease.reap_jobs(jobs_dir(), resolver=airflow_connection, by="the scoring_maintenance DAG")
    text = sweep.text()
    print(text)
    if sweep.errors:
        raise ScoringError("the reaper could not look at job(s) " + "; ".join(
            f"{job_id} ({why})" for job_id, why in sorted(sweep.errors.items())) + ". The other jobs were reaped; "
            "the task's retry (and the next hourly run) tries again.")
    return text


with DAG(
    dag_id="scoring_maintenance",
    description="The reaper: expired attempts of every scoring job marked abandoned, their staging and load "
                "tables removed",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    # not "scoring": the plugins treat a DAG with that tag as a job's (its run note names a partition)
    tags=["scoring-maintenance", "maintenance"],
    doc_md=__doc__,
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
) as dag:

    @task(task_id="reap")
    def reap() -> str:
        """Reap every job (``pipeline.lease.reap_jobs``): the log lists each job's reaped attempts and load tables."""
        return reap_all()

    reap()
