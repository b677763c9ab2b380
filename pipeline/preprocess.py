"""Preprocess: the stage around the features kernel (``pipeline.kernels.features``), and the public names of
the transform registry (``pipeline.kernels.transforms``): a user's module registers its transformation with
``pipeline.preprocess.register``.

A transformation turns the raw input contract into the model's feature frame. Its name,
version and a fingerprint of its code are written into the model card at training time;
scoring looks the same transformation up and refuses to run if its code has changed
since the model was trained (a new behaviour needs a new version).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline import steps
from pipeline.kernels.features import features, features_schema
from pipeline.kernels.transforms import (
    ENTRY_POINTS,
    Transform,
    bind,
    categories,
    fingerprint,
    for_card,
    get,
    identity,
    load_plugins,
    register,
    spec,
)
from pipeline.staging import StagedWriter, read_batches, staged_schema

if TYPE_CHECKING:
    from pipeline.context import RunContext

__all__ = ["ENTRY_POINTS", "Transform", "bind", "categories", "fingerprint", "for_card", "get", "identity",
           "load_plugins", "register", "spec", "transform_file"]


def transform_file(ctx: RunContext, counts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preprocess stage: the card's transformation over ``valid`` -> ``features`` (key and flags kept)."""
    transform = for_card(ctx.card)
    inputs = [c["name"] for c in ctx.card["inputs"]]
    key = ctx.job.entity_key
    with StagedWriter(ctx.path(steps.FEATURES)) as writer:
        for batch in read_batches(ctx.path(steps.VALID), ctx.batch_rows):
            writer.write(features(transform, batch, inputs, key))
        if writer.schema is None:  # zero valid rows: an empty file with the feature schema
            writer.schema = features_schema(transform, staged_schema(ctx.path(steps.VALID)), inputs, key)
    return {} if counts is None else counts
