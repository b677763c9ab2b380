"""What the store says when a write fails (issue 25, point 1): data the database refuses is not retryable and
never advises a retry; a swap that could not get the table is, and says so (tests/integration/test_swap_readers.py)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from pipeline.errors import ConfigError, DataRefusedError
from pipeline.store import engines, job_tables, operational, writes
from tests.conftest import DAY


def _engine() -> engines.Engine:
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, "errors_predictions", "customer_id", "int")
    return engine


def test_duplicate_keys_are_refused_data_not_a_retry(any_db: str) -> None:
    engine = _engine()
    dup = pa.table({"customer_id": pa.array([5, 5], pa.int64()), "partition_date": [DAY, DAY],
                    "prediction": ["1", "0"], "score": [0.9, 0.1], "model_name": ["m"] * 2,
                    "model_version": pa.array([1, 1], pa.int32()), "run_id": ["bad"] * 2,
                    "scored_at": pa.array([dt.datetime(2026, 11, 21)] * 2, pa.timestamp("us")),
                    "flags": pa.array([None, None], pa.string())})
    with pytest.raises(DataRefusedError) as caught:
        writes.replace_partition(engine, table="errors_predictions", key="customer_id", job_id="errors",
                                partition_date=DAY, batches=[dup])
    message = str(caught.value)
    assert not caught.value.retryable and "retry" not in message.lower()
    assert f"partition {DAY}" in message and "errors_predictions" in message and "customer_id" in message
    assert "previous copy of the partition is unchanged" in message


@pytest.mark.postgres
def test_a_nul_in_a_quarantine_row_given_raw_is_refused_data_not_a_retry(pg_url: str) -> None:
    engine = _engine()
    row = {"job_id": "errors", "partition_date": DAY, "run_id": "r", "entity_key": "1", "entity_key_int": 1,
           "reasons": "x", "row_values": json.dumps({"name": "a\x00b"}), "quarantined_at": dt.datetime(2026, 11, 21)}
    with pytest.raises(DataRefusedError) as caught:
        writes.replace_quarantine(engine, job_id="errors", partition_date=DAY, quarantine=[[row]])
    message = str(caught.value)
    assert not caught.value.retryable and "retry" not in message.lower()
    assert f"partition {DAY}" in message and "scoring_quarantine" in message and "NUL" in message


def test_keys_read_as_another_kind_than_the_tables_are_refused_with_the_setting_to_change(any_db: str) -> None:
    engine = _engine()  # errors_predictions, key BIGINT
    with pytest.raises(ConfigError) as caught:
        job_tables.ensure_predictions(engine, "errors_predictions", "customer_id", "str")
    message = str(caught.value)
    assert not caught.value.retryable
    assert "'customer_id' is BIGINT" in message and "entity_key_type: integer" in message and "00123" in message
    job_tables.ensure_predictions(engine, "errors_text", "customer_id", "str")
    with pytest.raises(ConfigError, match="'customer_id' is TEXT .* entity_key_type: string"):
        job_tables.ensure_predictions(engine, "errors_text", "customer_id", "int")
    job_tables.ensure_shadow(engine, "errors_predictions", "customer_id", "int", "errors")
    with pytest.raises(ConfigError, match="table errors_predictions_shadow: its key column 'customer_id' is BIGINT"):
        job_tables.ensure_shadow(engine, "errors_predictions", "customer_id", "str", "errors")
