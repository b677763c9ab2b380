"""A cascade's plan as the stages below it need it: the columns ingest must read for all its models (the
route models by route name are ``RunSpec.route_models``). Below ``ingest`` (which reads every route model's
inputs) and ``cascade`` (which routes and scores)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.context import RunContext

ROUTER_COLUMNS = ("router_prediction", "router_score")  # what a route model may take as inputs


def ingest_inputs(ctx: RunContext) -> list[dict[str, Any]]:
    """The router's inputs, then every route model's that the router lacks (the router's outputs excepted):
    ingest reads them all, each model's validation checks its own."""
    inputs = list(ctx.card["inputs"])
    models = ctx.spec.route_models  # {} for a job without a cascade: the card's inputs
    seen = {c["name"]: (c, f"{ctx.spec.model_name} v{ctx.spec.model_version}") for c in inputs}
    for model in models.values():
        card = ctx.models.card(model["name"], model["version"])
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
