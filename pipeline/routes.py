"""A cascade's plan as the stages below it need it: the columns ingest must read for all its models (the
route models by route name are ``RunSpec.route_models``). Below ``ingest`` (which reads every route model's
inputs) and ``cascade`` (which routes and scores)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.context import RunContext

ROUTER_COLUMNS = ("router_prediction", "router_score")  # what a route model may take as inputs


def ingest_inputs(ctx: RunContext) -> list[dict[str, Any]]:
    """The columns a run's ingest reads (``cascade_inputs`` of its pinned models)."""
    return cascade_inputs(ctx.job, ctx.card, f"{ctx.spec.model_name} v{ctx.spec.model_version}",
                          ctx.spec.route_models, ctx.models.card)


def cascade_inputs(job: JobConfig, card: dict[str, Any], label: str, models: dict[str, dict[str, Any]],
                   card_of: Callable[[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """The router's inputs, then every route model's that the router lacks (the router's outputs excepted):
    ingest (and the online door) reads them all, each model's validation checks its own.

    Args:
        card: the router's card; ``label`` names it in a message ("segment v1").
        models: the route models by route (``steps.route_models``; {} for a job without a cascade).
        card_of: a route model's checked card by name and version (``resolve.Models.card``).
    """
    inputs = list(card["inputs"])
    seen = {c["name"]: (c, label) for c in inputs}
    for model in models.values():
        for column in card_of(model["name"], model["version"])["inputs"]:
            name = column["name"]
            if name in ROUTER_COLUMNS:
                continue
            if name in seen and seen[name][0]["type"] != column["type"]:
                raise ConfigError(
                    f"cascade of job {job.job_id}: column {name!r} is {seen[name][0]['type']} for "
                    f"{seen[name][1]} but {column['type']} for {model['name']} v{model['version']}: the models of a "
                    "cascade read one copy of each column, so their contracts must agree on its type")
            if name not in seen:
                seen[name] = (column, f"{model['name']} v{model['version']}")
                inputs.append(column)
    return inputs
