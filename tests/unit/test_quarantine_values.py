"""persist.may_need_escape: which staged quarantine batches take textsafe's row-by-row path (found by Arrow)."""

from __future__ import annotations

import datetime as dt
import math

import pyarrow as pa
import pytest

from pipeline.persist import may_need_escape


def _batch(**columns: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(columns)


def test_clean_batches_take_the_fast_path() -> None:
    batch = _batch(customer_id=pa.array([1, 2]), region=pa.array(["west", None]), charges=pa.array([1.5, None]),
                   day=pa.array([dt.date(2026, 11, 20)] * 2), ok=pa.array([True, False]),
                   __badtext__region=pa.nulls(2, pa.binary()), reasons=pa.array(["a", "b"]))
    assert not may_need_escape(batch)


@pytest.mark.parametrize("column", [
    pa.array(["west", "we\x00st"]),
    pa.array(["west", "we\x00st"], pa.large_string()),
    pa.array([1.0, math.nan]),
    pa.array([1.0, -math.inf]),
    pa.array([None, b"ba\xffsic"], pa.binary()),
    pa.array(["a", "b"]).dictionary_encode(),
], ids=["nul", "nul_large_string", "nan", "inf", "badtext_bytes", "dictionary"])
def test_batches_that_may_hold_odd_values_are_looked_into(column: pa.Array) -> None:
    assert may_need_escape(_batch(customer_id=pa.array([1, 2]), value=column))
