"""Ledger rows for the runs that never got as far as writing one: data that never came, runs marked by hand.

Every intended partition leaves a row in ``scoring_runs``. A run that scores writes its own
(``pipeline.run``); these are the other outcomes, written by the DAG's sensor and by the
listener of ``plugins/scoring_notes.py``:

| outcome | status | failed_stage | written when |
|---|---|---|---|
| ``missing`` | ``missing`` | ``wait_for_partition`` | the sensor gave up, or the day was long past its expected arrival (``source.expected_by``) with no data |
| ``marked_failed`` | ``failed`` | ``marked_failed`` | an operator marked the run, or one of its tasks, failed (UI or REST API) |
| ``skipped`` | ``skipped`` | NULL | an operator marked a task of the run skipped |

One row per run for these outcomes: a repeat (the sensor timing out again after a clear, a
second task marked failed) updates that row instead of adding one. A run whose latest attempt
is still ``running`` (its task was killed when the run was marked) gets that attempt closed
with the outcome. A run the pipeline already finished (success, failed, abandoned) keeps its
row: the ledger says what the run did, and marking it afterwards changes nothing it wrote.
Each row written is sent as metrics (``pipeline.metrics.emit_run``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import ledger, metrics
from pipeline.redact import redact
from pipeline.store.engines import begin
from pipeline.store.operational import ensure_ledger

log = logging.getLogger(__name__)

# outcome -> (status, failed_stage)
OUTCOMES: dict[str, tuple[str, str | None]] = {
    "missing": ("missing", "wait_for_partition"),
    "marked_failed": ("failed", "marked_failed"),
    "skipped": ("skipped", None),
}
PIPELINE_DONE = ("success", "failed", "abandoned")


def _ours(status: str, failed_stage: str | None) -> bool:
    """Whether a row is one this module wrote (so a repeat updates it)."""
    return status in ("missing", "skipped") or failed_stage == "marked_failed"


def record(engine: Engine, *, job_id: str, run_id: str, partition_date: dt.date, outcome: str, error: str,
           mode: str, dry_run: bool, model_name: str | None) -> dict[str, Any] | None:
    """Write the run's ``outcome`` row (see the module's table); its ledger row, or None when the pipeline's
    own row stands. Sends the row's metrics when it was written or changed."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {sorted(OUTCOMES)}")
    status, stage = OUTCOMES[outcome]
    ensure_ledger(engine)
    stamp, text = ledger.now(), redact(error[:4000])
    where = {"j": job_id, "r": run_id}
    with begin(engine) as conn:
        last = conn.execute(sa.text(
            "SELECT attempt, status, failed_stage, started_at, error FROM scoring_runs WHERE job_id = :j AND "
            "run_id = :r ORDER BY attempt DESC LIMIT 1"), where).first()
        if last is None:
            attempt = 1
            conn.execute(sa.text(
                "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, mode, dry_run, model_name, "
                "status, failed_stage, error, started_at, finished_at, duration_s, stage_seconds) VALUES (:j, :r, 1, "
                ":d, :m, :dry, :mn, :s, :st, :e, :t, :t, 0, '{}')"),
                {**where, "d": partition_date, "m": mode, "dry": dry_run, "mn": model_name, "s": status,
                 "st": stage, "e": text, "t": stamp})
        elif last.status == "running" or _ours(last.status, last.failed_stage):
            attempt = int(last.attempt)
            if _ours(last.status, last.failed_stage) and (last.status, last.failed_stage) == (status, stage):
                log.info("run %s of job %s is already recorded as %s: no second row", run_id, job_id, outcome)
                return None
            seconds = (stamp - ledger.utc(last.started_at)).total_seconds()
            conn.execute(sa.text(
                "UPDATE scoring_runs SET status = :s, failed_stage = :st, error = :e, finished_at = :t, "
                "duration_s = :sec, holder = NULL WHERE job_id = :j AND run_id = :r AND attempt = :a"),
                {**where, "a": attempt, "s": status, "st": stage, "e": text, "t": stamp, "sec": max(seconds, 0.0)})
        else:
            log.info("run %s of job %s: attempt %s already ended %s; the ledger keeps it (%s not recorded)",
                     run_id, job_id, last.attempt, last.status, outcome)
            return None
    row = ledger.get(engine, job_id, run_id, attempt)
    log.info("ledger: run %s of job %s, partition %s recorded as %s", run_id, job_id, partition_date, status
             + (f" at {stage}" if stage else ""))
    metrics.emit_run(row)
    return row

