"""Ingest reads a file as the data scientist's reader did (issue 25: 7, 9, 10 and the bad-bytes interface).

Missing-value markers in CSV files (pandas' default list, per job and per column, the card's per-input
list), the entity key's declared type (``00123`` stays ``00123``), text that is not UTF-8 (kept as bytes
beside a replaced text, never a failed file), files in another encoding and ragged rows (named).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import parse_job
from pipeline.errors import ConfigError, InputError
from pipeline.kernels.columns import BADTEXT_PREFIX, BLANK_PREFIX, DEFAULT_NULL_VALUES
from pipeline.kernels.conform import missing_markers, original_values
from pipeline.sources import files as ingest_module
from pipeline.sources.files import ingest_files as ingest
from pipeline.sources.files import partition_keys, text_encoding

DAY = dt.date(2026, 11, 20)
INPUTS = [{"name": "age", "type": "float"}, {"name": "plan", "type": "category"}]


def _ingest(files: list[Path], fmt: str = "csv", inputs: list[dict[str, Any]] | None = None,
            **kw: Any) -> tuple[list[dict[str, Any]], Any]:
    out: list[pa.Table] = []
    result = ingest(files, fmt=fmt, inputs=inputs or INPUTS, key="id", partition_date=DAY, batch_rows=2,
                    write=out.append, **kw)
    for table in out:
        assert table.schema == result.schema
    return [row for table in out for row in table.to_pylist()], result


def _csv(tmp_path: Path, data: bytes | str, name: str = "p.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# -- missing-value markers ---------------------------------------------------------------------
def test_the_default_markers_are_pandas_own() -> None:
    from pandas._libs.parsers import STR_NA_VALUES

    assert sorted(DEFAULT_NULL_VALUES) == sorted(STR_NA_VALUES)
    assert len(set(DEFAULT_NULL_VALUES)) == len(DEFAULT_NULL_VALUES)


def test_a_csv_reads_missing_values_as_pandas_does_and_keeps_their_text(tmp_path: Path) -> None:
    import pandas as pd

    path = _csv(tmp_path, "id,age,plan\n1,30,a\n2,NA,None\n3,,NA\n4,n/a,null\n5,NaN,#N/A\n6, NA ,na\n")
    rows, result = _ingest([path])
    frame = pd.read_csv(path, dtype={"id": str})
    assert [r["age"] for r in rows][:5] == [30.0, None, None, None, None]
    assert [r["plan"] for r in rows] == [None if pd.isna(v) else v for v in frame["plan"]]
    # a marker is the whole text, exactly: ' NA ' is not a number (quarantined with its text), 'na' a category
    assert (rows[5]["age"], rows[5]["__raw__age"], rows[5]["plan"]) == (None, " NA ", "na")
    assert [original_values(r)["plan"] for r in rows] == ["a", "None", "NA", "null", "#N/A", "na"]
    assert [original_values(r)["age"] for r in rows] == [30.0, "NA", None, "n/a", "NaN", " NA "]
    assert [r["__raw__age"] for r in rows][:5] == [None] * 5  # a marker is missing, not an invalid number
    assert {BLANK_PREFIX + n for n in ("id", "age", "plan")} <= set(result.schema.names)


def test_markers_by_column_card_and_job_in_that_order(tmp_path: Path) -> None:
    inputs = [{"name": "age", "type": "float"}, {"name": "plan", "type": "category", "missing_values": [""]},
              {"name": "tier", "type": "category"}]
    markers = missing_markers(inputs, "id", ["", "-"], {"tier": []})
    assert markers == {"id": ("", "-"), "age": ("", "-"), "plan": ("",), "tier": ()}
    assert missing_markers(inputs, "id")["age"] == DEFAULT_NULL_VALUES
    path = _csv(tmp_path, "id,age,plan,tier\n1,-,NA,\n2,NA,,NA\n3,5,a,b\n")
    rows, result = _ingest([path], inputs=inputs, markers=markers)
    assert [(r["age"], r["__raw__age"]) for r in rows] == [(None, None), (None, "NA"), (5.0, None)]
    assert [r["plan"] for r in rows] == ["NA", None, "a"]  # the card keeps 'NA' a category of plan
    assert [r["tier"] for r in rows] == ["", "NA", "b"]  # opted out: every text is a value, the empty one too
    assert BLANK_PREFIX + "tier" not in result.schema.names  # nothing can be read as missing there
    assert BLANK_PREFIX + "plan" not in result.schema.names  # only the empty text: nothing to keep


def test_a_marker_column_the_job_does_not_read_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"null_values_by_column names column\(s\) 'Plan'.*did you mean 'plan'"):
        missing_markers(INPUTS, "id", None, {"Plan": []})


def test_blank_is_missing_still_adds_whitespace_in_numeric_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,age,plan\n1,  ,a\n2,NA,b\n3,,b\n")
    strict, _ = _ingest([path])
    assert [(r["age"], r["__raw__age"]) for r in strict] == [(None, "  "), (None, None), (None, None)]
    lenient, _ = _ingest([path], blank_is_missing=["age"])
    assert [(r["age"], r["__raw__age"], r[BLANK_PREFIX + "age"]) for r in lenient] == [
        (None, None, "  "), (None, None, "NA"), (None, None, None)]


def test_markers_are_for_csv_only_and_quoted_in_yaml() -> None:
    base = {"job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "model": {"name": "m"},
            "output": {"table": "t"}}
    job = parse_job({**base, "source": {"path": "d", "format": "csv", "null_values": ["NA", -999],
                                        "null_values_by_column": {"plan": []}}}, Path("t.yaml"))
    assert job.source.null_values == ["NA", "-999"] and job.source.null_values_by_column == {"plan": []}
    with pytest.raises(ConfigError, match=r"source.null_values belong\(s\) to CSV files"):
        parse_job({**base, "source": {"path": "d", "null_values": ["NA"]}}, Path("t.yaml"))
    with pytest.raises(ConfigError, match=r"holds None, which YAML read as a null.*quote each marker"):
        parse_job({**base, "source": {"path": "d", "format": "csv", "null_values": ["NA", None]}}, Path("t.yaml"))


# -- the entity key's type ----------------------------------------------------------------------
def test_zero_padded_csv_keys_stay_text_and_are_not_duplicates(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,age,plan\n00123,30,a\n123,31,b\n 7 ,32,a\n")
    rows, result = _ingest([path])
    assert result.schema.field("id").type == pa.string()
    assert [r["id"] for r in rows] == ["00123", "123", " 7 "] and result.duplicate_keys == []
    assert partition_keys([path], "csv", "id") == []
    rows, result = _ingest([path], key_type="integer")
    assert [r["id"] for r in rows] == [123, 123, 7] and result.duplicate_keys == [123]
    assert partition_keys([path], "csv", "id", key_type="integer") == [123]


def test_an_integer_key_that_is_text_names_the_setting(tmp_path: Path) -> None:
    path = _csv(tmp_path, "id,age,plan\n1,30,a\nC-2,31,b\n")
    with pytest.raises(InputError, match=r"'C-2' in data row 2, which cannot be read as an integer .*entity_key_type: "
                                         r"integer, from the job file or the model card; set entity_key_type: string"):
        _ingest([path], key_type="integer")


def test_parquet_keys_keep_their_declared_type_unless_the_job_or_card_says(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "age": [1.0, 2.0], "plan": ["a", "b"]}), tmp_path / "p.parquet")
    rows, result = _ingest([tmp_path / "p.parquet"], "parquet")
    assert result.schema.field("id").type == pa.int64() and [r["id"] for r in rows] == [1, 2]
    rows, result = _ingest([tmp_path / "p.parquet"], "parquet", key_type="string")
    assert result.schema.field("id").type == pa.string() and [r["id"] for r in rows] == ["1", "2"]


def test_the_key_type_comes_from_the_job_then_the_card() -> None:
    from pipeline.keys import entity_key_type

    base = {"job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "model": {"name": "m"},
            "output": {"table": "t"}, "source": {"path": "d"}}
    plain = parse_job(base, Path("t.yaml"))
    assert entity_key_type(plain, {}) is None
    assert entity_key_type(plain, {"entity_key_type": "integer"}) == "integer"
    assert entity_key_type(parse_job({**base, "entity_key_type": "string"}, Path("t.yaml")),
                           {"entity_key_type": "integer"}) == "string"


# -- bytes that are not UTF-8 -------------------------------------------------------------------
def test_bad_bytes_in_a_csv_are_kept_beside_a_replaced_text(tmp_path: Path) -> None:
    path = _csv(tmp_path, b"id,age,plan\n1,30,caf\xe9\nk\xff,4\xfe,b\n3,31,ok\xc3\n4,32,\xc3\xa9t\xc3\xa9\n")
    rows, result = _ingest([path])
    assert {BADTEXT_PREFIX + n for n in ("id", "age", "plan")} <= set(result.schema.names)
    assert result.schema.field(BADTEXT_PREFIX + "plan").type == pa.binary()
    assert [r["plan"] for r in rows] == ["caf\ufffd", "b", "ok\ufffd", "\u00e9t\u00e9"]
    assert [r[BADTEXT_PREFIX + "plan"] for r in rows] == [b"caf\xe9", None, b"ok\xc3", None]
    assert (rows[1]["id"], rows[1][BADTEXT_PREFIX + "id"]) == ("k\ufffd", b"k\xff")
    assert (rows[1]["age"], rows[1][BADTEXT_PREFIX + "age"]) == (None, b"4\xfe")  # not a number either
    restored = [original_values(r) for r in rows]
    assert restored[0]["plan"].encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert restored[1]["id"].encode("utf-8", "surrogateescape") == b"k\xff"
    assert restored[1]["age"].encode("utf-8", "surrogateescape") == b"4\xfe"
    assert restored[3]["plan"] == "\u00e9t\u00e9"


def test_a_bad_byte_deep_in_a_csv_rereads_only_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK", 4096)  # many blocks: the bad byte is in a late one
    lines = [f"{i},{i % 90},p{i % 3}\n".encode() for i in range(3000)]
    lines[2500] = b"2500,1,caf\xe9\n"
    path = _csv(tmp_path, b"id,age,plan\n" + b"".join(lines))
    rows, result = _ingest([path])
    assert [r["id"] for r in rows] == [str(i) for i in range(3000)] and result.rows == 3000
    bad = [r for r in rows if r[BADTEXT_PREFIX + "plan"] is not None]
    assert [(r["id"], r["plan"]) for r in bad] == [("2500", "caf\ufffd")]


def test_a_clean_csv_never_takes_the_slow_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(table: pa.Table) -> pa.Table:
        raise AssertionError("repaired a clean file")

    monkeypatch.setattr(ingest_module, "_repaired", refuse)
    rows, _ = _ingest([_csv(tmp_path, "id,age,plan\n1,30,caf\u00e9\n")])
    assert rows[0]["plan"] == "caf\u00e9" and rows[0][BADTEXT_PREFIX + "plan"] is None


def test_bad_bytes_in_parquet_text_columns(tmp_path: Path) -> None:
    def text(values: list[bytes | None]) -> pa.Array:
        return pa.array(values, pa.binary()).view(pa.string())

    plan = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int32()), text([b"a", b"b\xe9"]))
    pq.write_table(pa.table({"id": text([b"k1", b"k\xe92", None]), "age": [1.0, 2.0, 3.0], "plan": plan}),
                   tmp_path / "p.parquet")
    rows, result = _ingest([tmp_path / "p.parquet"], "parquet")
    assert [n for n in result.schema.names if n.startswith(BADTEXT_PREFIX)] == ["__badtext__id", "__badtext__plan"]
    assert [(r["id"], r[BADTEXT_PREFIX + "id"]) for r in rows] == [("k1", None), ("k\ufffd2", b"k\xe92"), (None, None)]
    assert [(r["plan"], r[BADTEXT_PREFIX + "plan"]) for r in rows] == [("a", None), ("b\ufffd", b"b\xe9"), ("a", None)]
    assert original_values(rows[1])["id"].encode("utf-8", "surrogateescape") == b"k\xe92"


# -- other encodings, ragged rows ---------------------------------------------------------------
@pytest.mark.parametrize("encoding, named", [("utf-16", "UTF-16LE"), ("utf-16-le", "UTF-16LE"),
                                             ("utf-16-be", "UTF-16BE"), ("utf-32", "UTF-32LE")])
def test_a_utf16_csv_fails_naming_its_encoding_without_a_nul(tmp_path: Path, encoding: str, named: str) -> None:
    path = _csv(tmp_path, "id,age,plan\n1,30,a\n2,31,b\n".encode(encoding))
    with pytest.raises(InputError) as err:
        _ingest([path])
    message = str(err.value)
    assert f"partition {DAY}: file {path} is not UTF-8 text: it looks like {named}" in message
    assert "Re-export it as UTF-8" in message and f"iconv -f {named} -t UTF-8" in message
    assert "\x00" not in message and message.isprintable()


def test_text_encoding_leaves_utf8_and_binary_alone() -> None:
    assert text_encoding("id,plan\n1,caf\u00e9\n".encode("utf-8-sig")) is None
    assert text_encoding(b"id,plan\n1,a\x00b\n") is None  # one NUL in a value: validation's business
    assert text_encoding(bytes(64)) is None


def test_a_ragged_row_is_named_by_its_row(tmp_path: Path) -> None:
    path = _csv(tmp_path, 'id,age,plan\n1,30,"a\nb"\n2,31\n3,32,c\n')
    with pytest.raises(InputError) as err:
        _ingest([path])
    message = str(err.value)
    assert message.startswith(f"partition {DAY}: file {path}: data row 2 (row 3 of the file, counting the header) "
                              "has 2 field(s) where the header has 3")
    assert "re-run the partition" in message and "31" not in message  # no value of the row quoted


def test_a_ragged_row_deep_in_a_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "CSV_BLOCK", 4096)
    path = _csv(tmp_path, "id,age,plan\n" + "".join(f"{i},1,a\n" for i in range(5000)) + "x,1,a,\x00\n")
    with pytest.raises(InputError, match=r"data row 5001 \(row 5002 of the file, counting the header\) has 4 field"):
        _ingest([path])


def test_a_header_that_is_not_utf8_or_holds_a_nul_is_named_without_its_bytes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"p.csv: its header row \(the column names\) is not UTF-8 text. Re-export"):
        _ingest([_csv(tmp_path, b"id,age,plan,n\xe9\n1,2,a,x\n")])
    with pytest.raises(InputError) as err:
        _ingest([_csv(tmp_path, b"id,ag\x00e,plan\n1,2,a\n")])
    assert "(found: id, ag\\x00e, plan)" in str(err.value) and "\x00" not in str(err.value)
