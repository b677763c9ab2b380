"""A stage's bookkeeping, the same for every step: its lease checked and kept alive, its time and counts
in the ledger (a shard's in its own folder), its failure recorded with the error's text and re-raised.

A part of a step (the challengers' shadow, a cascade's routes, inside the score step) is timed and logged
with its label (``validate[route frequent]``) and its inputs checked; a failure in it is recorded by its
step with the part's label as ``failed_stage``. Its time is inside its step's entry of ``stage_seconds`` (the
ledger keeps one entry per step of the plan) and, by its label, in ``part_seconds``: the step that runs it
records its parts' seconds with its own (a shard's in its state file, its label without the shard; combine
keeps the slowest shard's, as for the steps), and a failed step the seconds of the parts that had finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from pipeline import lease, ledger, metrics, steps
from pipeline.errors import StagingError, failure_text
from pipeline.textsafe import safe_text

if TYPE_CHECKING:
    from pipeline.context import RunContext
    from pipeline.staging import RunSpec


FAILED_PART = "failed_part"  # the label of the part of a step that raised, set on the exception
# the seconds of the parts of the step running now, by label (a shard's without its shard), for its record
_PARTS: ContextVar[dict[str, float] | None] = ContextVar("parts_of_the_running_step", default=None)


@contextmanager
def stage(ctx: RunContext, name: str) -> Iterator[dict[str, Any]]:
    """Time a stage, store its counts in the ledger; on failure record the error (and counts) and re-raise."""
    spec, rlog = ctx.spec, ctx.log
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    sharded = spec.is_shard
    label = spec.label(name)
    if not sharded:  # a superseded attempt stops here (its row says by whom), before any work
        lease.resume(ctx.engine, spec, spec.holder_kind)
    rlog.info("%s: started", label)
    parts: dict[str, float] = {}
    token = _PARTS.set(parts)
    try:
        with lease.heartbeat(ctx.engine, spec):
            yield counts
    except BaseException as exc:
        counts.update(getattr(exc, "counts", None) or {})
        message, where = failure_text(exc), getattr(exc, FAILED_PART, None) or label
        rlog.error("%s failed: %s", where, message)
        if not isinstance(exc, lease.SupersededError):  # the row is the later attempt's story now
            record_failure(ctx, where, message, {} if sharded else counts, {} if sharded else parts)
        raise
    finally:
        _PARTS.reset(token)
    seconds = time.perf_counter() - started
    if sharded:  # parallel shards never write the same ledger row; combine() adds them up
        state = spec.read_json(steps.SHARD_STATE, default={"counts": {}, "seconds": {}})
        state["counts"].update(counts)
        state["seconds"][name] = round(seconds, 3)
        state.setdefault("parts", {}).update(parts)
        spec.write_json(steps.SHARD_STATE, state)
    else:
        ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, stage=name, seconds=seconds, parts=parts,
                      **counts)
    rlog.info("%s: done in %.2fs %s", label, seconds, counts)


@contextmanager
def part(ctx: RunContext, name: str, counts: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Time and log a part of a step (``counts``: the step's own, for a part that counts for it), its seconds kept
    for the step's record (``part_seconds``); on failure name the part on the exception, for the step's record,
    and re-raise."""
    label = ctx.spec.label(name)
    counts = {} if counts is None else counts
    started = time.perf_counter()
    ctx.log.info("%s: started", label)
    try:
        yield counts
    except BaseException as exc:
        if not getattr(exc, FAILED_PART, None):
            with suppress(AttributeError):  # the innermost part names the failure
                setattr(exc, FAILED_PART, label)
        raise
    seconds = time.perf_counter() - started
    recorded = _PARTS.get()
    if recorded is not None:  # a part outside a step (a test's) is only logged
        recorded[ledger_label(ctx.spec, label)] = round(seconds, 3)
    ctx.log.info("%s: done in %.2fs %s", label, seconds, counts)


def ledger_label(spec: RunSpec, label: str) -> str:
    """A part's label in ``part_seconds``: a shard's without its ``[shard N]`` (combine keeps the slowest's)."""
    return label.removesuffix(f"[shard {spec.shard_index}]") if spec.is_shard else label


def check_inputs(ctx: RunContext, step: steps.Step) -> None:
    """Every staged dataset the step reads is there; else say which step makes it."""
    for name in step.reads:
        if name not in steps.DATASETS:
            continue
        missing = [p for p in ctx.parts(name) if not p.exists()]
        if missing:
            raise StagingError(
                f"partition {ctx.spec.partition_date}: step {step.name} reads staged dataset {name!r}, but "
                f"{missing[0]} is missing (step {steps.writer_of(name)} writes it; the staging area may have "
                "been cleaned). Clear the run from its first task to stage the partition again."
            )


def record_failure(ctx: RunContext, label: str, message: str, counts: dict[str, Any],
                   parts: dict[str, float] | None = None) -> None:
    """Mark the attempt failed (with the counts and the seconds of the parts that finished); a database that is
    down gets a few tries over about half a minute."""
    spec = ctx.spec
    for wait in (0, 1, 2, 4, 8, 15):
        time.sleep(wait)
        try:
            ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, status="failed", failed_stage=label,
                          error=message[:4000], finished_at=ledger.now(), parts=parts, **counts)
            with suppress(Exception):  # the metrics of a failure never hide it
                metrics.emit_run(ledger.get(ctx.engine, spec.job_id, spec.run_id, spec.attempt))
            return
        except Exception as ledger_exc:  # noqa: BLE001 - the original error matters more
            last = safe_text(str(ledger_exc).splitlines()[0] if str(ledger_exc) else type(ledger_exc).__name__)
    ctx.log.error("could not record the failure in the ledger (%s): the attempt stays 'running' until the next "
                  "attempt of the partition finds it unseen for SCORING_LEASE_SECONDS and marks it abandoned", last)


# -- closing a run ---------------------------------------------------------------------
