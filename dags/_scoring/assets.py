"""Airflow assets: what a scoring DAG publishes, so that DAGs downstream can be scheduled on it.

A job's output is an asset: ``<job_id>.predictions`` (persist; the predictions table) and
``<job_id>.push`` (push; the sink). After finalize, the ``announce_<mode>`` task of the mode the
run used emits one **partitioned** asset event (Airflow 3.2+ asset partitions): its partition key
is the partition date (``YYYY-MM-DD``) and its extra carries the run's model version and row
counts. A dry run, or the mode a run did not use, skips its announce task: no event. A DAG
scheduled with ``PartitionedAssetTimetable(assets=Asset.ref(name="<job_id>.predictions"))``
then runs once per published partition, with that date as its ``dag_run.partition_key``
(``dags/predictions_summary.py`` ships such a DAG).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowSkipException

from pipeline.config import JobConfig

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
