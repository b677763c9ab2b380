"""A cascade's routing on rows in memory: a router's scored rows split by its prediction into routes, the
rows it keeps and the rows no route takes; then each route's scores with their lineage and each model's
quarantine reasons prefixed with the model that rejected the row.

``plan`` is a run's pinned cascade: ``{"routes": {value: {"name", "version"}}, "default": "keep" |
"quarantine" | {"name", "version"}, "gate": float | None}``. ``router`` names the router:
``{"model", "version"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.kernels.columns import FLAGS, RAW_PREFIX, REASONS
from pipeline.kernels.predict import scored_schema
from pipeline.steps import ROUTE_DEFAULT as DEFAULT
from pipeline.steps import route_models as models_of

ROUTER_FLAGS = "__router_flags"  # the router's flags of a routed row, joined to the route model's own
LINEAGE = (("route", pa.string()), ("model_name", pa.string()), ("model_version", pa.int32()),
           ("router_model", pa.string()), ("router_version", pa.int32()))

__all__ = ["DEFAULT", "LINEAGE", "ROUTER_FLAGS", "RouteSplit", "Router", "child_schema", "confidence",
           "count_reasons", "final_schema", "join_flags", "merge_router_flags", "models_of", "prefixed", "route_name",
           "with_lineage"]


def confidence(values: np.ndarray, scores: np.ndarray, positive: str | None) -> np.ndarray:
    """The router's probability of the route it chose: its score, or for a binary router's negative class
    one minus it (the stored score is the positive class's probability)."""
    if positive is None:
        return scores
    return np.where(values == positive, scores, 1 - scores)


def final_schema(key: str, key_type: pa.DataType) -> pa.Schema:
    """A cascade's scored rows: the scored rows' columns, then their lineage."""
    schema = scored_schema(key, key_type)
    for name, typ in LINEAGE:
        schema = schema.append(pa.field(name, typ))
    return schema


def child_schema(ingested: pa.Schema) -> pa.Schema:
    """The rows a route model gets: the ingested columns, the router's flags and its outputs as columns a route
    model may take (with the empty raw-text column of a number)."""
    return (ingested.append(pa.field(ROUTER_FLAGS, pa.string()))
            .append(pa.field("router_prediction", pa.string()))
            .append(pa.field("router_score", pa.float64()))
            .append(pa.field(RAW_PREFIX + "router_score", pa.string())))


@dataclass
class RouteSplit:
    """One batch of router-valid rows sorted: each route's rows (``child_schema``), the rows the router keeps
    (``final_schema``, its own result) and those no route takes (the ingested columns and their reasons)."""

    routed: dict[str, pa.Table]
    kept: pa.Table | None
    unrouted: pa.Table | None


class Router:
    """Splits a router's valid rows and its scores of them into routes (``split``), batch by batch."""

    def __init__(self, plan: dict[str, Any], router: dict[str, Any], router_card: dict[str, Any], key: str,
                 ingested: pa.Schema) -> None:
        self.plan, self.router, self.key = plan, router, key
        self.models = models_of(plan)
        classes = router_card.get("classes") or []
        self.positive = str(router_card.get("positive_class", classes[-1])) if len(classes) == 2 else None
        self.ingested = ingested
        self.child_schema = child_schema(ingested)
        self.final_schema = final_schema(key, ingested.field(key).type)
        self.unrouted_schema = ingested.append(pa.field(REASONS, pa.string()))

    def targets(self, values: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each row's route name, or 'keep' / 'quarantine'."""
        default = self.plan["default"]
        target = values.astype(object)
        target[~np.isin(values, list(self.plan["routes"]))] = DEFAULT if isinstance(default, dict) else default
        if self.plan["gate"] is not None:
            target[~(confidence(values, scores, self.positive) >= self.plan["gate"])] = "keep"
        return target

    def split(self, valid: pa.RecordBatch | pa.Table, scored: pa.RecordBatch | pa.Table) -> RouteSplit:
        """One batch: ``valid`` rows (with their flags) and the router's ``scored`` rows of them, in the same
        order."""
        values = scored.column("prediction").to_numpy(zero_copy_only=False).astype(str)
        scores = scored.column("score").to_numpy(zero_copy_only=False)
        target = self.targets(values, scores)
        base = _table(valid).drop_columns([FLAGS])
        routed = {}
        for name in self.models:
            mine = target == name
            if mine.any():
                rows = (base.filter(pa.array(mine))
                        .append_column(ROUTER_FLAGS, valid.column(FLAGS).filter(pa.array(mine)).cast(pa.string()))
                        .append_column("router_prediction", pa.array(values[mine]))
                        .append_column("router_score", pa.array(scores[mine], pa.float64()))
                        .append_column(RAW_PREFIX + "router_score", pa.nulls(int(mine.sum()), pa.string())))
                routed[name] = rows.select(self.child_schema.names)
        keep, lost = target == "keep", target == "quarantine"
        kept = unrouted = None
        if keep.any():
            chosen = _table(scored).filter(pa.array(keep))
            kept = with_lineage(chosen, chosen["prediction"], {"name": self.router["model"],
                                                               "version": self.router["version"]},
                                self.router, self.final_schema)
        if lost.any():
            tag = f"{self.router['model']}@v{self.router['version']}:no_route:"
            unrouted = base.filter(pa.array(lost)).append_column(
                REASONS, pa.array([tag + value for value in values[lost]], pa.string()))
        return RouteSplit(routed, kept, unrouted)


def with_lineage(scored: pa.Table | pa.RecordBatch, route: str | pa.ChunkedArray | pa.Array | None,
                 model: dict[str, Any], router: dict[str, Any], schema: pa.Schema) -> pa.Table:
    """Scored rows with their lineage: the route (a name, a column, or None for the default model), the model
    that made the prediction and the router."""
    n = scored.num_rows
    if route is None or isinstance(route, str):
        route = pa.repeat(pa.scalar(route, pa.string()), n)
    key = schema.names[0]
    return pa.table({
        key: scored.column(key), "prediction": scored.column("prediction"), "score": scored.column("score"),
        "flags": scored.column("flags"), "route": route, "model_name": pa.repeat(pa.scalar(model["name"]), n),
        "model_version": pa.repeat(pa.scalar(model["version"], pa.int32()), n),
        "router_model": pa.repeat(pa.scalar(router["model"]), n),
        "router_version": pa.repeat(pa.scalar(router["version"], pa.int32()), n)}, schema=schema)


def route_name(name: str) -> str | None:
    """The ``route`` a route's scored rows carry: its name, None for the default model's."""
    return None if name == DEFAULT else name


def join_flags(first: pa.Array, second: pa.Array) -> pa.Array:
    """Two flag columns joined with '; ' (either may be null), a flag both models raised (the router's and the
    route's card flag the same column out of range) named once."""
    joined = pc.coalesce(pc.binary_join_element_wise(first, second, "; "), first, second)
    both = pc.fill_null(pc.and_(pc.is_valid(first), pc.is_valid(second)), False).to_numpy(zero_copy_only=False)
    if not both.any():
        return joined
    values = joined.to_pylist()
    for i in both.nonzero()[0]:  # only the rows both models flagged
        values[i] = "; ".join(dict.fromkeys(values[i].split("; ")))
    return pa.array(values, joined.type)


def merge_router_flags(valid: pa.Table | pa.RecordBatch) -> pa.Table:
    """A route's valid rows with the router's flags of each row joined to the route model's own."""
    table = _table(valid)
    flags = join_flags(table[ROUTER_FLAGS].combine_chunks(), table[FLAGS].combine_chunks())
    table = table.set_column(table.schema.get_field_index(FLAGS), FLAGS, flags)
    return table.drop([ROUTER_FLAGS])


def prefixed(table: pa.Table | pa.RecordBatch, model: dict[str, Any]) -> pa.Table:
    """Quarantined rows with every reason prefixed with the model that rejected the row (``<model>@v<N>:``)."""
    table = _table(table)
    tag = f"{model['name']}@v{model['version']}:"
    reasons = ["; ".join(tag + r for r in (text or "").split("; ") if r) for text in table[REASONS].to_pylist()]
    return table.set_column(table.schema.get_field_index(REASONS), REASONS, pa.array(reasons, pa.string()))


def count_reasons(reasons: pa.Array | pa.ChunkedArray, counts: dict[str, int] | None = None) -> dict[str, int]:
    """How many quarantined rows carry each reason (added to ``counts``)."""
    counts = {} if counts is None else counts
    for text in reasons.to_pylist():
        for reason in (text or "").split("; "):
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _table(rows: pa.RecordBatch | pa.Table) -> pa.Table:
    return pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
