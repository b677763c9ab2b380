"""A cascade's plan as the stages below it need it: its route models by route name, and the columns
ingest must read for all of them. Below ``ingest`` (which reads every route model's inputs) and
``cascade`` (which routes and scores)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.registry import Registry

if TYPE_CHECKING:
    from pipeline.context import RunContext

ROUTER_COLUMNS = ("router_prediction", "router_score")  # what a route model may take as inputs
DEFAULT = "__default__"  # the route name of rows the default model scores


def models_of(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Route name -> pinned model (the default's under ``DEFAULT``)."""
    out = dict(plan["routes"])
    if isinstance(plan["default"], dict):
        out[DEFAULT] = plan["default"]
    return out


def ingest_inputs(ctx: RunContext) -> list[dict[str, Any]]:
    """The router's inputs, then every route model's that the router lacks (the router's outputs excepted):
    ingest reads them all, each model's validation checks its own."""
    inputs = list(ctx.card["inputs"])
    if not ctx.spec.cascade:
        return inputs
    seen = {c["name"]: (c, f"{ctx.spec.model_name} v{ctx.spec.model_version}") for c in inputs}
    registry = Registry()
    for model in models_of(ctx.spec.cascade).values():
        card = registry.resolve(model["name"], model["version"]).card
        for column in card["inputs"]:
            name = column["name"]
            if name in ROUTER_COLUMNS:
                continue
            if name in seen and seen[name][0]["type"] != column["type"]:
                raise ConfigError(
                    f"cascade of job {ctx.job.job_id}: column {name!r} is {seen[name][0]['type']} for "
                    f"{seen[name][1]} but {column['type']} for {model['name']} v{model['version']}: the models of a "
                    "cascade read one copy of each column, so their contracts must agree on its type")
            if name not in seen:
                seen[name] = (column, f"{model['name']} v{model['version']}")
                inputs.append(column)
    return inputs
