"""Metrics of every ledger row an attempt ends with, sent over StatsD where Airflow sends its own.

When Airflow's StatsD metrics are on (``[metrics] statsd_on``, ``statsd_host``, ``statsd_port``;
``AIRFLOW__METRICS__STATSD_*`` outside a task), every ledger row written at the end of an attempt
(success, failed, abandoned, and the rows of runs that never scored: ``missing``, ``skipped``,
failed at stage ``marked_failed``) is sent to the same StatsD address. ``SCORING_STATSD_HOST`` /
``SCORING_STATSD_PORT`` point ours elsewhere, ``SCORING_STATSD=0`` turns them off. The names
are dotted, the labels DogStatsD tags (``|#job:nightly_scores,stage:validate``), which
Prometheus's ``statsd_exporter`` turns into labels: ``scoring.stage.seconds`` is
``scoring_stage_seconds{job="nightly_scores",stage="validate"}``. The label ``job`` is the
scoring job; Prometheus keeps it only with ``honor_labels: true`` (``monitoring/prometheus.yml``),
else it becomes ``exported_job``. A label with no value is sent as ``none`` (each metric always
has the same label names, which ``statsd_exporter`` requires).

| metric | type | labels | value |
|---|---|---|---|
| ``scoring.run.attempts_total`` | counter | job, mode, status, failed_stage (``none`` on success and skipped), dry_run | +1 for every row: the history of outcomes that a later success does not erase |
| ``scoring.partition.failed`` | gauge | job, partition (YYYY-MM-DD) | not dry runs: 1 while the day's latest attempt ended failed, abandoned or missing; 0 once it is published or skipped |
| ``scoring.partition.newest_published`` | gauge | job | the newest published (not dry run) day, Unix seconds of its 00:00 UTC (when the caller passes it) |
| ``scoring.run.breaches_total`` | counter | job, breach (drift, quarantine...), dry_run | +1 for each breach a published partition carries (``scoring_runs.breach``, the ``flag`` policy) |
| ``scoring.run.rows`` | gauge | job, mode, model, version, kind (in, valid, quarantined, scored, written; push: delivered, failed, dead_lettered, not_selected), dry_run | the latest attempt's rows of that kind (0: none, e.g. a failed attempt's); not sent for ``missing`` and ``skipped`` |
| ``scoring.run.status`` | gauge | job, mode, dry_run | the latest attempt: 1 success, 0 failed, abandoned or missing (``skipped`` leaves it) |
| ``scoring.run.seconds`` | gauge | job, mode, status, dry_run | the attempt's wall time |
| ``scoring.run.finished_at`` | gauge | job, mode, status, dry_run | when it ended (Unix seconds, whole) |
| ``scoring.run.partition`` | gauge | job, mode, status, dry_run | its partition's day (Unix seconds of 00:00 UTC): a backfill of an old day sets it back |
| ``scoring.stage.seconds`` | gauge | job, stage | each stage's seconds |
| ``scoring.stage.rows_per_second`` | gauge | job, stage | the run's rows_in over the stage's seconds |
| ``scoring.drift.max_psi`` | gauge | job | the largest PSI of the run's drift checks |
| ``scoring.ab.rows`` | gauge | job, arm, version, fallback (true, false), dry_run | successes of a job with ``model.split``: the rows of each arm (``scoring_runs.arms``); ``version`` is the version that scored them (the champion's for an arm that fell back) |
| ``scoring.ab.fallback_rows_total`` | counter | job, arm, version (the arm's own, ``none`` if it did not resolve) | successes: + the rows of an arm whose version failed to load or verify, scored by the champion instead (``ab_arm_fallback`` in the ledger's warnings) |
| ``scoring.validation.flagged_rows`` | gauge | job, check (``out_of_training_range``, ``unknown_category``, a job check's kind), column, dry_run | successes: the rows each ``flag`` check flagged (scored, not quarantined), from the run's report; 0 for a check that flagged none |

Values are exact: counts and Unix seconds as integers, other numbers as Python's shortest
round-trip text (never 6 significant digits). Counters end in ``_total`` in StatsD already, so
the Prometheus name is the same in ``statsd_exporter`` and in ``scripts/statsd_exporter.py``.
Sending is UDP, fire and forget: a collector that is down never fails a run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
import socket
from typing import Any

import sqlalchemy as sa

from pipeline import settings

log = logging.getLogger(__name__)

KINDS = {"persist": ("in", "valid", "quarantined", "scored", "written"),
         "push": ("in", "valid", "quarantined", "scored", "delivered", "failed", "dead_lettered", "not_selected")}
NOT_PUBLISHED = ("failed", "abandoned", "missing")  # a day left without its partition
SETTLED = ("success", "skipped")  # published, or let go by hand
NOTHING_READ = ("missing", "skipped")  # rows that never ran a stage: no row counts to report
DATAGRAM_BYTES = 1400  # below a typical path MTU: statsd_exporter reads one datagram at a time


def _tag(value: Any) -> str:
    """A tag value DogStatsD can carry: no separators (``,`` ``|`` ``#`` ``:``), no spaces; ``none`` for none."""
    if value is None or value == "":
        return "none"
    return re.sub(r"[^A-Za-z0-9_.\-/]", "_", str(value))[:200]


def number(value: float | int) -> str:
    """A value as exact text: integers whole (a count of 1,234,567, a Unix second), other floats by their shortest
    round-trip repr, never rounded to 6 significant digits as ``:g`` would."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def line(name: str, value: float, statsd_type: str = "g", /, **tags: Any) -> str:
    """One StatsD line: a gauge (``g``) or a counter increment (``c``) with DogStatsD tags."""
    labels = ",".join(f"{k}:{_tag(v)}" for k, v in tags.items())
    return f"{name}:{number(value)}|{statsd_type}" + (f"|#{labels}" if labels else "")


def _day(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def midnight(day: Any) -> int:
    """Unix seconds of a day's 00:00 UTC."""
    return int(dt.datetime.combine(_day(day), dt.time(), dt.UTC).timestamp())


def _unix_seconds(value: Any) -> int:
    """A ledger timestamp (naive UTC, aware, or ISO text) as whole Unix seconds; now when there is none."""
    if value is None:
        return int(dt.datetime.now(dt.UTC).timestamp())
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return int((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp())


def breaches(row: dict[str, Any]) -> list[str]:
    """The breaches a ledger row carries (``scoring_runs.breach``: comma-joined, e.g. ``drift,quarantine``)."""
    return [b.strip() for b in str(row.get("breach") or "").split(",") if b.strip()]


def flagged_counts(row: dict[str, Any]) -> dict[str, int] | None:
    """The rows each ``flag`` check of the row's run flagged (reason code -> rows), from the run's report
    (``reports/<job>/<day>/<run>.json``, ``pipeline.validate.report_stem``); None when there is no report."""
    day = row.get("partition_date")
    if day is None or not row.get("run_id"):
        return None
    path = settings.reports_dir() / str(row["job_id"]) / _day(day).isoformat() / f"{settings.safe_name(row['run_id'])}.json"
    try:
        checks = json.loads(path.read_text(encoding="utf-8")).get("checks") or []
    except (OSError, ValueError):  # no report (a dry run's, a cleaned folder) or a half-written one: no metric
        return None
    return {str(c["reason"]): int(c.get("unexpected") or 0) for c in checks if c.get("on_fail") == "flag"}


def run_lines(row: dict[str, Any], max_psi: float | None = None,
              newest_published: dt.date | str | None = None, flagged: dict[str, int] | None = None) -> list[str]:
    """The metrics of one ledger row written at the end of an attempt (see the module's table); ``flagged``:
    the run's ``flagged_counts`` (sent for a success)."""
    job, mode, status = row["job_id"], row.get("mode") or "persist", row.get("status")
    dry = "true" if str(row.get("dry_run")).lower() in ("true", "1") else "false"
    stage_failed = row.get("failed_stage") if status not in SETTLED else None
    out = [line("scoring.run.attempts_total", 1, "c", job=job, mode=mode, status=status, failed_stage=stage_failed,
                dry_run=dry)]
    day = row.get("partition_date")
    if day is not None and dry == "false" and status in NOT_PUBLISHED + SETTLED:
        out.append(line("scoring.partition.failed", 1 if status in NOT_PUBLISHED else 0, job=job,
                        partition=_day(day).isoformat()))
    if newest_published is not None:
        out.append(line("scoring.partition.newest_published", midnight(newest_published), job=job))
    if status == "success":
        out += [line("scoring.run.breaches_total", 1, "c", job=job, breach=b, dry_run=dry) for b in breaches(row)]
    if status not in NOTHING_READ:  # every kind, 0 where this attempt got none
        for kind in KINDS.get(str(mode), KINDS["persist"]):
            out.append(line("scoring.run.rows", row.get(f"rows_{kind}") or 0, job=job, mode=mode,
                            model=row.get("model_name"), version=row.get("model_version"), kind=kind, dry_run=dry))
    if status != "skipped":
        out.append(line("scoring.run.status", 1 if status == "success" else 0, job=job, mode=mode, dry_run=dry))
    if row.get("duration_s") is not None:
        out.append(line("scoring.run.seconds", row["duration_s"], job=job, mode=mode, status=status, dry_run=dry))
    out.append(line("scoring.run.finished_at", _unix_seconds(row.get("finished_at")), job=job, mode=mode,
                    status=status, dry_run=dry))
    if day is not None:
        out.append(line("scoring.run.partition", midnight(day), job=job, mode=mode, status=status, dry_run=dry))
    out += _stage_lines(row, job)
    if max_psi is not None and math.isfinite(max_psi):
        out.append(line("scoring.drift.max_psi", max_psi, job=job))
    if status == "success":
        out += _flagged_lines(flagged or {}, job, dry)
        out += ab_lines(row, job, dry)
    return out


def ab_lines(row: dict[str, Any], job: str, dry: str) -> list[str]:
    """A split's rows per arm (``scoring_runs.arms``) and the rows of the arms that fell back to the champion."""
    arms = row.get("arms")
    arms = json.loads(arms) if isinstance(arms, str | bytes) else arms
    if not isinstance(arms, dict):
        return []
    out = []
    champion = (arms.get("arms") or {}).get("champion", {}).get("version")
    for name, arm in sorted((arms.get("arms") or {}).items()):
        fallback = bool(arm.get("fallback"))
        out.append(line("scoring.ab.rows", arm.get("rows") or 0, job=job, arm=name,
                        version=champion if fallback else arm.get("version"),
                        fallback="true" if fallback else "false", dry_run=dry))
        if fallback:
            out.append(line("scoring.ab.fallback_rows_total", arm.get("rows") or 0, "c", job=job, arm=name,
                            version=arm.get("version")))
    return out


def _stage_lines(row: dict[str, Any], job: str) -> list[str]:
    """Each stage's seconds and rows per second of a ledger row (``stage_seconds``: a dict or its JSON)."""
    stages = row.get("stage_seconds") or {}
    stages = json.loads(stages) if isinstance(stages, str | bytes) else stages
    out = []
    for stage, seconds in (stages.items() if isinstance(stages, dict) else ()):
        out.append(line("scoring.stage.seconds", seconds, job=job, stage=stage))
        if seconds and row.get("rows_in"):
            out.append(line("scoring.stage.rows_per_second", row["rows_in"] / seconds, job=job, stage=stage))
    return out


def _flagged_lines(flagged: dict[str, int], job: str, dry: str) -> list[str]:
    """The rows each ``flag`` check flagged (reason ``check:column`` -> rows), one line a reason."""
    out = []
    for reason, rows in sorted(flagged.items()):
        check, _, column = reason.partition(":")
        out.append(line("scoring.validation.flagged_rows", rows, job=job, check=check, column=column, dry_run=dry))
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


def emit_run(row: dict[str, Any], max_psi: float | None = None,
             newest_published: dt.date | str | None = None) -> None:
    """Send the metrics of a ledger row an attempt ended with (nothing when metrics are off); never raises:
    metrics must not fail what they describe. ``newest_published``: the job's newest published day
    (``newest_published_day``), for the gauge a backfill of an old day does not set back."""
    try:
        where = settings.statsd_address()
        if where is not None:
            flagged = flagged_counts(row) if row.get("status") == "success" else None
            send(run_lines(row, max_psi, newest_published, flagged), where)
    except Exception as exc:  # noqa: BLE001 - a bad setting or an odd row is logged, the run stands
        log.warning("metrics of job %s not sent: %s", row.get("job_id"), exc)


def newest_published_day(engine: Any, job_id: str) -> dt.date | None:
    """The job's newest published partition (a successful attempt that was not a dry run), from the ledger;
    None, and no query, when metrics are off."""
    if settings.statsd_address() is None:
        return None

    try:
        with engine.connect() as conn:
            day = conn.execute(sa.text("SELECT MAX(partition_date) FROM scoring_runs WHERE job_id = :j AND "
                                       "status = 'success' AND dry_run = :dry"), {"j": job_id, "dry": False}).scalar()
    except Exception as exc:  # noqa: BLE001 - metrics must not fail the run they describe: the gauge is skipped
        log.warning("newest published partition of job %s not read for its metric: %s", job_id, exc)
        return None
    return None if day is None else _day(day)
