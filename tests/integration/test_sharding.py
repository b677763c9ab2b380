"""Sharded scoring: the same table as unsharded; a failed shard is retried alone."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from pipeline import ledger, local, run, sharding, steps
from pipeline.config import load_job
from pipeline.errors import InputError
from pipeline.ledger import as_json
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _table(name: str) -> set[tuple]:
    with _engine().connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(
            f"SELECT customer_id, prediction, score, flags, model_version FROM {name} WHERE partition_date = :d"),
            {"d": DAY})}


def _quarantine(job_id: str) -> list[tuple]:
    with _engine().connect() as conn:
        return sorted((k, why, json.dumps(as_json(values), sort_keys=True)) for k, why, values in conn.execute(sa.text(
            "SELECT entity_key, reasons, row_values FROM scoring_quarantine WHERE job_id = :j"), {"j": job_id}))


def _jobs(home: Path, shards: int = 3) -> tuple[Any, Any]:
    source = {"path": str(home / "data" / "churn"), "batch_rows": 300}
    plain = load_job(write_job(home, job_id="churn_plain", source=source))
    sharded = load_job(write_job(home, job_id="churn_sharded", source={**source, "shards": shards}))
    return plain, sharded


def _five_files_with_a_duplicate_across_them(home: Path) -> list[Path]:
    folder = write_partition(home, n=2500, files=5)
    files = sorted(folder.glob("*.parquet"))
    first, second = pq.read_table(files[0]), pq.read_table(files[1])
    key = first["customer_id"][3].as_py()  # the same customer in file 0 (shard 0) and file 1 (shard 1)
    ids = second["customer_id"].to_pylist()
    ids[7] = key
    import pyarrow as pa

    pq.write_table(second.set_column(0, "customer_id", pa.array(ids, pa.int64())), files[1])
    return files


def test_sharded_and_unsharded_runs_give_identical_tables(any_db: str, home: Path) -> None:
    _five_files_with_a_duplicate_across_them(home)
    plain, sharded = _jobs(home)
    a = local.run_partition(plain, DAY, run_id="plain")
    b = local.run_partition(sharded, DAY, run_id="sharded")
    assert _table("churn_plain_predictions") == _table("churn_sharded_predictions")
    assert len(_table("churn_sharded_predictions")) == b["rows_written"] > 2000
    assert _quarantine("churn_plain") == _quarantine("churn_sharded")
    assert sum("duplicate_key:customer_id" in r for _, r, _ in _quarantine("churn_sharded")) == 2  # across shards
    for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored", "rows_written"):
        assert a[field] == b[field], field
    assert set(as_json(b["stage_seconds"])) >= {"ingest", "validate", "score", "combine", "persist"}


def test_a_failed_shard_is_retried_alone(home: Path) -> None:
    files = _five_files_with_a_duplicate_across_them(home)
    plain, sharded = _jobs(home)
    local.run_partition(plain, DAY, run_id="plain")
    spec = run.start(sharded, run_id="retry", partition_date=DAY)
    root, shards = sharding.plan(run.context(sharded, spec))
    assert [s.shard for s in shards] == [0, 1, 2] and root.shards == 3
    good = files[1].read_bytes()
    files[1].write_bytes(good[: len(good) // 2])  # shard 1 meets a broken file
    for shard in (shards[0], shards[2]):
        run.score_shard(run.context(sharded, shard))
    with pytest.raises(InputError, match="cannot read file"):
        run.score_shard(run.context(sharded, shards[1]))
    row = ledger.get(_engine(), "churn_sharded", "retry")
    assert row["status"] == "failed" and row["failed_stage"] == "ingest[shard 1]"
    done = {i: shards[i].path("scored").stat().st_mtime_ns for i in (0, 2)}
    files[1].write_bytes(good)  # fixed upstream: Airflow retries the failed mapped task only
    run.score_shard(run.context(sharded, shards[1]))
    assert {i: shards[i].path("scored").stat().st_mtime_ns for i in (0, 2)} == done, "shards 0 and 2 not redone"
    ctx = run.context(sharded, root)
    run.run_step(ctx, steps.COMBINE)
    run.run_step(ctx, steps.PERSIST)
    summary = run.finalize(ctx)
    assert summary["status"] == "success"
    assert _table("churn_sharded_predictions") == _table("churn_plain_predictions")
    assert not root.run_dir.exists(), "the staging area (all shards) is removed after success"


def test_more_shards_than_files_uses_one_per_file(home: Path) -> None:
    write_partition(home, n=600, files=2)
    _, sharded = _jobs(home, shards=8)
    spec = run.start(sharded, run_id="few", partition_date=DAY)
    root, shards = sharding.plan(run.context(sharded, spec))
    assert root.shards == 2 and len(shards) == 2
    assert dt.date.fromisoformat(root.partition_date) == DAY


def test_a_sharded_run_failing_its_threshold_has_one_partition_report(home: Path) -> None:
    from pipeline.errors import ValidationFailedError

    write_partition(home, n=1200, files=3)
    source = {"path": str(home / "data" / "churn"), "batch_rows": 300, "shards": 3}
    job = load_job(write_job(home, job_id="churn_sharded", source=source,
                             validation={"max_quarantine_share": 0.0}))  # any quarantined row fails the run
    with pytest.raises(ValidationFailedError, match=r"Report: .*churn_sharded/2026-11-20/strict\.html"):
        local.run_partition(job, DAY, run_id="strict")
    report = json.loads((home / "reports" / "churn_sharded" / str(DAY) / "strict.json").read_text())
    shards = [json.loads(p.read_text()) for p in sorted((home / "reports" / "churn_sharded" / str(DAY)).glob(
        "strict.shard-*.json"))]
    assert len(shards) == 3 and report["rows_in"] == sum(s["rows_in"] for s in shards) > 1000
    assert report["rows_quarantined"] == sum(s["rows_quarantined"] for s in shards) > 0
    assert (home / "reports" / "churn_sharded" / str(DAY) / "strict.html").exists()

