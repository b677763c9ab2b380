"""The run lifecycle's bookkeeping: what the ledger says when a step fails part-way or cannot start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import ledger, run, steps
from pipeline.config import load_job
from pipeline.errors import ModelNotFoundError, StagingError
from tests.conftest import DAY, write_job, write_partition


def _started(home: Path, run_id: str) -> tuple[object, object]:
    write_partition(home, n=600)
    job = load_job(write_job(home, drift={"min_rows": 10}))
    return job, run.start(job, run_id=run_id, partition_date=DAY)


def test_a_model_gone_before_a_later_task_fails_that_step_in_the_ledger(home: Path) -> None:
    job, spec = _started(home, "gone")
    run.run_step(run.context(job, spec), steps.INGEST)
    shutil.rmtree(home / "models" / "churn" / "v1")
    ctx = run.context(job, spec)  # the next task builds its own context: that must not fail outside the step
    with pytest.raises(ModelNotFoundError, match="churn"):
        run.run_step(ctx, steps.VALIDATE)
    row = ledger.get(ctx.engine, job.job_id, "gone")
    assert row["status"] == "failed" and row["failed_stage"] == "validate" and "churn" in row["error"]


def test_what_a_stage_counted_is_recorded_when_it_fails_later(home: Path) -> None:
    job, spec = _started(home, "late")
    ctx = run.context(job, spec)
    for step in steps.SCORING[:3]:
        run.run_step(ctx, step)
    spec.path(steps.VALID).unlink()  # drift (after scoring) reads the valid rows: it fails there
    with pytest.raises(FileNotFoundError):
        run.run_step(ctx, steps.SCORE)
    row = ledger.get(ctx.engine, job.job_id, "late")
    assert row["status"] == "failed" and row["failed_stage"] == "score"
    assert row["rows_scored"] == row["rows_valid"] > 500, "the rows scored before the failure are in the ledger"


def test_a_step_whose_staged_input_is_gone_says_which_step_makes_it(home: Path) -> None:
    job, spec = _started(home, "cleaned")
    ctx = run.context(job, spec)
    run.run_step(ctx, steps.INGEST)
    spec.path(steps.INGESTED).unlink()
    with pytest.raises(StagingError, match="step validate reads staged dataset 'ingested'.*step ingest writes it"):
        run.run_step(ctx, steps.VALIDATE)
    assert ledger.get(ctx.engine, job.job_id, "cleaned")["failed_stage"] == "validate"
