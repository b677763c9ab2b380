"""A sql source's staged copy: the shards' row ranges cover every row once, across batches and schema changes."""

from __future__ import annotations

import types
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import steps
from pipeline.errors import StagingError
from pipeline.sources import sql as sqlsource
from pipeline.staging import RunSpec


def _spec(tmp_path: Path, shards: int, shard: int | None) -> RunSpec:
    return RunSpec("j", "r", 1, "2026-11-20", "churn", 1, False, str(tmp_path / "run"), shards=shards, shard=shard)


def _stage(tmp_path: Path, tables: list[pa.Table]) -> dict:
    folder = tmp_path / "run"
    folder.mkdir()
    staged = sqlsource._Segments(folder)
    for table in tables:
        staged.write(table)
    staged.close()
    rows = sum(sum(s["batches"]) for s in staged.segments)
    _spec(tmp_path, 1, None).write_json(steps.PLAN_STATE, {"source": {"rows": rows, "segments": staged.segments}})
    return {"rows": rows, "segments": staged.segments}


def _share(tmp_path: Path, shards: int, shard: int) -> list[pa.Table]:
    ctx = types.SimpleNamespace(spec=_spec(tmp_path, shards, shard), job=None)
    return list(sqlsource._staged(ctx, None))


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_the_shares_are_equal_consecutive_ranges_of_every_row(tmp_path: Path, shards: int) -> None:
    ints = [pa.table({"k": pa.array(range(i * 10, i * 10 + n), pa.int64()), "v": pa.array(["x"] * n, pa.string())})
            for i, n in enumerate([10, 3, 0, 8])]
    texts = [pa.table({"k": pa.array(range(100, 105), pa.int64()), "v": pa.array([1, 2, 3, 4, 5])})]  # v changes type
    state = _stage(tmp_path, ints + texts)
    assert state["rows"] == 26 and [len(s["batches"]) for s in state["segments"]] == [3, 1]
    got = [_share(tmp_path, shards, i) for i in range(shards)]
    sizes = [sum(t.num_rows for t in share) for share in got]
    assert sum(sizes) == 26 and max(sizes) - min(sizes) <= 1
    keys = [k for share in got for t in share for k in t.column("k").to_pylist()]
    expected = [k for t in ints + texts for k in t.column("k").to_pylist()]
    assert keys == expected  # every row once, in the order the query returned them
    types_seen = {t.schema.field("v").type for share in got for t in share}
    assert types_seen <= {pa.string(), pa.int64()}  # each batch keeps the types the query gave it


def test_an_empty_result_is_one_empty_share_with_the_columns(tmp_path: Path) -> None:
    _stage(tmp_path, [pa.table({"k": pa.array([], pa.int64()), "v": pa.array([], pa.string())})])
    [empty] = _share(tmp_path, 1, 0)
    assert empty.num_rows == 0 and empty.schema.names == ["k", "v"]


def test_a_missing_copy_says_the_staging_must_be_shared(tmp_path: Path) -> None:
    _stage(tmp_path, [pa.table({"k": [1, 2, 3]})])
    (tmp_path / "run" / "source-000.arrow").unlink()
    ctx = types.SimpleNamespace(spec=_spec(tmp_path, 2, 1), job=types.SimpleNamespace(
        source=types.SimpleNamespace(query_file=None, query="SELECT k FROM t WHERE d = :partition_date"),
        source_connection="warehouse"))
    with pytest.raises(StagingError, match=r"shard 1 cannot read the plan's copy of the query of source.query 'SELECT k "
                                          r"FROM t WHERE d = :partition_date' on connection 'warehouse' at .*: .*"
                                          r"SCORING_STAGING_DIR on a shared volume"):
        list(sqlsource._staged(ctx, "2026-11-20"))


def test_a_failed_read_keeps_no_partial_copy(tmp_path: Path) -> None:
    staged = sqlsource._Segments(tmp_path)
    staged.write(pa.table({"k": [1, 2, 3]}))
    staged.write(pa.table({"k": ["a"]}))  # a second file, being written when the read fails
    staged.abort()
    staged.abort()  # and again, after close: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source-000.arrow"]  # the finished file only (the plan's
    # state, written last, is what a shard reads; a failed plan writes none)
