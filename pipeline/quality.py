"""Drift and quality with a visible state: a partition's breaches, the gate before publishing, the check after.

A *breach* is a drift breach (``pipeline.drift.judge``: PSI above the threshold, significant,
enough rows) or a quarantined share above ``validation.max_quarantine_share``. Each job has a
policy per kind (``drift.on_breach``, ``validation.on_breach``):

- ``block``: not published. A quarantine share fails validate (as it always did); a drift breach
  fails the gate that runs before the output step (``failed_stage`` ``drift_gate``), so the
  partition's previous state stays as it was, in every run shape (plain, sharded, cascade) and
  output mode (persist, push): they all publish through ``run.run_step``, which calls ``drift.gate``.
- ``flag``: published and marked: the ledger's ``breach`` column ("drift", "quarantine",
  "drift,quarantine"), the report's banner, the DAG's check task (``check``), the alert.
- ``ignore``: published and recorded (``scoring_drift``, the report), not marked.

The judgement, the gate and the mark live in ``pipeline.drift`` (beside the statistics they
read); this module is what runs after a run: ``check``, the DAG's check task.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from pipeline import drift
from pipeline.context import engine_for_job
from pipeline.errors import QualityBreach
from pipeline.partition import parse_date

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.connections import Resolver

def check(job: JobConfig, partition_date: dt.date | str, run_id: str, url: str | None = None,
          resolver: Resolver | None = None) -> None:
    """Raise QualityBreach when the run's published attempt carries a flagged breach; return quietly otherwise.

    What the DAG's check task calls after finalize: the task fails (the grid shows it) while the
    partition stays published, like an asset check of severity warn.
    """
    day = parse_date(partition_date)
    eng = engine_for_job(job, url, resolver)
    with eng.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT * FROM scoring_runs WHERE job_id = :j AND run_id = :r AND status = 'success' "
            "ORDER BY attempt DESC LIMIT 1"), {"j": job.job_id, "r": run_id}).mappings().first()
    if row is None or not row.get("breach"):
        return
    kinds = str(row["breach"]).split(",")
    parts = []
    if "drift" in kinds:
        rows = drift.drifted_rows(eng, job.job_id, day, run_id)
        parts.append(f"drift: {drift.describe(rows) if rows else 'see the report (a dry run records no rows)'} "
                     f"(PSI above {job.drift.psi_threshold:g}, significant at alpha {job.drift.alpha:g})")
    if "quarantine" in kinds:
        parts.append(f"quarantine: {drift.quarantine_text(job, dict(row)) or str(row['rows_quarantined']) + ' rows'}")
    raise QualityBreach(
        f"partition {day} of job {job.job_id} (run {run_id}, attempt {row['attempt']}"
        f"{', dry run' if row['dry_run'] else ''}) was published with a flagged breach: {'; '.join(parts)}. "
        f"The predictions stay published; this check fails to make the breach seen. Report: "
        f"{drift.report_path(job.job_id, day, run_id)}. Next: investigate the report (tables scoring_drift, "
        "scoring_quarantine); if the input is wrong, fix it and re-run the partition; if the shift is real, "
        "register a retrained model or set the job's drift.on_breach / validation.on_breach to ignore.",
    )
