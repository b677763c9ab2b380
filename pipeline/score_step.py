"""The score step of a run: the pinned model over the run's features (``score.score_file``, its drift
included), then its parts, each through the bookkeeping of ``bookkeeping.part`` (timed, logged with its
label, its seconds in the ledger's ``part_seconds`` by label, a failure recorded with its name): the
challengers' shadow (``steps.SHADOW``) for a job that has them (a split's arms among them), then a split's arms
(``steps.ARMS``: each row's arm and its version's scores, ``pipeline.ab``), and for a cascade's router its routes:
``steps.ROUTE`` splits the rows, every route that got rows runs ``steps.ROUTE_STEPS`` with its own model,
and ``steps.MERGE_ROUTES`` gathers them into the run's rows.

Above ``score``, ``shadow``, ``ab`` and ``cascade``: the step composes them, so none of them needs to know the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import ab, cascade, steps
from pipeline.bookkeeping import check_inputs, part
from pipeline.score import limited_threads, score_file

if TYPE_CHECKING:
    from pipeline.context import RunContext


def score_step(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The score stage: the model's scores (and drift), the challengers (failures recorded, never raised), a split's
    arms, then a cascade router's routes, all within the job's thread limit."""
    with limited_threads(ctx.job.model.threads):
        counts = score_file(ctx, counts)
        if ctx.spec.challengers:  # the same valid rows in the challengers' shadow
            run_part(ctx, steps.SHADOW)
        if ab.pinned(ctx.spec)[1] and not ctx.spec.dry_run:  # each row's arm: its version's scores
            run_part(ctx, steps.ARMS, counts)
        if ctx.spec.routes_after_score:
            run_routes(ctx, counts)
    return counts


def run_routes(ctx: RunContext, counts: dict[str, Any]) -> None:
    """A cascade's stage 2 after its router scored: split, each route's steps on its rows, merged (the merge's
    counts are the score step's: the run's rows are the routes' now)."""
    run_part(ctx, steps.ROUTE)
    for route in cascade.route_contexts(ctx):
        for step in steps.ROUTE_STEPS:
            run_part(route, step)
    run_part(ctx, steps.MERGE_ROUTES, counts)


def run_part(ctx: RunContext, step: steps.Step, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """One part of the score step with its bookkeeping: its inputs checked, timed, logged, a failure named."""
    with part(ctx, step.name, counts) as mine:
        check_inputs(ctx, step)
        step.function()(ctx, mine)
    return mine
