"""Score: load a verified model version and predict batch by batch (``pipeline.kernels.predict``), keeping the
entity key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline import drift, ledger, steps
from pipeline.context import Progress, counted
from pipeline.errors import ModelIntegrityError
from pipeline.kernels.predict import Scorer, score_batch, scored_schema
from pipeline.kernels.transforms import for_card
from pipeline.resolve import Models
from pipeline.settings import thread_count
from pipeline.staging import StagedWriter, read_batches, staged_rows, staged_schema

if TYPE_CHECKING:
    from pipeline.context import RunContext
    from pipeline.registry import ModelVersion, Registry

log = logging.getLogger(__name__)
__all__ = ["Scorer", "score_batch", "scored_schema"]  # the kernel's, for the stages that stage scores
GOLDEN_TOLERANCE = 1e-9


def load_scorer(registry: Registry, name: str, version: int) -> Scorer:
    """Resolve (``pipeline.resolve.Models``), verify (sha256, golden rows) and load a model version."""
    models = Models(registry=registry)
    mv = models.resolve(name, version)
    return scorer_for(registry, mv)


def scorer_for(registry: Registry, mv: ModelVersion) -> Scorer:
    """Verify (sha256 before unpickling, golden rows after) and load a resolved model version."""
    scorer = Scorer(mv, registry.load(mv), for_card(mv.card))
    verify_golden(scorer)
    return scorer


def verify_golden(scorer: Scorer) -> None:
    """Re-score the rows saved at training time: training and scoring must agree."""
    path = scorer.version.golden
    if not path.exists():
        log.warning("model %s v%s has no golden rows; skipping the training/scoring parity check",
                    scorer.version.name, scorer.version.version)
        return
    golden = pd.read_parquet(path)
    _, score = scorer.predict(scorer.features(golden))
    worst = float(np.max(np.abs(score - golden["expected_score"].to_numpy()))) if len(golden) else 0.0
    if worst > GOLDEN_TOLERANCE:
        raise ModelIntegrityError(
            f"model {scorer.version.name} v{scorer.version.version} does not reproduce its training "
            f"scores on its golden rows (largest difference {worst:.3g}): the preprocessing or a "
            "library changed since training. Retrain in this environment."
        )


# -- threads -----------------------------------------------------------------------------
@contextmanager
def limited_threads(configured: int | None = None) -> Iterator[int]:
    """The OpenMP and BLAS thread pools (scikit-learn's predict, numpy) limited to ``thread_count``.

    Without a limit every process predicts on every core: several worker processes on one
    machine oversubscribe it and each predicts slower (scikit-learn #30662).
    """
    from threadpoolctl import threadpool_limits

    count = thread_count(configured)
    with threadpool_limits(limits=count):
        yield count


# -- the stage ---------------------------------------------------------------------------
def score_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The score stage with its thread limit (``limited_threads``): ``_score_file``."""
    with limited_threads(ctx.job.model.threads) as count:
        ctx.log.info("score: predicting with at most %d thread(s)", count)
        return _score_file(ctx, counts)


def _score_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The score stage: the pinned model (sha256, golden rows checked) over ``features`` -> ``scored``.

    Then the drift check over the partition (``drift.check``), unless the run is sharded: a
    sharded run checks drift over every shard in ``combine``.
    """
    scorer = scorer_for(ctx.registry(), ctx.pinned())
    source = ctx.path(steps.FEATURES)
    key = ctx.job.entity_key
    schema = scored_schema(key, staged_schema(source).field(key).type)
    progress = Progress(ctx.log, "score", staged_rows(source))
    with StagedWriter(ctx.path(steps.SCORED), schema) as writer:
        for batch in read_batches(source, ctx.batch_rows):
            writer.write(score_batch(scorer, batch, key, schema))
            progress.add(batch.num_rows)
    ctx.spec.write_json(steps.SCORE_STATE, {"scored_at": ledger.now().isoformat()})
    counts = counted(counts, rows_scored=writer.rows)
    if ctx.spec.checks_drift:
        drift.check(ctx, writer.rows, counts)  # adds counts["warnings"] if the card has no drift statistics
    return counts
