"""The cascade's routing kernel on rows in memory: routes, the gate, the default, unrouted rows and lineage."""

from __future__ import annotations

import pyarrow as pa

from pipeline.kernels.columns import FLAGS
from pipeline.kernels.route import DEFAULT, ROUTER_FLAGS, Router, merge_router_flags, prefixed

SCHEMA = pa.schema([("id", pa.int64()), ("x", pa.float64())])
ROUTER = {"model": "r", "version": 2}
CARD = {"classes": ["a", "b"], "positive_class": "b"}


def _rows() -> tuple[pa.Table, pa.Table]:
    valid = pa.table({"id": [1, 2, 3, 4], "x": [0.1, 0.2, 0.3, 0.4], FLAGS: [None, "f", None, None]})
    scored = pa.table({"id": [1, 2, 3, 4], "prediction": ["a", "b", "c", "b"], "score": [0.1, 0.9, 0.5, 0.55],
                       "flags": [None, "f", None, None]})
    return valid, scored


def test_rows_go_to_their_route_and_the_rest_follow_the_default() -> None:
    plan = {"routes": {"a": {"name": "ma", "version": 1}, "b": {"name": "mb", "version": 1}},
            "default": "quarantine", "gate": None}
    split = Router(plan, ROUTER, CARD, "id", SCHEMA).split(*_rows())
    assert split.routed["a"]["id"].to_pylist() == [1] and split.routed["b"]["id"].to_pylist() == [2, 4]
    assert split.routed["b"][ROUTER_FLAGS].to_pylist() == ["f", None]
    assert split.routed["b"]["router_score"].to_pylist() == [0.9, 0.55]
    assert split.kept is None
    assert split.unrouted.to_pydict() == {"id": [3], "x": [0.3], "reasons": ["r@v2:no_route:c"]}


def test_the_gate_keeps_the_routers_result_and_a_default_model_takes_the_rest() -> None:
    plan = {"routes": {"a": {"name": "ma", "version": 1}}, "default": {"name": "md", "version": 3}, "gate": 0.6}
    router = Router(plan, ROUTER, CARD, "id", SCHEMA)
    split = router.split(*_rows())
    # confidence: 'a' rows 1 - score (0.9), 'b' rows the score (0.9, 0.55), 'c' the score (0.5)
    assert split.routed["a"]["id"].to_pylist() == [1] and split.routed[DEFAULT]["id"].to_pylist() == [2]
    assert split.kept.column("id").to_pylist() == [3, 4]
    assert split.kept.column("route").to_pylist() == ["c", "b"]
    assert set(split.kept.column("model_name").to_pylist()) == {"r"} and split.unrouted is None
    assert split.kept.schema == router.final_schema


def test_router_flags_join_the_routes_and_reasons_name_their_model() -> None:
    valid = pa.table({"id": [1, 2], FLAGS: ["g", None], ROUTER_FLAGS: ["f", "f"]})
    assert merge_router_flags(valid).to_pydict() == {"id": [1, 2], FLAGS: ["f; g", "f"]}
    rejected = pa.table({"id": [1], "reasons": ["not_null:x; be_between:y"]})
    assert prefixed(rejected, {"name": "m", "version": 4})["reasons"].to_pylist() == ["m@v4:not_null:x; m@v4:be_between:y"]
