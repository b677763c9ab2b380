"""Build one Airflow DAG per scoring job file, following the step table of ``pipeline.steps``.

Every task is made by ``make_task``: it loads the job file, resolves the output database
and runs a small ``do_*`` body that calls ``pipeline.run`` / ``pipeline.sharding``. pandas,
scikit-learn and the database drivers are imported inside the tasks, so parsing stays fast.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import (
    DAG,
    AsyncCallback,
    BaseSensorOperator,
    CronDataIntervalTimetable,
    DeadlineAlert,
    DeadlineReference,
    Param,
    PartitionedAssetTimetable,
    task,
)
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
)

from _scoring.assets import (
    breach_asset,
    do_announce,
    do_announce_breach,
    output_asset,
    source_asset,
)
from pipeline import steps
from pipeline.config import JobConfig, load_jobs
from pipeline.errors import ScoringError, is_data_error
from pipeline.partition import run_partition

log = logging.getLogger(__name__)


def partition_of(context: Any, job: JobConfig) -> dt.date:
    """The partition a running task works on (rule in pipeline/partition.py)."""
    return call(run_partition, context["dag_run"], tz=job.tz, schedule=job.schedule,
                param=context["params"].get("partition_date")).day


def airflow_connection(conn_id: str) -> Any:
    """An Airflow connection (secrets backend, metadata DB) as a ``pipeline.connections.Conn``."""
    from airflow.sdk import BaseHook

    from pipeline.connections import from_airflow

    return from_airflow(conn_id, BaseHook.get_connection(conn_id))


def job_and_url(job_file: str) -> tuple[JobConfig, str]:
    """The job as its file says now, and its output database URL (``AIRFLOW_CONN_<ID>``, else Airflow's)."""
    from pipeline.config import load_job
    from pipeline.store import engines

    job = load_job(job_file)
    # a missing connection is final: no retry can fix it
    return job, call(engines.resolve_url, job.output.connection, airflow_connection)


def retryable(exc: BaseException) -> bool:
    """Whether a task's retry can fix this error (the exception class says; see pipeline.errors)."""
    if isinstance(exc, AirflowNotFoundException):  # a connection that is not defined
        return False
    # a database's refusal of the data itself (SQLSTATE class 22/23) fails the same way on every try
    return exc.retryable if isinstance(exc, ScoringError) else not is_data_error(exc)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call into the pipeline; an error a retry cannot fix fails the task at once, keeping the message."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        if not retryable(exc):
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


# -- what each task does (job, database URL, upstream XCom value, Airflow context) ---------
def _context(job: JobConfig, url: str, spec: dict[str, Any]) -> Any:
    from pipeline import run
    from pipeline.staging import RunSpec

    return run.context(job, RunSpec.from_dict(spec), url, airflow_connection)


def _start(job: JobConfig, url: str, context: Any) -> Any:
    """Open the run (ledger row, staging area) with the trigger form's params."""
    from pipeline import run

    params = context["params"]
    return run.start(job, run_id=context["run_id"], partition_date=partition_of(context, job),
                     model_ref=params.get("model_ref") or None, dry_run=bool(params.get("dry_run")), url=url,
                     mode=params.get("output_mode") or None, resend=bool(params.get("resend")),
                     resolver=airflow_connection)


def do_ingest(job: JobConfig, url: str, _: Any, context: Any) -> dict[str, Any]:
    """Open the run, then ingest: the first task of an unsharded run."""
    from pipeline import run

    spec = _start(job, url, context)
    run.run_step(_context(job, url, spec.to_dict()), steps.INGEST)
    return spec.to_dict()


def do_step(step: steps.Step) -> Any:
    """A task body that runs one step on the run's staged data and hands the spec on."""

    def work(job: JobConfig, url: str, spec: dict[str, Any], _: Any) -> dict[str, Any]:
        from pipeline import run

        run.run_step(_context(job, url, spec), step)
        return spec

    work.__doc__ = f"{step.name}: {step.doc}."
    return work


def do_plan(job: JobConfig, url: str, _: Any, context: Any) -> list[dict[str, Any]]:
    """Sharded jobs: open the run, split the partition's files into shards (one spec each)."""
    from pipeline import sharding

    spec = _start(job, url, context)
    _, shards = sharding.plan(_context(job, url, spec.to_dict()))
    return [shard.to_dict() for shard in shards]


def do_score_shard(job: JobConfig, url: str, shard: dict[str, Any], _: Any) -> dict[str, Any]:
    """One shard: the scoring steps. A failed shard is retried alone."""
    from pipeline import run

    return run.score_shard(_context(job, url, shard))


def do_combine(job: JobConfig, url: str, shards: list[dict[str, Any]], _: Any) -> dict[str, Any]:
    """Every shard succeeded: add up the counts, apply the threshold and drift to the partition."""
    from pipeline import run

    root = {**shards[0], "shard": None}  # the run's spec, above its shards
    run.run_step(_context(job, url, root), steps.COMBINE)
    return root


def do_finalize(job: JobConfig, url: str, spec: dict[str, Any], _: Any) -> dict[str, str]:
    from pipeline import run

    return {k: str(v) for k, v in run.finalize(_context(job, url, spec)).items()}


def do_check_quality(job: JobConfig, url: str, _: Any, context: Any) -> None:
    """check_quality: fails, naming the breach, when the published partition carries a flagged one (drift,
    quarantine share; ``pipeline.quality``). The partition stays published and announced."""
    from pipeline import quality

    quality.check(job, partition_of(context, job), context["run_id"], url, airflow_connection)


CHECKS_DONE_DOC = """Ends the run once check_quality has finished, passed or failed. A failed check is a warning
(the partition is published and announced, like an asset check of severity warn): this last task keeps the
run green while check_quality shows red in the grid. A failure before the check still fails the run, through
the announce tasks. The breach is also in the run note, the report, the ledger's `breach` and the metrics."""


def make_task(job_file: str, task_id: str, work: Any, **task_kwargs: Any) -> Any:
    """An Airflow task that loads the job file, resolves its database and runs ``work`` through ``call``."""

    @task(task_id=task_id, doc=(work.__doc__ or "").strip() or None, **task_kwargs)
    def _task(upstream: Any = None, **context: Any) -> Any:
        job, url = job_and_url(job_file)
        return call(work, job, url, upstream, context)

    return _task


def drift_callback(job_file: str) -> Any:
    """finalize's on_success_callback: a drifted partition logs an ERROR alert and posts to the job's webhook."""

    def callback(context: Any) -> None:
        from pipeline import run

        job, url = job_and_url(job_file)
        run.drift_alert(job, partition_of(context, job), context["run_id"], url, airflow_connection)

    return callback


class PartitionSensor(BaseSensorOperator):
    """Wait (in reschedule mode) until the run's partition has data files; a day long past its expected
    arrival (``source.expected_by`` + ``wait_timeout_minutes``) with none is recorded ``missing`` at once."""

    template_fields = ()

    def __init__(self, *, job_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_file = job_file

    def _job(self) -> JobConfig:
        from pipeline.config import load_job

        return load_job(self.job_file)

    def poke(self, context: Any) -> bool:
        from pipeline.sources import source_for

        job = self._job()
        day = partition_of(context, job)
        source = source_for(job)
        if source.ready(day, airflow_connection):
            self.log.info("partition %s %s", day, source.where(day, ready=True))
            return True
        now = dt.datetime.now(dt.UTC)
        first = context["ti"].get_first_reschedule_date(context) or now
        due = partition_due(job, day)
        state = due.state(now)
        if state == "missing":  # long past its expected arrival: no point in waiting hours to say so
            text = record_missing(job, day, context, (now - first).total_seconds())
            raise AirflowFailException(text)
        give_up = min(due.give_up, first + dt.timedelta(seconds=float(self.timeout)))
        when = due.waiting(now, job.timezone)
        self.log.info("partition %s %s; %s; next look at %s (in %gs); gives up at %s (source.expected_by, "
                      "wait_timeout_minutes: %g)", day, source.where(day, ready=False), when,
                      f"{now + dt.timedelta(seconds=float(self.poke_interval)):%Y-%m-%d %H:%M:%S} UTC",
                      float(self.poke_interval), _local(give_up, job), job.source.wait_timeout_minutes)
        return False

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            job = self._job()
            day = partition_of(context, job)
            first = context["ti"].get_first_reschedule_date(context)
            waited = (dt.datetime.now(dt.UTC) - first).total_seconds() if first else float(self.timeout)
            record_missing(job, day, context, waited)
            raise AirflowSensorTimeout(timeout_message(job, day)) from exc


def partition_due(job: JobConfig, day: dt.date) -> Any:
    """When ``day``'s data is expected and when the sensor gives up (``pipeline.partition.due``)."""
    from pipeline.partition import due

    return due(day, job.tz, job.source.expected_time(), job.source.expected_days_after,
               job.source.wait_timeout_minutes)


def _local(when: dt.datetime, job: JobConfig) -> str:
    return f"{when.astimezone(job.tz):%Y-%m-%d %H:%M} {job.timezone}"


def record_missing(job: JobConfig, day: dt.date, context: Any, waited_s: float) -> str:
    """Write the run's ``missing`` ledger row (and its metrics); the text it carries, for the task's error."""
    from pipeline import never_ran, run
    from pipeline.sources import source_for

    due = partition_due(job, day)
    where, step = source_for(job).missing(day)
    text = (f"no data for {day} (expected by {_local(due.expected, job)}); waited {waited_s / 60:.1f} min: {where}. "
            f"{step}; once the data is there, clear wait_for_partition to score the day.")
    params = context["params"]
    try:
        from pipeline.store import engines

        url = engines.resolve_url(job.output.connection, airflow_connection)
        never_ran.record(run.engine(job, url), job_id=job.job_id, run_id=context["run_id"], partition_date=day,
                         outcome="missing", error=text, mode=params.get("output_mode") or job.output.mode,
                         dry_run=bool(params.get("dry_run")), model_name=job.model.name)
    except Exception:  # noqa: BLE001 - the task fails with the reason either way; the log says the row is not there
        log.exception("could not record partition %s of job %s as missing in the ledger", day, job.job_id)
    return text


def timeout_message(job: JobConfig, day: dt.date) -> str:
    """wait_for_partition's message when it gives up: what it looked for, where, for how long."""
    from pipeline.sources import source_for

    return source_for(job).timeout_message(day)


def _output_doc(job: JobConfig) -> str:
    parts = []
    if job.output.table:
        parts.append(f"persist: table `{job.output.table}`")
    if job.output.push:
        sink = job.output.push.sink
        parts.append(f"push: {sink.kind} sink (connection `{getattr(sink, 'connection', None) or '-'}`)")
    return f"default `{job.output.mode}`; " + "; ".join(parts) + f"; ledger on `{job.output.connection}`"


def _source_doc(job: JobConfig) -> str:
    """The source as the job file sets it (its kind and where it reads); not ``pipeline.sources``, whose readers
    load pyarrow: parsing stays light."""
    src = job.source
    shown = [f"{name} `{' '.join(str(getattr(src, name)).split())[:80]}`" for name in SOURCE_DOC_FIELDS
             if name in src.model_fields_set]
    return f"`{src.kind}`" + (": " + ", ".join(shown) if shown else "")


SOURCE_DOC_FIELDS = ("path", "layout", "format", "query_file", "query", "connection", "ready_query")


def _doc(job: JobConfig, path: Path) -> str:
    return f"""
### {job.job_id}

{job.description}

| | |
|---|---|
| job file | `{path}` |
| source | {_source_doc(job)} |
| entity key | `{job.entity_key}` |
| model | `{job.model.name}` @ `{job.model.ref}` |
| output | {_output_doc(job)} |
| schedule | {f"the partitioned events of asset `{job.source.asset}`" if job.source.asset else f"`{job.schedule}`"} ({job.timezone}) |
| max quarantined share | {job.validation.max_quarantine_share:.1%} |

**Partition rule.** The `partition_date` param wins (refused in a backfill, whose logical
dates choose the days). Otherwise a run scores its logical date's day once that day is over:
a scheduled run's logical date is the start of its cron interval (the 02:00 run on 21 Nov
scores 20 Nov, so `backfill__2026-11-21T02:00`-style ids name the interval's end, not the
partition); a trigger from the form with the logical date it fills in (now) scores the last
complete day instead, never today. Each run's **note** says which day it scores (written when
the scheduler starts it), as do the first task's log and XCom.

**Trigger by hand:** *Trigger DAG* shows a form: partition date, model version or alias,
the output mode (jobs with two), full resend (jobs that push), dry run. Re-drive dead-lettered batches of a push:
`scoring redrive {job.job_id} --date D`, or clear the `push` task. **Backfill:** `airflow backfill create --dag-id {job.job_id} --from-date D1 --to-date D2`.
"""


def params(job: JobConfig) -> dict[str, Param]:
    """The trigger form: partition date, model version or alias, dry run; the output mode only when the
    job has two, and full resend only when it can push. Switches are typed boolean-or-null: the form marks
    a field required unless its type admits null, and a switch always has a value."""
    form = {
        "partition_date": Param(
            None, type=["null", "string"], format="date", title="Partition date",
            description="Day to score (the date picker; YYYY-MM-DD in an API or CLI conf). Empty: the last complete "
            "day at the moment of the trigger "
            "(what the schedule would score then), or the logical date's day if that day is over.",
        ),
        "model_ref": Param(
            None, type=["null", "string"], title="Model version or alias",
            description=f"Empty: the job's ({job.model.ref}). Registered: {_model_refs(job.model.name)}.",
        ),
    }
    if len(job.output.modes) > 1:
        form["output_mode"] = Param(
            job.output.mode, type="string", enum=job.output.modes, title="Output mode",
            description="persist: replace the partition in the predictions table; push: send the "
            "predictions to the job's sink and keep none.",
        )
    if "push" in job.output.modes:
        form["resend"] = Param(
            False, type=["boolean", "null"], title="Full resend (push)",
            description="Send every batch again, even batches delivered before.",
        )
    form["dry_run"] = Param(
        False, type=["boolean", "null"], title="Dry run", description="Run every stage, write or send no predictions.")
    return form


def _model_refs(name: str) -> str:
    """The versions and aliases of a model when the DAG was parsed (the registry's JSON files only)."""
    from pipeline.model import refs

    try:
        versions, aliases = refs(name)
    except Exception:  # noqa: BLE001 - an odd registry file must not take every DAG down at parse time
        return "unknown (registry unreadable)"
    listed = [f"v{v}" for v in versions] + [f"{a} (v{v})" for a, v in sorted(aliases.items())]
    return ", ".join(listed) or f"none yet (scoring models register {name} ...)"


def dag_arguments(job: JobConfig, path: Path) -> dict[str, Any]:
    """The DAG's own settings (all but its schedule): start, tags, owner, retries, docs, the trigger form."""
    return {
        "dag_id": job.job_id,
        "description": job.description or None,
        "start_date": dt.datetime.combine(job.start_date, dt.time(), tzinfo=job.tz),
        "catchup": job.catchup,
        "tags": sorted({"scoring", job.output.mode, *job.tags}),
        "doc_md": _doc(job, path),
        "max_active_runs": 4,
        "default_args": {"owner": job.owner, "retries": job.retries,
                         "retry_delay": dt.timedelta(minutes=job.retry_delay_minutes),
                         "retry_exponential_backoff": True},
        "params": params(job),
        **({"deadline": deadline_alert(job, path)} if job.deadline else {}),
    }


def deadline_alert(job: JobConfig, path: Path) -> DeadlineAlert:
    """A scheduled run not published by its partition's day + days_after at publish_by: pipeline.deadlines.missed."""
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=job.deadline_interval(),
                         callback=AsyncCallback("pipeline.deadlines.missed", kwargs={"job_file": str(path)}),
                         name=f"{job.job_id} publish_by {job.deadline.publish_by if job.deadline else ''}")


@task.branch
def choose_output(spec: dict[str, Any]) -> str:
    """The run's output mode (the form's override or the job's) picks persist or push."""
    return str(spec["mode"])


def build_dag(job: JobConfig, path: Path) -> DAG:
    """The scoring DAG of one job: the steps of ``pipeline.steps``, one task each."""
    job_file = str(path)
    schedule = CronDataIntervalTimetable(job.schedule, timezone=job.timezone) if job.schedule else None
    if job.source.asset:  # a run per partitioned event of the upstream's asset, for its day
        schedule = PartitionedAssetTimetable(assets=source_asset(job))
    with DAG(schedule=schedule, **dag_arguments(job, path)) as dag:
        wait = PartitionSensor(task_id="wait_for_partition", job_file=job_file, mode="reschedule",
                               poke_interval=job.source.poke_interval_seconds,
                               timeout=job.source.wait_timeout_minutes * 60, retries=0)
        if job.source.shards > 1:  # mapped tasks score the shards, possibly on different workers
            planned = make_task(job_file, steps.PLAN.name, do_plan)()
            scored = make_task(job_file, steps.SCORE_SHARD.name, do_score_shard).expand(upstream=planned)
            spec = make_task(job_file, steps.COMBINE.name, do_combine)(planned)
            wait >> planned
            scored >> spec
        else:
            spec = make_task(job_file, steps.INGEST.name, do_ingest)()
            wait >> spec
            for step in steps.SCORING[1:]:
                spec = make_task(job_file, step.name, do_step(step))(spec)
        outputs = [make_task(job_file, mode, do_step(steps.OUTPUTS[mode])) for mode in job.output.modes]
        done = make_task(job_file, steps.FINALIZE.name, do_finalize, trigger_rule="none_failed_min_one_success",
                         on_success_callback=drift_callback(job_file))
        if len(outputs) == 1:  # one way out: no branch in the graph
            summary = done(outputs[0](spec))
        else:
            branch = choose_output(spec)
            ends = [output(spec) for output in outputs]
            branch >> ends
            summary = done(spec)
            ends >> summary
        for mode in job.output.modes:  # the published partition as an asset event (see dags/_scoring/assets.py)
            make_task(job_file, f"announce_{mode}", do_announce(mode), outlets=[output_asset(job, mode)],
                      retries=0)(summary)
        # a drift breach, flagged or blocked (finalize never ran), is an event of <job_id>.breach
        summary >> make_task(job_file, "announce_breach", do_announce_breach(partition_of, airflow_connection),
                             outlets=[breach_asset(job.job_id)], retries=0, trigger_rule="all_done")()
        # a flagged breach shows as a failed check task; checks_done keeps the run green (it published)
        checked = make_task(job_file, "check_quality", do_check_quality, retries=0)(summary)
        checked >> EmptyOperator(task_id="checks_done", trigger_rule="all_done", doc_md=CHECKS_DONE_DOC)
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
