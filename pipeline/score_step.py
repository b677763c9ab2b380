"""The score step of a run: the pinned model over the run's features (``score.score_file``, its drift
included), then the same rows in the challengers' shadow and, for a cascade's router, its routes' models.

Above ``score``, ``shadow`` and ``cascade``, which each score with ``score``'s functions: the step composes
them, so none of them needs to know the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import cascade, shadow
from pipeline.score import limited_threads, score_file

if TYPE_CHECKING:
    from pipeline.context import RunContext


def score_step(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The score stage: the champion's scores (and drift), the challengers (failures recorded, never raised),
    then a cascade router's routes, all within the job's thread limit."""
    with limited_threads(ctx.job.model.threads):
        counts = score_file(ctx, counts)
        if ctx.spec.challengers:  # the same valid rows in the challengers' shadow
            shadow.score_challengers(ctx)
        if ctx.spec.cascade and ctx.spec.route is None:  # the router has scored: its routes' models now
            cascade.route(ctx, counts)
    return counts
