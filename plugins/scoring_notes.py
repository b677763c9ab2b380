"""Airflow plugin: every scoring run says which partition it scores, in its note.

The runs list and the grid show a run's id and logical date, neither of which is the day a
scoring run scores (a scheduled run's logical date is the start of its interval, a form
trigger's is the moment of the click, and ``partition_date`` in the conf overrides both). When
the scheduler starts a run of a DAG tagged ``scoring``, this listener applies the same rule
as the run itself (``pipeline.partition.resolve_partition_date``) and writes the answer as
the run's note, shown at the top of the run's page; an operator's own note
is never overwritten. ``airflow dags test`` starts no scheduler, so its runs get no note.

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


def partition_note(dag: Any, dag_run: Any) -> str | None:
    """The note for a run of a scoring DAG (None for other DAGs)."""
    from pipeline.errors import ConfigError
    from pipeline.partition import resolve_partition_date

    if TAG not in set(getattr(dag, "tags", None) or ()):
        return None
    tz = ZoneInfo(getattr(dag.timezone, "name", None) or "UTC")
    timetable = getattr(dag, "timetable", None)
    cron = timetable.summary if isinstance(timetable, CronDataIntervalTimetable) else None
    conf = dag_run.conf or {}
    run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
    try:
        day = resolve_partition_date(tz=tz, param=conf.get("partition_date"), logical_date=dag_run.logical_date,
                                     run_after=dag_run.run_after, schedule=cron, run_type=str(run_type))
    except ConfigError as exc:
        return f"Refused: {exc}"[:1000]
    how = "partition_date in the conf" if conf.get("partition_date") else "the run's logical date and trigger time"
    return f"Scores partition {day.isoformat()} (from {how})."


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


class ScoringNotesPlugin(AirflowPlugin):
    name = "scoring_notes"
    listeners = [sys.modules[__name__]]
