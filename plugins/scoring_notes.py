"""Airflow plugin: every scoring run says which partition it scores and how it ended, in its note; runs
marked failed or skipped by hand leave a ledger row.

The runs list and the grid show a run's id and logical date, neither of which is the day a
scoring run scores (a scheduled run's logical date is the start of its interval, a form
trigger's is the moment of the click, and ``partition_date`` in the conf overrides both; a
scheduled or backfill run's *id* names its ``run_after``, the end of that interval). When
the scheduler starts a run of a DAG tagged ``scoring``, this listener applies the same rule
as the run itself (``pipeline.partition.resolve_partition_date``) and writes the answer as
the run's note, shown at the top of the run's page. When the run ends, the note gets the
outcome from the ledger (published N rows, dry run, missing, failed at stage S, flagged).
An operator's own note is never overwritten. ``airflow dags test`` starts no scheduler, so
its runs get no note.

Marked by hand (the UI's *Mark as failed / skipped*, or the REST API), a run or task of a
scoring DAG fires Airflow's listener hooks in the API server (``on_dag_run_failed``,
``on_task_instance_failed``, ``on_task_instance_skipped``, each with a "manually set"
message or no previous state); this listener writes the run's ledger row for it
(``pipeline.never_ran``: status failed at stage ``marked_failed``, or ``skipped``) and its metrics.

Airflow finds this file through ``[core] plugins_folder``, as it finds ``scoring_reports.py``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any
from zoneinfo import ZoneInfo

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.interval import CronDataIntervalTimetable

log = logging.getLogger(__name__)
TAG = "scoring"


def _day_and_how(dag: Any, dag_run: Any) -> tuple[Any, str]:
    """The partition a run scores and where that came from (ConfigError when refused)."""
    from pipeline.partition import run_partition

    tz = ZoneInfo(getattr(dag.timezone, "name", None) or "UTC")
    timetable = getattr(dag, "timetable", None)
    cron = timetable.summary if isinstance(timetable, CronDataIntervalTimetable) else None
    chosen = run_partition(dag_run, tz=tz, schedule=cron, param=(dag_run.conf or {}).get("partition_date"))
    return chosen.day, chosen.how


def run_id_note(run_id: str, run_type: str, day: Any) -> str:
    """For a scheduled or backfill run whose id names another day than its partition: why."""
    stamp = run_id.partition("__")[2][:10]
    if run_type not in ("scheduled", "backfill") or not stamp or stamp == str(day):
        return ""
    return (f" The run id's date ({stamp}) is when the run was due (run_after: the end of the interval it "
            "covers), not the partition.")


def partition_note(dag: Any, dag_run: Any, outcome: str = "") -> str | None:
    """The note for a run of a scoring DAG (None for other DAGs): its day, then ``outcome`` when it ended, then
    why its run id names another day."""
    from pipeline.errors import ConfigError

    if TAG not in set(getattr(dag, "tags", None) or ()):
        return None
    try:
        day, how = _day_and_how(dag, dag_run)
    except ConfigError as exc:
        return f"Refused: {exc}"[:1000]
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    return (f"Scores partition {day.isoformat()} (from {how})." + (f" {outcome}" if outcome else "")
            + run_id_note(str(dag_run.run_id), run_type, day))[:1000]


def outcome_text(row: dict[str, Any] | None) -> str:
    """How a run ended, from its latest ledger row (None: it never wrote one)."""
    if row is None:
        return "Outcome: no ledger row (the run stopped before it opened one): see the first task's log."
    status, stage = row.get("status"), row.get("failed_stage")
    version = f"model {row.get('model_name')} v{row['model_version']}" if row.get("model_version") else ""
    breach = f" Flagged: {row['breach']} (see check_quality and the report)." if row.get("breach") else ""
    if status == "success":
        dry = str(row.get("dry_run")).lower() in ("true", "1")
        if dry:
            return f"Outcome: dry run, {row.get('rows_scored') or 0:,} rows scored, none written ({version}).{breach}"
        if row.get("mode") == "push":
            return f"Outcome: pushed {row.get('rows_delivered') or 0:,} rows ({version}).{breach}"
        return f"Outcome: published {row.get('rows_written') or 0:,} rows ({version}).{breach}"
    if status == "missing":
        return f"Outcome: missing. {str(row.get('error') or '')[:400]}"
    if status == "skipped" or stage == "marked_failed":  # the error says what was marked, and what to do
        return f"Outcome: {str(row.get('error') or 'marked by hand')[:400]}"
    if status == "failed":
        return f"Outcome: failed at stage {stage}: {str(row.get('error') or '')[:400]}"
    return f"Outcome: ledger status {status} (attempt {row.get('attempt')})."


def _job_and_engine(dag_id: str) -> tuple[Any, Any]:
    """A scoring DAG's job and ledger database, from this Airflow process (API server, scheduler)."""
    from pipeline import run
    from pipeline.connections import from_airflow
    from pipeline.store import engines

    def resolver(conn_id: str) -> Any:
        from airflow.models.connection import Connection

        return from_airflow(conn_id, Connection.get_connection_from_secrets(conn_id))

    job = run.find_job(dag_id)
    return job, run.engine(job, engines.resolve_url(job.output.connection, resolver))


