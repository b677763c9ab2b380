"""Staging: atomic staged files, batched and projected reads, row counts, the run spec."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import steps
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_rows, staged_schema


def _spec(tmp_path: Path, **kw: object) -> RunSpec:
    base = {"job_id": "t", "run_id": "r1", "attempt": 1, "partition_date": "2026-11-20", "model_name": "m",
            "model_version": 1, "dry_run": False, "staging_dir": str(tmp_path / "stage")}
    return RunSpec(**{**base, **kw})  # type: ignore[arg-type]


def _write(path: Path, *tables: pa.Table) -> int:
    with StagedWriter(path) as writer:
        for table in tables:
            writer.write(table)
    return writer.rows


def test_writer_is_atomic_no_final_file_and_no_temp_left_on_error(tmp_path: Path) -> None:
    path = tmp_path / "x.arrow"
    with pytest.raises(RuntimeError, match="boom"), StagedWriter(path) as writer:
        writer.write(pa.table({"a": [1, 2]}))
        assert writer.tmp.exists() and not path.exists(), "rows go to the temp file first"
        raise RuntimeError("boom")
    assert not path.exists()
    assert not writer.tmp.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_renames_on_close_and_counts_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.arrow"
    rows = _write(path, pa.table({"a": [1, 2]}), pa.record_batch({"a": [3]}))
    assert rows == 3
    assert [p.name for p in tmp_path.iterdir()] == ["x.arrow"]
    assert [b.to_pylist() for b in read_batches(path, 10)] == [[{"a": 1}, {"a": 2}], [{"a": 3}]]


def test_writer_casts_later_tables_to_the_first_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.arrow"
    schema = pa.schema([("a", pa.float64()), ("b", pa.string())])
    with StagedWriter(path, schema) as writer:
        writer.write(pa.table({"a": pa.array([1, 2], pa.int64()), "b": pa.nulls(2)}))
    assert staged_schema(path) == schema
    assert [r["a"] for b in read_batches(path, 10) for r in b.to_pylist()] == [1.0, 2.0]


def test_empty_writer_with_schema_leaves_a_readable_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrow"
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    with StagedWriter(path, schema) as writer:
        pass
    assert writer.rows == 0
    assert staged_schema(path) == schema
    assert staged_rows(path) == 0
    assert list(read_batches(path, 5)) == []


def test_empty_writer_without_schema_refuses_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.arrow"
    with pytest.raises(ValueError, match="no rows and no schema"), StagedWriter(path):
        pass
    assert not path.exists()


def test_read_batches_splits_to_batch_rows_across_files_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.arrow", tmp_path / "b.arrow"
    _write(first, pa.table({"k": list(range(5))}), pa.table({"k": [5, 6]}))
    _write(second, pa.table({"k": list(range(7, 12))}))
    batches = list(read_batches([first, second], 3))
    assert [b.num_rows for b in batches] == [3, 2, 2, 3, 2]
    assert all(b.num_rows <= 3 for b in batches)
    assert [v for b in batches for v in b.column("k").to_pylist()] == list(range(12))


def test_read_batches_projects_columns_in_the_callers_order(tmp_path: Path) -> None:
    path = tmp_path / "x.arrow"
    _write(path, pa.table({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]}))
    batches = list(read_batches(path, 10, ["c", "a"]))
    assert [b.schema.names for b in batches] == [["c", "a"]]
    assert batches[0].to_pylist() == [{"c": 0.5, "a": 1}, {"c": 1.5, "a": 2}]


def test_read_batches_reads_parquet_staged_files(tmp_path: Path) -> None:
    path = tmp_path / "outbox.parquet"
    with StagedWriter(path, row_group_rows=2) as writer:
        writer.write(pa.table({"a": [1, 2, 3]}))
        writer.write(pa.table({"a": [4, 5]}))
    assert staged_rows(path) == 5
    assert [b.column("a").to_pylist() for b in read_batches(path, 2)] == [[1, 2], [3, 4], [5]]


def test_staged_rows_adds_up_every_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.arrow", tmp_path / "b.arrow"
    _write(first, pa.table({"k": [1, 2, 3]}), pa.table({"k": [4]}))
    _write(second, pa.table({"k": [5, 6]}))
    assert staged_rows(first) == 4
    assert staged_rows([first, second]) == 6


def test_run_spec_round_trips_through_a_dict(tmp_path: Path) -> None:
    spec = _spec(tmp_path, mode="push", resend=True, shards=4, shard=2)
    data = spec.to_dict()
    assert data["shard"] == 2 and data["mode"] == "push" and data["staging_dir"] == str(tmp_path / "stage")
    assert RunSpec.from_dict(data) == spec
    assert RunSpec.from_dict(_spec(tmp_path).to_dict()) == _spec(tmp_path)


def test_paths_of_a_run_and_of_its_shards(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    spec = _spec(tmp_path)
    assert spec.path(steps.SCORED) == root / "scored.arrow"
    assert spec.parts(steps.SCORED) == [root / "scored.arrow"]
    sharded = _spec(tmp_path, shards=3)
    assert sharded.parts(steps.VALID) == [root / f"shard-00{i}" / "valid.arrow" for i in range(3)]
    shard = sharded.for_shard(1)
    assert shard.shard == 1 and sharded.shard is None, "for_shard returns a new spec"
    assert shard.work_dir == root / "shard-001"
    assert shard.path(steps.FEATURES) == root / "shard-001" / "features.arrow"
    assert shard.parts(steps.FEATURES) == [shard.path(steps.FEATURES)], "a shard has its one file"


def test_json_state_is_written_and_read_back(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.work_dir.mkdir(parents=True)
    path = spec.write_json(steps.INGEST_STATE, {"files": ["a"], "duplicate_keys": [3]})
    assert path == spec.work_dir / "ingest.json"
    assert spec.read_json(steps.INGEST_STATE) == {"files": ["a"], "duplicate_keys": [3]}
    assert not list(spec.work_dir.glob("*.tmp"))


CASCADE = {"routes": {"frequent": {"name": "f", "version": 2}}, "default": {"name": "d", "version": 1}, "gate": None}


def test_what_a_task_is_sharding_and_cascade_named_by_the_spec(tmp_path: Path) -> None:
    """Stages ask the spec what a task is (issue 26): a whole partition's, a shard's, a cascade route's."""
    run = _spec(tmp_path)
    assert (run.sees_partition, run.is_shard, run.reads_plan, run.checks_drift) == (True, False, False, True)
    assert (run.label("validate"), run.report_suffix, run.shard_index, run.route_models) == ("validate", "", 0, {})
    root = _spec(tmp_path, shards=3)
    assert [s.shard for s in root.shard_specs()] == [0, 1, 2] == [s.shard for s in root.part_specs()]
    assert root.parts(steps.SCORED) == [root.run_dir / f"shard-00{i}" / "scored.arrow" for i in range(3)]
    shard = root.for_shard(2)
    assert (shard.sees_partition, shard.is_shard, shard.reads_plan, shard.checks_drift) == (False, True, True, False)
    assert (shard.label("score"), shard.report_suffix, shard.shard_index) == ("score[shard 2]", ".shard-002", 2)
    assert shard.part_specs() == [shard]
    router = _spec(tmp_path, cascade=CASCADE)
    assert router.routes_after_score and router.route_models == {"frequent": {"name": "f", "version": 2},
                                                                 "__default__": {"name": "d", "version": 1}}
    route = router.for_route("frequent", router.route_models["frequent"])
    assert (route.model_name, route.model_version, route.cascade, route.route_models) == ("f", 2, None, {})
    assert (route.sees_partition, route.reads_plan, route.checks_drift, route.routes_after_score) == (
        False, False, True, False)
    assert route.work_dir == route.run_dir / "route-frequent" and route.report_suffix == ".route-frequent"
    assert route.label("validate") == "validate[route frequent]"
    in_shard = _spec(tmp_path, cascade=CASCADE, shards=3, shard=1).for_route("frequent", CASCADE["routes"]["frequent"])
    assert in_shard.work_dir == in_shard.run_dir / "shard-001" / "route-frequent"
    assert in_shard.report_suffix == ".route-frequent.shard-001", "the file name of a sharded route's report as before"
    assert (in_shard.label("score"), in_shard.reads_plan, in_shard.checks_drift) == (
        "score[route frequent][shard 1]", False, False)
    assert in_shard.parts(steps.VALID) == [in_shard.work_dir / "valid.arrow"]
