"""Entity keys of a partition: which occur more than once (ingest, and a SQL source's plan of shards)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEY_TYPES = {"string": pa.string(), "integer": pa.int64()}  # entity_key_type -> the key's Arrow type


def entity_key_type(job: Any, card: Mapping[str, Any]) -> str | None:
    """How the entity key is read: the job file's ``entity_key_type``, else the card's, else None (the source's
    declared type; text for CSV)."""
    return getattr(job, "entity_key_type", None) or card.get("entity_key_type")


def duplicates(keys: list[pa.ChunkedArray]) -> list[Any]:
    """Entity keys that occur more than once in the partition (nulls are validation's job).

    Integer keys are sorted with numpy (16 bytes a row at the peak; Arrow's value_counts
    needs about 100, over 1 GB at 10M rows); other keys (text: a CSV's keys by default) are
    first checked for a repeat with a hash set of them, then counted with value_counts.
    """
    chunks = [chunk for column in keys for chunk in column.chunks]
    if not chunks:
        return []
    if all(pa.types.is_integer(c.type) for c in chunks):
        values = np.concatenate([c.drop_null().to_numpy() for c in chunks])
        values.sort()
        repeated = values[1:][values[1:] == values[:-1]]
        return np.unique(repeated).tolist()
    column = pa.chunked_array(chunks)
    nulls = column.null_count
    if len(column.unique()) - (1 if nulls else 0) == len(column) - nulls:  # the usual case: no key repeats
        return []  # (a hash set of the keys: about 60% of value_counts' time)
    counts = column.value_counts()
    values, freq = counts.field("values"), counts.field("counts")
    mask = pc.and_(pc.greater(freq, 1), pc.is_valid(values))
    return pc.filter(values, mask).to_pylist()
