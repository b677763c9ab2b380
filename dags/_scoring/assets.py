"""Airflow assets: what a scoring DAG publishes, so that DAGs downstream can be scheduled on it.

A job's output is an asset: ``<job_id>.predictions`` (persist; the predictions table) and
``<job_id>.push`` (push; the sink). After finalize, the ``announce_<mode>`` task of the mode the
run used emits one **partitioned** asset event (Airflow 3.2+ asset partitions): its partition key
is the partition date (``YYYY-MM-DD``) and its extra carries the run's model version and row
counts. A dry run, or the mode a run did not use, skips its announce task: no event. A DAG
scheduled with ``PartitionedAssetTimetable(assets=Asset.ref(name="<job_id>.predictions"))``
then runs once per published partition, with that date as its ``dag_run.partition_key``
(``dags/predictions_summary.py`` ships such a DAG).

A breach is an asset too: ``<job_id>.breach`` (``scoring://<job_id>/breach``). The scoring DAG's
``announce_breach`` emits one event when the run's drift breached (flagged or blocked; see
``pipeline/breaches.py``), and the ``<job_id>_outcomes`` DAG's when realised performance breached a floor
or a verdict turned decisive. Its extra: ``job_id``, ``kind`` (drift, performance, ab_verdict),
``partition_date``, ``model_name``, ``versions``, ``figures``, and ``breaches`` (every breach of the event).
A team schedules its own DAG on ``breach_asset(job_id)`` (name and URI; ``dags/demo_retrain.py`` retrains
the demo's model on it). Not ``Asset.ref(name=...)``: on Airflow 3.3 a DAG scheduled on a name reference
is triggered, but its run consumes no event (the scheduler picks the events by the DAG's asset references,
which a name reference does not create), so ``triggering_asset_events`` is empty and the breach unknown.
Not partitioned: one breach is one run of the DAG scheduled on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from pipeline.config import JobConfig
from pipeline.errors import ScoringError

ASSET_GROUP = "scoring"


def output_asset(job: JobConfig, mode: str) -> Asset:
    """The asset a job's output ``mode`` (persist or push) publishes."""
    if mode == "persist":
        extra = {"table": job.output.table, "schema": job.output.schema_ or "", "connection": job.output.connection}
        return Asset(name=f"{job.job_id}.predictions", uri=f"scoring://{job.job_id}/predictions", group=ASSET_GROUP,
                     extra=extra)
    sink = job.output.push.sink if job.output.push else None
    return Asset(name=f"{job.job_id}.push", uri=f"scoring://{job.job_id}/push", group=ASSET_GROUP,
                 extra={"sink": getattr(sink, "kind", "")})


def breach_asset(job_id: str) -> Asset:
    """The asset a job's breaches (drift, performance, a decisive verdict) are events of (the names of
    ``pipeline.breaches.asset_name`` / ``asset_uri``, written here so that parsing imports no stage module)."""
    return Asset(name=f"{job_id}.breach", uri=f"scoring://{job_id}/breach", group=ASSET_GROUP)


def emit_breach(job_id: str, payloads: list[dict[str, Any]], context: Any) -> dict[str, Any]:
    """Attach the breaches to the task's event of ``<job_id>.breach``; none: skip the task (no event)."""
    from pipeline import breaches

    if not payloads:
        raise AirflowSkipException(f"no breach in this run of {job_id}: no {job_id}.breach event")
    event = context["outlet_events"][breach_asset(job_id)]
    event.extra = breaches.event_extra(payloads)
    kinds = ", ".join(p["kind"] for p in payloads)
    print(f"breach event {breaches.asset_name(job_id)} ({kinds}) for partition {payloads[0]['partition_date']}: "
          f"{event.extra['figures']}")
    return event.extra


def do_announce_breach(partition: Callable[[Any, JobConfig], Any], resolver: Any) -> Any:
    """The body of the scoring DAG's ``announce_breach``: the run's drift breach as an event, else a skip."""

    def work(job: JobConfig, url: str, _: Any, context: Any) -> dict[str, Any]:
        from pipeline import breaches

        try:
            day = partition(context, job)
        except (ScoringError, AirflowFailException):  # no partition: refused before it started (see the sensor)
            raise AirflowSkipException("this run has no partition (wait_for_partition's log says why), so nothing "
                                       "was scored and nothing breached") from None
        found = breaches.for_run(job, day, context["run_id"], url, resolver)
        return emit_breach(job.job_id, [found] if found else [], context)

    work.__doc__ = ("announce_breach: when the run's drift breached its policy (drift.on_breach flag: published "
                    "and flagged; block: not published, the gate failed), an event of the job's `<job_id>.breach` "
                    "asset with the drifted features' PSI, p-value and threshold. Runs whatever finalize did "
                    "(trigger rule all_done); skipped when nothing breached, for a dry run and for "
                    "drift.on_breach ignore.")
    return work


def source_asset(job: JobConfig) -> Asset:
    """The upstream asset a job with ``source.asset`` is scheduled on (its URI when the job gives it)."""
    name = str(job.source.asset)
    return Asset(name=name, uri=job.source.asset_uri) if job.source.asset_uri else Asset(name=name)


def predictions_asset(job_id: str) -> Asset:
    """A reference to a persist job's predictions asset, for a downstream DAG's schedule."""
    return Asset.ref(name=f"{job_id}.predictions")


def event_extra(summary: dict[str, Any], mode: str) -> dict[str, Any]:
    """An asset event's extra from finalize's summary (the ledger row, its values as text)."""
    from pipeline import ledger

    fields = ("run_id", "attempt", "model_name", "model_version", *ledger.COUNT_FIELDS,
              *(ledger.PUSH_COUNT_FIELDS if mode == "push" else ()))
    extra: dict[str, Any] = {"partition_date": summary["partition_date"], "mode": mode}
    for name in fields:
        value = summary.get(name)
        if value in (None, "None"):
            continue
        extra[name] = int(value) if name == "attempt" or name.startswith("rows_") or name == "model_version" \
            else value
    return extra


def do_announce(mode: str) -> Any:
    """The body of ``announce_<mode>``: the partitioned asset event of a published partition."""

    def work(job: JobConfig, url: str, summary: dict[str, Any], context: Any) -> dict[str, Any]:
        if str(summary.get("dry_run")) in ("True", "true", "1"):
            raise AirflowSkipException("dry run: nothing was published, so no asset event")
        if summary.get("mode") != mode:
            raise AirflowSkipException(f"this run used {summary.get('mode')}, not {mode}: no {mode} asset event")
        event = context["outlet_events"][output_asset(job, mode)]
        event.extra = event_extra(summary, mode)
        event.add_partitions(str(summary["partition_date"]))
        return event.extra

    work.__doc__ = (f"announce_{mode}: the partitioned asset event of the partition this run published "
                    f"({mode}), with its model version and row counts; skipped for a dry run.")
    return work
