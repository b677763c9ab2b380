"""JSON records read as the job's batch source reads its export (pipeline.kernels.records): the ingested schema,
markers, blank policy, key types, bad numbers and bad text as ingest leaves them for validation's reasons."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from pipeline.errors import RequestError
from pipeline.kernels.conform import ingested_schema, missing_markers
from pipeline.kernels.records import RecordReading, check_records, text_of

INPUTS: list[dict[str, Any]] = [
    {"name": "tenure", "type": "int", "min": 0, "max": 120, "observed_min": 1, "observed_max": 72},
    {"name": "monthly_charges", "type": "float", "min": 0},
    {"name": "contract_type", "type": "category", "categories": ["monthly", "one-year"]},
    {"name": "paperless", "type": "bool"},
]
KEY = "customer_id"


def _csv(**kwargs: Any) -> RecordReading:
    return RecordReading(INPUTS, KEY, "csv", markers=missing_markers(INPUTS, KEY), **kwargs)


def test_a_csv_job_reads_records_into_its_ingested_schema() -> None:
    reading = _csv()
    table = reading.read([{KEY: "00123", "tenure": "12", "monthly_charges": "70.35", "contract_type": "monthly",
                           "paperless": "true"}])
    assert table.schema == ingested_schema("csv", INPUTS, KEY, pa.string(), (), missing_markers(INPUTS, KEY))
    row = table.to_pylist()[0]
    assert row[KEY] == "00123", "a zero-padded id stays text in a CSV job"
    assert (row["tenure"], row["monthly_charges"], row["contract_type"], row["paperless"]) == (12.0, 70.35,
                                                                                            "monthly", True)


def test_markers_blanks_and_bad_numbers_as_ingest_leaves_them() -> None:
    table = _csv(blank=["monthly_charges"]).read([
        {KEY: "1", "tenure": "NA", "monthly_charges": " ", "contract_type": "", "paperless": None},
        {KEY: "2", "tenure": "abc", "monthly_charges": "", "contract_type": "null", "paperless": "1"},
        {KEY: "3", "tenure": " ", "monthly_charges": "1e400"},
    ])
    rows = table.to_pylist()
    assert rows[0]["tenure"] is None and rows[0]["__blank__tenure"] == "NA" and rows[0]["__raw__tenure"] is None
    assert rows[0]["monthly_charges"] is None and rows[0]["__raw__monthly_charges"] is None, "blank policy"
    assert rows[0]["contract_type"] is None and rows[0]["paperless"] is None
    assert rows[1]["tenure"] is None and rows[1]["__raw__tenure"] == "abc", "invalid_number:tenure"
    assert rows[1]["contract_type"] is None and rows[1]["__blank__contract_type"] == "null"
    assert rows[2]["__raw__tenure"] == " ", "whitespace is an invalid number outside the blank policy"
    assert rows[2]["__raw__monthly_charges"] == "1e400" and rows[2]["monthly_charges"] is None
    assert rows[2]["contract_type"] is None, "a column the record lacks is missing"


def test_typed_json_values_read_like_their_text() -> None:
    typed = _csv().read([{KEY: 7, "tenure": 12, "monthly_charges": 70.35, "contract_type": "monthly",
                          "paperless": True}])
    text = _csv().read([{KEY: "7", "tenure": "12", "monthly_charges": "70.35", "contract_type": "monthly",
                         "paperless": "true"}])
    assert typed.equals(text)
    assert typed.column("monthly_charges")[0].as_py() == 70.35


def test_values_of_the_wrong_kind_are_the_batch_reasons_not_a_crash() -> None:
    rows = _csv().read([{KEY: "1", "tenure": True, "monthly_charges": [1, 2], "contract_type": 3,
                         "paperless": 1}]).to_pylist()[0]
    assert rows["__raw__tenure"] == "true" and rows["__raw__monthly_charges"] == "[1, 2]"
    assert rows["contract_type"] == "3" and rows["paperless"] is True


def test_just_outside_the_training_range_is_read_as_is() -> None:
    rows = _csv().read([{KEY: "1", "tenure": 72.0000001}, {KEY: "2", "tenure": "-0.0"}]).to_pylist()
    assert rows[0]["tenure"] == 72.0000001 and rows[1]["tenure"] == 0.0


def test_a_parquet_job_has_no_markers_and_takes_the_key_type_from_the_json() -> None:
    reading = RecordReading(INPUTS, KEY, "parquet")
    table = reading.read([{KEY: 1, "tenure": "NA"}, {KEY: 2, "tenure": 3}])
    assert table.schema.field(KEY).type == pa.int64()
    assert table.schema == ingested_schema("parquet", INPUTS, KEY, pa.int64())
    assert table.column("__raw__tenure").to_pylist() == ["NA", None], "NA is text, not a marker, in a parquet job"
    mixed = reading.read([{KEY: 1}, {KEY: "00002"}])
    assert mixed.column(KEY).to_pylist() == ["1", "00002"]


def test_entity_key_type_integer_reads_zero_padded_ids_as_numbers() -> None:
    reading = _csv(key_type="integer")
    assert reading.read([{KEY: "00123"}, {KEY: " 7 "}, {KEY: None}, {KEY: ""}, {KEY: "NA"}]).column(
        KEY).to_pylist() == [123, 7, None, None, None], "a CSV job's markers are missing keys, not unreadable ones"
    with pytest.raises(RequestError, match=r"row 1: the value of the entity key 'customer_id', read as an integer"):
        reading.read([{KEY: "1"}, {KEY: "C-17"}])


def test_a_bool_that_is_not_one_names_its_row_and_column_without_the_value() -> None:
    with pytest.raises(RequestError) as err:
        _csv().read([{KEY: "1", "paperless": "maybe"}])
    assert "row 0" in str(err.value) and "'paperless'" in str(err.value) and "maybe" not in str(err.value)


def test_lone_surrogates_and_nul_are_left_for_their_reasons() -> None:
    rows = _csv().read([{KEY: "a\udce9", "contract_type": "x\ud800y", "tenure": "1\x00"}]).to_pylist()[0]
    assert rows["__badtext__customer_id"] == b"a\xe9" and rows[KEY] == "a\ufffd"
    assert rows["__badtext__contract_type"] == "x\ud800y".encode("utf-8", "surrogatepass")
    assert rows["__raw__tenure"] == "1\x00"
    sql = RecordReading(INPUTS, KEY, "sql").read([{KEY: 1, "contract_type": "\udcff"}])
    assert sql.column("__badtext__contract_type").to_pylist() == [b"\xff"], "a sql job keeps bad text too"


def test_rename_takes_the_exports_name_or_the_jobs_but_not_both() -> None:
    reading = _csv(rename={"Customer ID": KEY, "Tenure (months)": "tenure"})
    rows = reading.read([{"Customer ID": "9", "Tenure (months)": "3", "ignored": 1}, {KEY: "8"}]).to_pylist()
    assert [(r[KEY], r["tenure"]) for r in rows] == [("9", 3.0), ("8", None)]
    with pytest.raises(RequestError, match="row 0: fields 'Customer ID', 'customer_id' are both read as column"):
        reading.read([{"Customer ID": "9", KEY: "9"}])


@pytest.mark.parametrize(("body", "message"), [
    ({"rows": []}, "must be a list of JSON objects"), ("x", "got text"), ([{"a": 1}, 5], "row 1 must be a JSON "
                                                                                      "object"),
])
def test_a_request_that_is_not_rows_is_refused(body: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        check_records(body)


def test_text_of_is_the_json_text() -> None:
    assert [text_of(v) for v in (None, "NA", 1, 1.5, True, float("nan"))] == [None, "NA", "1", "1.5", "true", "NaN"]
    assert json.loads(text_of(0.1 + 0.2) or "") == 0.1 + 0.2


def test_an_empty_request_is_an_empty_table() -> None:
    assert _csv().read([]).num_rows == 0
