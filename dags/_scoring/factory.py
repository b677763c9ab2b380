"""Build one Airflow DAG per scoring job file.

Every task body is a few lines that call ``pipeline.run``; pandas, scikit-learn and the
database drivers are imported inside the tasks, so parsing stays fast.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseSensorOperator, CronDataIntervalTimetable, Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from pipeline.config import JobConfig, load_jobs
from pipeline.partition import resolve_partition_date

log = logging.getLogger(__name__)

# Errors that a retry cannot fix: fail the task at once, keeping the message.
_FINAL = ("ConfigError", "InputError", "ValidationFailedError", "ModelNotFoundError",
          "ModelIntegrityError", "ReconciliationError", "PartitionNotFoundError", "PermanentDeliveryError",
          "DriftError", "AirflowNotFoundException")


def partition_of(context: Any, job: JobConfig) -> dt.date:
    """The partition a running task works on (rule in pipeline/partition.py)."""
    dag_run = context["dag_run"]
    return resolve_partition_date(
        tz=job.tz,
        param=context["params"].get("partition_date"),
        logical_date=getattr(dag_run, "logical_date", None),
        run_after=getattr(dag_run, "run_after", None),
        schedule=job.schedule,
    )


def db_url(job: JobConfig) -> str:
    """The job's output database: AIRFLOW_CONN_<ID> env var, else the Airflow connection."""
    from pipeline import store
    from pipeline.errors import ConfigError

    try:
        return store.resolve_url(job.output.connection)
    except ConfigError:  # no env var: ask Airflow's connections (secrets backend, metadata DB)
        c = airflow_connection(job.output.connection)
        return store.url_from_connection(c.conn_type, c.host, c.login, c.password, c.port, c.schema, c.extra)


def airflow_connection(conn_id: str) -> Any:
    """An Airflow connection (secrets backend, metadata DB) as a ``pipeline.connections.Conn``."""
    from airflow.sdk import BaseHook

    from pipeline.connections import Conn

    c = BaseHook.get_connection(conn_id)
    return Conn(conn_id, c.conn_type or "", c.host, c.login, c.password, c.port, c.schema, c.extra_dejson or {})


def job_and_url(job_file: str) -> tuple[JobConfig, str]:
    """The job as its file says now, and its output database URL (read at task run time)."""
    from pipeline.config import load_job

    job = load_job(job_file)
    return job, call(db_url, job)  # a missing connection is final: no retry can fix it


def start_run(context: Any, job: JobConfig, url: str) -> Any:
    """Open the run (ledger row, staging area) with the trigger form's params."""
    from pipeline import run

    params = context["params"]
    return call(run.start, job, run_id=context["run_id"], partition_date=partition_of(context, job),
                model_ref=params.get("model_ref") or None, dry_run=bool(params.get("dry_run")), url=url,
                mode=params.get("output_mode") or None, resend=bool(params.get("resend")))


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a pipeline stage; errors a retry cannot fix fail the task without retrying."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if type(exc).__name__ in _FINAL:
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


def drift_callback(job_file: str) -> Any:
    """finalize's on_success_callback: a drifted partition logs an ERROR alert and posts to the job's webhook."""

    def callback(context: Any) -> None:
        from pipeline import run

        job, url = job_and_url(job_file)
        run.drift_alert(job, partition_of(context, job), context["run_id"], url, airflow_connection)

    return callback