def _ours(dag_run: Any) -> bool:
    """Whether the run has no note, or the one this listener wrote: an operator's note (UI or API) carries its
    user, ours none; an operator who edits ours makes it theirs."""
    note = getattr(dag_run, "dag_run_note", None)
    return note is None or getattr(note, "user_id", None) is None


def _scoring(dag: Any) -> bool:
    return TAG in set(getattr(dag, "tags", None) or ())


def note_outcome(dag_run: Any) -> None:
    """Add the run's outcome (from the ledger) to its note, unless an operator wrote the note."""
    from pipeline import ledger

    dag = dag_run.dag
    if dag is None or not _scoring(dag) or not _ours(dag_run):
        return
    _, engine = _job_and_engine(dag_run.dag_id)
    try:
        row = ledger.get(engine, dag_run.dag_id, dag_run.run_id)
    except KeyError:
        row = None
    dag_run.note = partition_note(dag, dag_run, outcome_text(row))


def record_by_hand(dag_id: str, dag_run: Any, outcome: str, what: str) -> None:
    """Write the ledger row of a run (or one of its tasks) marked ``outcome`` by hand (``pipeline.never_ran``)."""
    from pipeline import never_ran
    from pipeline.errors import ConfigError
    from pipeline.partition import run_partition

    job, engine = _job_and_engine(dag_id)
    conf = dag_run.conf or {}
    try:
        day = run_partition(dag_run, tz=job.tz, schedule=job.schedule, param=conf.get("partition_date")).day
    except ConfigError:
        log.info("run %s of %s was refused (no partition): nothing to record", dag_run.run_id, dag_id)
        return
    error = (f"marked {'failed' if outcome == 'marked_failed' else 'skipped'} by hand in Airflow: {what}, run "
             f"{dag_run.run_id}, partition {day}. Clear the run to score the partition again.")
    never_ran.record(engine, job_id=dag_id, run_id=dag_run.run_id, partition_date=day, outcome=outcome, error=error,
                     mode=conf.get("output_mode") or job.output.mode, dry_run=bool(conf.get("dry_run")),
                     model_name=job.model.name)


def _manual(message: Any) -> bool:
    return "manually set" in str(message or "")


@hookimpl
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    """Write the partition note when the scheduler starts a run (never over an operator's note)."""
    try:
        if dag_run.note:
            return
        note = partition_note(dag_run.dag, dag_run)
        if note:
            dag_run.note = note  # committed with the scheduler's own change of the run's state
    except Exception:  # noqa: BLE001 - a note must never stop the scheduler from starting a run
        log.exception("could not write the partition note of %s", getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """The run ended well: its note says what it published (or that it was a dry run, or flagged)."""
    try:
        note_outcome(dag_run)
    except Exception:  # noqa: BLE001 - a note must never stop the scheduler
        log.exception("could not write the outcome note of %s", getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    """The run failed: a run marked failed by hand gets its ledger row; the note says the outcome."""
    try:
        if _manual(msg) and dag_run.dag is not None and _scoring(dag_run.dag):
            record_by_hand(dag_run.dag_id, dag_run, "marked_failed", "the run")
        note_outcome(dag_run)
    except Exception:  # noqa: BLE001 - a ledger row or note must never stop the scheduler or the API
        log.exception("could not record the failed run %s", getattr(dag_run, "run_id", "?"))


def _task_marked(task_instance: Any, outcome: str) -> None:
    dag_run = getattr(task_instance, "dag_run", None)
    if dag_run is None:
        return
    try:
        from pipeline import run

        run.find_job(task_instance.dag_id)  # a scoring job's DAG: its job file exists
    except Exception:  # noqa: BLE001 - not a scoring DAG
        return
    record_by_hand(task_instance.dag_id, dag_run, outcome,
                   f"task {task_instance.task_id} (marked itself, or stopped when its run was marked)")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    """A task marked failed by hand (the API's "manually set" message): the run's ledger row says so."""
    if not _manual(error):
        return  # a task that failed by itself: the pipeline wrote its row (or the sensor its 'missing' one)
    try:
        _task_marked(task_instance, "marked_failed")
    except Exception:  # noqa: BLE001 - never fail the API request that marked the task
        log.exception("could not record the task %s marked failed", getattr(task_instance, "task_id", "?"))


@hookimpl
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    """A task marked skipped by hand (no previous state: the API's path) leaves a ``skipped`` row."""
    if previous_state is not None:
        return  # a task that skipped itself while running
    try:
        _task_marked(task_instance, "skipped")
    except Exception:  # noqa: BLE001 - never fail the API request that marked the task
        log.exception("could not record the task %s marked skipped", getattr(task_instance, "task_id", "?"))


class ScoringNotesPlugin(AirflowPlugin):
    name = "scoring_notes"
    listeners = [sys.modules[__name__]]
