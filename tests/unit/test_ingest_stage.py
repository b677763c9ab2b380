"""The ingest stage: a partition folder's files into ``ingested.arrow`` in the contract's schema."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.errors import InputError
from pipeline.ingest import ingest_partition
from pipeline.kernels.conform import ingested_schema
from pipeline.registry import ModelVersion
from pipeline.staging import RunSpec, read_batches, staged_schema

DAY = "2026-11-20"
INPUTS = [{"name": "age", "type": "float", "nullable": False, "min": 0, "max": 120},
          {"name": "plan", "type": "category", "nullable": False, "categories": ["a", "b"]}]
CARD = {"name": "m", "version": 1, "inputs": INPUTS}


def _ctx(tmp_path: Path, fmt: str = "parquet", source: dict[str, Any] | None = None, entity_key_type: str | None = None,
         **validation: Any) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id", "entity_key_type": entity_key_type,
        "source": {"path": str(tmp_path / "data"), "layout": "date={date}", "format": fmt, "batch_rows": 3,
                   **(source or {})},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "validation": validation,
    }, Path("t.yaml"))
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=False, staging_dir=str(tmp_path / "stage"))
    (tmp_path / "stage").mkdir(exist_ok=True)
    return RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", CARD), engine=None)


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / f"date={DAY}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _ingested(ctx: RunContext) -> list[dict[str, Any]]:
    return [r for b in read_batches(ctx.path(steps.INGESTED), 100) for r in b.to_pylist()]


def test_parquet_files_become_the_contract_schema_with_rows_in(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "age": [30, 41, 52, 63], "plan": ["a", "b", "a", "b"],
                             "extra": [0, 0, 0, 0]}), folder / "part-0.parquet")
    pq.write_table(pa.table({"id": [5], "age": [70], "plan": ["b"], "extra": [1]}), folder / "part-1.parquet")
    ctx = _ctx(tmp_path)
    assert ingest_partition(ctx) == {"rows_in": 5}
    schema = staged_schema(ctx.path(steps.INGESTED))
    assert schema == ingested_schema("parquet", INPUTS, "id", pa.int64())
    assert schema.names == ["id", "age", "plan", "__raw__age", "__badtext__plan"]
    rows = _ingested(ctx)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["age"] for r in rows] == [30.0, 41.0, 52.0, 63.0, 70.0]
    assert all(r["__raw__age"] is None for r in rows)
    state = ctx.spec.read_json(steps.INGEST_STATE)
    assert state["files"] == [str(folder / "part-0.parquet"), str(folder / "part-1.parquet")]
    assert state["duplicate_keys"] == [] and state["ignored_columns"] == ["extra"]


def test_csv_unparseable_number_becomes_null_and_keeps_its_text(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "part-0.csv").write_text("id,age,plan\n1,30,a\n2,abc,b\n3, 41 ,a\n4,,b\n5,NaN,a\n")
    ctx = _ctx(tmp_path, fmt="csv")
    assert ingest_partition(ctx) == {"rows_in": 5}
    assert staged_schema(ctx.path(steps.INGESTED)) == ingested_schema("csv", INPUTS, "id", pa.string())
    rows = _ingested(ctx)
    # 'NaN' is one of pandas' missing-value markers: missing, its text kept (issue 25)
    assert [(r["id"], r["age"], r["__raw__age"], r["__blank__age"]) for r in rows] == [
        ("1", 30.0, None, None), ("2", None, "abc", None), ("3", 41.0, None, None), ("4", None, None, None),
        ("5", None, None, "NaN")]
    assert [r["plan"] for r in rows] == ["a", "b", "a", "b", "a"]


def test_parquet_nan_becomes_null_with_its_text(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "age": [float("nan"), 5.0], "plan": ["a", "a"]}),
                   _folder(tmp_path) / "p.parquet")
    ctx = _ctx(tmp_path)
    ingest_partition(ctx)
    assert [(r["age"], r["__raw__age"]) for r in _ingested(ctx)] == [(None, "nan"), (5.0, None)]


def test_duplicate_keys_across_two_files_are_in_the_ingest_state(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    pq.write_table(pa.table({"id": [1, 2, 3], "age": [1, 2, 3], "plan": ["a"] * 3}), folder / "a.parquet")
    pq.write_table(pa.table({"id": [3, 4, 1], "age": [4, 5, 6], "plan": ["b"] * 3}), folder / "b.parquet")
    ctx = _ctx(tmp_path)
    assert ingest_partition(ctx) == {"rows_in": 6}, "duplicates are kept: validation quarantines them"
    assert ctx.spec.read_json(steps.INGEST_STATE)["duplicate_keys"] == [1, 3]


def test_string_keys_keep_their_type_and_duplicates(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv").write_text("id,age,plan\nx,1,a\ny,2,b\nx,3,a\n")
    ctx = _ctx(tmp_path, fmt="csv")
    ingest_partition(ctx)
    assert staged_schema(ctx.path(steps.INGESTED)).field("id").type == pa.string()
    assert ctx.spec.read_json(steps.INGEST_STATE)["duplicate_keys"] == ["x"]


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    pq.write_table(pa.table({"id": [1], "age": [1], "plan": ["a"]}), folder / "a.parquet")
    pq.write_table(pa.table({"id": [2], "age": [2]}), folder / "b.parquet")
    ctx = _ctx(tmp_path)
    with pytest.raises(InputError) as err:
        ingest_partition(ctx)
    message = str(err.value)
    assert f"file {folder / 'b.parquet'} has no column(s) plan" in message
    assert "found: id, age" in message
    assert not ctx.path(steps.INGESTED).exists(), "a failed ingest stages nothing"


def test_an_empty_partition_fails_and_mentions_on_empty(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv").write_text("")
    ctx = _ctx(tmp_path, fmt="csv")
    with pytest.raises(InputError, match="on_empty") as err:
        ingest_partition(ctx)
    assert "hold no rows" in str(err.value) and str(tmp_path / "data" / f"date={DAY}") in str(err.value)
    assert err.value.counts == {"rows_in": 0}
    assert err.value.retryable is False


def test_an_empty_partition_with_on_empty_succeed_stages_an_empty_file(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "age": pa.array([], pa.float64()),
                             "plan": pa.array([], pa.string())}), _folder(tmp_path) / "p.parquet")
    ctx = _ctx(tmp_path, on_empty="succeed")
    assert ingest_partition(ctx) == {"rows_in": 0}
    assert staged_schema(ctx.path(steps.INGESTED)) == ingested_schema("parquet", INPUTS, "id", pa.int64())
    assert _ingested(ctx) == []
    assert ctx.spec.read_json(steps.INGEST_STATE)["duplicate_keys"] == []


def test_a_batch_of_only_bad_numbers_is_quarantined_not_a_partition_failure(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "age": ["1", "2", "3", "x"], "plan": ["a"] * 4}),
                   _folder(tmp_path) / "p.parquet")
    ctx = _ctx(tmp_path)  # batch_rows 3: the second batch is the one row 'x'
    assert ingest_partition(ctx) == {"rows_in": 4}
    assert [r["__raw__age"] for r in _ingested(ctx)] == [None, None, None, "x"]


# -- what a partition folder may hold (tests/integration/test_source_files.py runs them end to end)
def test_source_ignore_leaves_out_named_files_and_anything_else_fails(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "part-0.csv").write_text("id,age,plan\n1,30,a\n")
    (folder / "Manifest.JSON").write_text('{"rows": 1}')
    with pytest.raises(InputError, match=r"holds 'Manifest.JSON': neither .* source.ignore .*'\*\.JSON'"):
        ingest_partition(_ctx(tmp_path, fmt="csv"))
    ctx = _ctx(tmp_path, fmt="csv", source={"ignore": ["*.json"]})  # globs match without case
    assert ingest_partition(ctx) == {"rows_in": 1}
    assert ctx.spec.read_json(steps.INGEST_STATE)["files"] == [str(folder / "part-0.csv")]


def test_gzip_csv_is_read_and_a_file_not_compressed_as_named_is_reported(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "part-0.CSV.GZ").write_bytes(gzip.compress(b"id,age,plan\n1,30,a\n2,31,b\n"))
    assert ingest_partition(_ctx(tmp_path, fmt="csv")) == {"rows_in": 2}
    (folder / "part-1.csv.gz").write_text("id,age,plan\n3,30,a\n")
    with pytest.raises(InputError, match=r"cannot read file .*part-1.csv.gz.*\(or not compressed as its name says\)"):
        ingest_partition(_ctx(tmp_path, fmt="csv"))


def test_an_empty_compressed_csv_is_an_empty_file_not_a_broken_one(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(InputError, match="hold no rows"):
        ingest_partition(_ctx(tmp_path, fmt="csv"))


def test_a_csv_value_that_is_not_utf8_is_kept_as_bytes_not_a_failed_file(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv").write_bytes("id,age,plan\n1,30,caf\u00e9\n".encode("latin-1"))
    ctx = _ctx(tmp_path, fmt="csv")
    assert ingest_partition(ctx) == {"rows_in": 1}
    [row] = _ingested(ctx)
    assert (row["plan"], row["__badtext__plan"]) == ("caf\ufffd", b"caf\xe9")  # validation quarantines it
    (_folder(tmp_path) / "p.csv").write_bytes("id,age,plan\n1,30,a\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"p.csv is not UTF-8 text: it looks like UTF-16LE .* re-run the partition"):
        ingest_partition(_ctx(tmp_path, fmt="csv"))


def test_csv_integer_keys_are_trimmed_and_a_later_text_key_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "p.csv").write_text("id,age,plan\n 7 ,30,a\n007,31,b\n")
    ctx = _ctx(tmp_path, fmt="csv")
    ingest_partition(ctx)
    assert [r["id"] for r in _ingested(ctx)] == [" 7 ", "007"]  # text by default: never guessed (issue 25)
    ctx = _ctx(tmp_path, fmt="csv", entity_key_type="integer")
    ingest_partition(ctx)
    assert [r["id"] for r in _ingested(ctx)] == [7, 7]
    # integer keys (the job says so); the text comes after the first MB
    rows = 150_000
    (folder / "p.csv").write_text("id,age,plan\n" + "".join(f"{i},30,a\n" for i in range(rows)) + "x-9,1,b\n")
    assert (folder / "p.csv").stat().st_size > 1 << 20
    with pytest.raises(InputError) as err:
        ingest_partition(_ctx(tmp_path, fmt="csv", entity_key_type="integer"))
    assert (f"partition {DAY}: file {folder / 'p.csv'}, column 'id' (the entity key) holds 'x-9' in data row "
            f"{rows + 1}, which cannot be read as an integer") in str(err.value)


def test_a_csv_number_column_of_only_text_names_the_column_and_values(tmp_path: Path) -> None:
    (_folder(tmp_path) / "p.csv").write_text("id,age,plan\n1,old,a\n2,young,b\n")
    with pytest.raises(InputError, match=r"p.csv, column 'age' holds text .*'old', 'young'.* fix the export"):
        ingest_partition(_ctx(tmp_path, fmt="csv"))
