"""A stage's bookkeeping, the same for every step: its lease checked and kept alive, its time and counts
in the ledger (a shard's in its own folder), its failure recorded with the error's text and re-raised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from pipeline import lease, ledger, metrics, steps
from pipeline.errors import failure_text
from pipeline.textsafe import safe_text

if TYPE_CHECKING:
    from pipeline.context import RunContext


@contextmanager
def stage(ctx: RunContext, name: str) -> Iterator[dict[str, Any]]:
    """Time a stage, store its counts in the ledger; on failure record the error (and counts) and re-raise."""
    spec, rlog = ctx.spec, ctx.log
    counts: dict[str, Any] = {}
    started = time.perf_counter()
    sharded = spec.shard is not None
    label = f"{name}[shard {spec.shard}]" if sharded else name
    if not sharded:  # a superseded attempt stops here (its row says by whom), before any work
        lease.resume(ctx.engine, spec, spec.holder_kind)
    rlog.info("%s: started", label)
    try:
        with lease.heartbeat(ctx.engine, spec):
            yield counts
    except BaseException as exc:
        counts.update(getattr(exc, "counts", None) or {})
        message = failure_text(exc)
        rlog.error("%s failed: %s", label, message)
        if not isinstance(exc, lease.SupersededError):  # the row is the later attempt's story now
            record_failure(ctx, label, message, {} if sharded else counts)
        raise
    seconds = time.perf_counter() - started
    if sharded:  # parallel shards never write the same ledger row; combine() adds them up
        state = spec.read_json(steps.SHARD_STATE, default={"counts": {}, "seconds": {}})
        state["counts"].update(counts)
        state["seconds"][name] = round(seconds, 3)
        spec.write_json(steps.SHARD_STATE, state)
    else:
        ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, stage=name, seconds=seconds, **counts)
    rlog.info("%s: done in %.2fs %s", label, seconds, counts)


def record_failure(ctx: RunContext, label: str, message: str, counts: dict[str, Any]) -> None:
    """Mark the attempt failed; a database that is down gets a few tries over about half a minute."""
    spec = ctx.spec
    for wait in (0, 1, 2, 4, 8, 15):
        time.sleep(wait)
        try:
            ledger.update(ctx.engine, spec.job_id, spec.run_id, spec.attempt, status="failed", failed_stage=label,
                          error=message[:4000], finished_at=ledger.now(), **counts)
            with suppress(Exception):  # the metrics of a failure never hide it
                metrics.emit_run(ledger.get(ctx.engine, spec.job_id, spec.run_id, spec.attempt))
            return
        except Exception as ledger_exc:  # noqa: BLE001 - the original error matters more
            last = safe_text(str(ledger_exc).splitlines()[0] if str(ledger_exc) else type(ledger_exc).__name__)
    ctx.log.error("could not record the failure in the ledger (%s): the attempt stays 'running' until the next "
                  "attempt of the partition finds it unseen for SCORING_LEASE_SECONDS and marks it abandoned", last)


# -- closing a run ---------------------------------------------------------------------
