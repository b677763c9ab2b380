"""Preprocessing of a batch in memory: a model's transformation over the contract's columns, the entity key
and the validation flags carried beside them."""

from __future__ import annotations

import pyarrow as pa

from pipeline.kernels.columns import FLAGS
from pipeline.kernels.transforms import Transform

SMALL = 1000  # rows: a batch this small converts faster on one thread (an online request); the values are the same


def features(transform: Transform, batch: pa.RecordBatch | pa.Table, inputs: list[str], key: str) -> pa.Table:
    """One batch's features, with the entity key first and the flags last (always text).

    Only the contract's columns go through pandas (not the key, the flags or ingest's raw text)."""
    raw = batch.select(inputs).to_pandas(use_threads=batch.num_rows > SMALL)
    table = pa.Table.from_pandas(transform(raw), preserve_index=False)
    return table.add_column(0, key, batch.column(key)).append_column(FLAGS, batch.column(FLAGS).cast(pa.string()))


def features_schema(transform: Transform, valid: pa.Schema, inputs: list[str], key: str) -> pa.Schema:
    """The features' schema when there are no rows: the transformation run on an empty batch."""
    return features(transform, valid.empty_table(), inputs, key).schema
