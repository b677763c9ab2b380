"""Metrics of every run, sent over StatsD where Airflow sends its own, for one collector to take both.

When Airflow's StatsD metrics are on (``[metrics] statsd_on``, ``statsd_host``, ``statsd_port``;
``AIRFLOW__METRICS__STATSD_*`` outside a task), every finished attempt, successful or failed,
sends gauges to the same StatsD address. ``SCORING_STATSD_HOST`` / ``SCORING_STATSD_PORT``
point ours elsewhere, ``SCORING_STATSD=0`` turns them off. The names are dotted, the labels
DogStatsD tags (``|#job:nightly_scores,stage:validate``), which Prometheus's ``statsd_exporter``
turns into labels without a mapping file: ``scoring.stage.seconds`` is ``scoring_stage_seconds
{job="nightly_scores",stage="validate"}``. Every metric is a gauge (the latest attempt's value per
label set), so the names are the same in any exporter:

| metric | labels | value |
|---|---|---|
| ``scoring.run.rows`` | job, mode, model, version, kind (in, valid, quarantined, scored, written; push: delivered, failed, dead_lettered, not_selected), dry_run | the attempt's rows of that kind (0: none, e.g. a failed attempt's) |
| ``scoring.run.status`` | job, mode, dry_run | 1 success, 0 failed |
| ``scoring.run.seconds`` | job, mode, status, dry_run | the attempt's wall time |
| ``scoring.run.finished_at`` | job, mode, status, dry_run | when it ended (Unix seconds) |
| ``scoring.run.partition`` | job, mode, status, dry_run | its partition's day (Unix seconds of 00:00 UTC): a backfill of an old day sets it back, so alert on its ``max_over_time`` |
| ``scoring.stage.seconds`` | job, stage | each stage's seconds |
| ``scoring.stage.rows_per_second`` | job, stage | the run's rows_in over the stage's seconds |
| ``scoring.drift.max_psi`` | job | the largest PSI of the run's drift checks |

Sending is UDP, fire and forget: a collector that is down never fails a run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
from typing import Any

from pipeline import settings

log = logging.getLogger(__name__)

KINDS = {"persist": ("in", "valid", "quarantined", "scored", "written"),
         "push": ("in", "valid", "quarantined", "scored", "delivered", "failed", "dead_lettered", "not_selected")}
DATAGRAM_BYTES = 1400  # below a typical path MTU: statsd_exporter reads one datagram at a time


def _tag(value: Any) -> str:
    """A tag value DogStatsD can carry: no separators (``,`` ``|`` ``#`` ``:``), no spaces."""
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", str(value))[:200]


def line(name: str, value: float, **tags: Any) -> str:
    labels = ",".join(f"{k}:{_tag(v)}" for k, v in tags.items() if v is not None)
    return f"{name}:{float(value):g}|g" + (f"|#{labels}" if labels else "")


def run_lines(row: dict[str, Any], max_psi: float | None = None) -> list[str]:
    """The gauges of one finished attempt, from its ledger row."""
    job, mode, status = row["job_id"], row.get("mode"), row.get("status")
    dry = "true" if str(row.get("dry_run")).lower() in ("true", "1") else "false"
    out = []
    for kind in KINDS.get(str(mode), KINDS["persist"]):  # every kind, 0 where this attempt got none
        out.append(line("scoring.run.rows", row.get(f"rows_{kind}") or 0, job=job, mode=mode,
                        model=row.get("model_name"), version=row.get("model_version"), kind=kind, dry_run=dry))
    out.append(line("scoring.run.status", 1 if status == "success" else 0, job=job, mode=mode, dry_run=dry))
    if row.get("duration_s") is not None:
        out.append(line("scoring.run.seconds", row["duration_s"], job=job, mode=mode, status=status, dry_run=dry))
    out.append(line("scoring.run.finished_at", dt.datetime.now(dt.UTC).timestamp(), job=job, mode=mode,
                    status=status, dry_run=dry))
    day = row.get("partition_date")
    if day is not None:
        day = dt.date.fromisoformat(str(day)[:10])
        out.append(line("scoring.run.partition", dt.datetime.combine(day, dt.time(), dt.UTC).timestamp(), job=job,
                        mode=mode, status=status, dry_run=dry))
    stages = row.get("stage_seconds") or {}
    stages = json.loads(stages) if isinstance(stages, str | bytes) else stages
    for stage, seconds in (stages.items() if isinstance(stages, dict) else ()):
        out.append(line("scoring.stage.seconds", seconds, job=job, stage=stage))
        if seconds and row.get("rows_in"):
            out.append(line("scoring.stage.rows_per_second", row["rows_in"] / seconds, job=job, stage=stage))
    if max_psi is not None:
        out.append(line("scoring.drift.max_psi", max_psi, job=job))
    return out


def max_psi(results: list[dict[str, Any]]) -> float | None:
    """The largest PSI among a run's drift results (None: no PSI was computed)."""
    values = [r["value"] for r in results if r.get("statistic") == "psi" and isinstance(r.get("value"), int | float)]
    return max(values, default=None)


def send(lines: list[str], where: tuple[str, int] | None = None) -> None:
    """The lines as StatsD datagrams (several lines a datagram, newline-separated); errors are logged only."""
    where = where or settings.statsd_address()
    if where is None or not lines:
        return
    datagrams, current = [], ""
    for text in lines:
        if current and len(current) + 1 + len(text) > DATAGRAM_BYTES:
            datagrams.append(current)
            current = ""
        current = f"{current}\n{text}" if current else text
    datagrams.append(current)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for datagram in datagrams:
                sock.sendto(datagram.encode(), where)
    except OSError as exc:  # a collector that is down or a name that does not resolve never fails the run
        log.warning("could not send %d metric(s) to StatsD at %s:%s: %s", len(lines), where[0], where[1], exc)


def emit_run(row: dict[str, Any], max_psi: float | None = None) -> None:
    """Send a finished attempt's metrics (nothing when metrics are off); never raises: metrics must not fail
    what they describe."""
    try:
        where = settings.statsd_address()
        if where is not None:
            send(run_lines(row, max_psi), where)
    except Exception as exc:  # noqa: BLE001 - a bad setting or an odd row is logged, the run stands
        log.warning("metrics of job %s not sent: %s", row.get("job_id"), exc)