class PartitionSensor(BaseSensorOperator):
    """Wait (in reschedule mode) until the run's partition has data files."""

    template_fields = ()

    def __init__(self, *, job_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_file = job_file

    def _job(self) -> JobConfig:
        from pipeline.config import load_job

        return load_job(self.job_file)

    def poke(self, context: Any) -> bool:
        from pipeline import run

        job = self._job()
        day = partition_of(context, job)
        ready = run.partition_ready(job, day)
        self.log.info("partition %s at %s: %s", day, run.partition_path(job, day),
                      "ready" if ready else "not there yet")
        return ready

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            from pipeline import run

            job = self._job()
            day = partition_of(context, job)
            raise AirflowSensorTimeout(
                f"partition {day} of job {job.job_id} did not appear at "
                f"{run.partition_path(job, day)} within {job.source.wait_timeout_minutes:g} minutes "
                f"(no *.{job.source.format} files). Check the upstream export; once the files are "
                "there, clear this task to retry."
            ) from exc


def _output_doc(job: JobConfig) -> str:
    parts = []
    if job.output.table:
        parts.append(f"persist: table `{job.output.table}`")
    if job.output.push:
        sink = job.output.push.sink
        parts.append(f"push: {sink.kind} sink (connection `{getattr(sink, 'connection', None) or '-'}`)")
    return f"default `{job.output.mode}`; " + "; ".join(parts) + f"; ledger on `{job.output.connection}`"


def _doc(job: JobConfig, path: Path) -> str:
    return f"""
### {job.job_id}

{job.description}

| | |
|---|---|
| job file | `{path}` |
| source | `{job.source_root()}/{job.source.layout}` ({job.source.format}) |
| entity key | `{job.entity_key}` |
| model | `{job.model.name}` @ `{job.model.ref}` |
| output | {_output_doc(job)} |
| schedule | `{job.schedule}` ({job.timezone}) |
| max quarantined share | {job.validation.max_quarantine_share:.1%} |

**Partition rule.** The `partition_date` param wins; otherwise a run scores the date of its
logical date (the start of its cron interval: the 02:00 run on 21 Nov scores 20 Nov).

**Trigger by hand:** *Trigger DAG* shows a form: partition date, model version or alias,
output mode, full resend (push), dry run. Re-drive dead-lettered batches of a push:
`scoring redrive {job.job_id} --date D`, or clear the `push` task. **Backfill:** `airflow backfill create --dag-id {job.job_id} --from-date D1 --to-date D2`.
"""


def build_dag(job: JobConfig, path: Path) -> DAG:
    """The scoring DAG of one job."""
    tz_start = dt.datetime.combine(job.start_date, dt.time(), tzinfo=job.tz)
    schedule = CronDataIntervalTimetable(job.schedule, timezone=job.timezone) if job.schedule else None
    job_file = str(path)
    with DAG(
        dag_id=job.job_id,
        description=job.description or None,
        schedule=schedule,
        start_date=tz_start,
        catchup=job.catchup,
        tags=sorted({"scoring", job.output.mode, *job.tags}),
        doc_md=_doc(job, path),
        max_active_runs=4,
        default_args={
            "owner": job.owner,
            "retries": job.retries,
            "retry_delay": dt.timedelta(minutes=job.retry_delay_minutes),
            "retry_exponential_backoff": True,
        },
        params={
            "partition_date": Param(
                None, type=["null", "string"], format="date", title="Partition date",
                description="Day to score (YYYY-MM-DD). Empty: the run's logical date.",
            ),
            "model_ref": Param(
                None, type=["null", "string"], title="Model version or alias",
                description=f"e.g. 2 or champion. Empty: the job's ({job.model.ref}).",
            ),
            "output_mode": Param(
                job.output.mode, type="string", enum=job.output.modes, title="Output mode",
                description="persist: replace the partition in the predictions table; push: send the "
                "predictions to the job's sink and keep none.",
            ),
            "resend": Param(
                False, type="boolean", title="Full resend (push)",
                description="Send every batch again, even batches delivered before.",
            ),
            "dry_run": Param(
                False, type="boolean", title="Dry run",
                description="Run every stage, write or send no predictions.",
            ),
        },
    ) as dag:
        wait = PartitionSensor(
            task_id="wait_for_partition",
            job_file=job_file,
            mode="reschedule",
            poke_interval=job.source.poke_interval_seconds,
            timeout=job.source.wait_timeout_minutes * 60,
            retries=0,
        )

        @task
        def ingest(**context: Any) -> dict[str, Any]:
            from pipeline import run

            job_, url = job_and_url(job_file)
            spec = start_run(context, job_, url)
            call(run.ingest, job_, spec, url)
            return spec.to_dict()

        def stage_task(name: str) -> Any:
            @task(task_id=name)
            def _stage(spec: dict[str, Any]) -> dict[str, Any]:
                from pipeline import run
                from pipeline.staging import RunSpec

                job_, url = job_and_url(job_file)
                call(getattr(run, name), job_, RunSpec.from_dict(spec), url)
                return spec

            return _stage

        @task
        def push(spec: dict[str, Any]) -> dict[str, Any]:
            from pipeline import run
            from pipeline.staging import RunSpec

            job_, url = job_and_url(job_file)
            call(run.push, job_, RunSpec.from_dict(spec), url, airflow_connection)
            return spec

        @task.branch
        def choose_output(spec: dict[str, Any]) -> str:
            """The run's output mode (the form's override or the job's) picks persist or push."""
            return str(spec.get("mode") or job.output.mode)

        @task(trigger_rule="none_failed_min_one_success", on_success_callback=drift_callback(job_file))
        def finalize(spec: dict[str, Any]) -> dict[str, Any]:
            from pipeline import run
            from pipeline.staging import RunSpec

            job_, url = job_and_url(job_file)
            summary = call(run.finalize, job_, RunSpec.from_dict(spec), url)
            return {k: str(v) for k, v in summary.items()}

        @task
        def plan(**context: Any) -> list[dict[str, Any]]:
            """Sharded jobs: open the run, split the partition's files into shards (one spec each)."""
            from pipeline import run

            job_, url = job_and_url(job_file)
            spec = start_run(context, job_, url)
            _, shards = call(run.plan_shards, job_, spec)
            return [shard.to_dict() for shard in shards]

        @task
        def score_shard(shard: dict[str, Any]) -> dict[str, Any]:
            """One shard: ingest, validate, preprocess, score. A failed shard is retried alone."""
            from pipeline import run
            from pipeline.staging import RunSpec

            job_, url = job_and_url(job_file)
            return call(run.score_shard, job_, RunSpec.from_dict(shard), url)

        @task
        def combine(shards: list[dict[str, Any]]) -> dict[str, Any]:
            """Every shard succeeded: add up the counts, apply the threshold and drift to the partition."""
            from pipeline import run
            from pipeline.staging import RunSpec

            job_, url = job_and_url(job_file)
            root = RunSpec.from_dict({**shards[0], "shard": None})  # the run's spec, above its shards
            call(run.combine, job_, root, url)
            return root.to_dict()

        if job.source.shards > 1:  # mapped tasks score the shards, possibly on different workers
            planned = plan()
            wait >> planned
            scored = score_shard.expand(shard=planned)
            spec = combine(planned)
            scored >> spec
        else:
            spec = ingest()
            wait >> spec
            for name in ("validate", "preprocess", "score"):
                spec = stage_task(name)(spec)
        outputs = {"persist": stage_task("persist"), "push": push}
        if len(job.output.modes) == 1:  # one way out: no branch in the graph
            finalize(outputs[job.output.modes[0]](spec))
        else:
            branch = choose_output(spec)
            ends = [outputs[mode](spec) for mode in job.output.modes]
            branch >> ends
            done = finalize(spec)
            ends >> done
    return dag


def broken_dag(path: Path, error: str) -> DAG:
    """A visible stand-in for a job file that does not validate."""
    with DAG(
        dag_id=path.stem,
        schedule=None,
        tags=["scoring", "config-error"],
        doc_md=f"### Broken job file\n\n```\n{error}\n```\n\nFix `{path}`; the DAG comes back on the next parse.",
        default_args={"owner": "ml-platform", "retries": 0},
    ) as dag:

        @task(task_id="config_error")
        def config_error() -> None:
            raise AirflowFailException(error)

        config_error()
    return dag


def build_all(folder: Path) -> list[DAG]:
    """Every job file's DAG; broken files log at ERROR and become 'config-error' DAGs."""
    loaded = load_jobs(folder)
    dags = [build_dag(job, folder / f"{job_id}.yaml") for job_id, job in loaded.jobs.items()]
    for path, error in loaded.errors.items():
        log.error("scoring job file %s is invalid:\n%s", path, error)
        if path.stem not in loaded.jobs:
            dags.append(broken_dag(path, error))
    return dags
