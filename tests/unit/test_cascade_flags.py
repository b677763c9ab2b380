"""A cascade joins the router's flags and the route model's: a flag both raise is named once."""

from __future__ import annotations

import pyarrow as pa

from pipeline.kernels.route import join_flags


def test_flags_of_both_models_are_joined_and_a_shared_one_named_once() -> None:
    router = pa.array(["out_of_training_range:tenure; unknown_category:plan", None, "nul_in_text:x", "a", None])
    route = pa.array(["out_of_training_range:tenure; out_of_training_range:charges", "b", None, "c", None])
    assert join_flags(router, route).to_pylist() == [
        "out_of_training_range:tenure; unknown_category:plan; out_of_training_range:charges", "b", "nul_in_text:x",
        "a; c", None]
