"""The seconds of the parts of a step in the ledger (issue 26): ``scoring_runs.part_seconds`` by label, merged
like ``stage_seconds`` (a label recorded again replaces its value), a shard's label without its shard."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipeline import ledger
from pipeline.bookkeeping import ledger_label
from pipeline.staging import RunSpec
from pipeline.store import engines, operational


def test_part_seconds_merge_by_label_beside_the_stage_seconds(tmp_path: Path) -> None:
    engine = engines.engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    operational.ensure_ledger(engine)
    attempt = ledger.start_attempt(engine, job_id="j", run_id="r", partition_date=dt.date(2026, 11, 20),
                                   mode="persist", dry_run=False, model_name="m", model_version=1)
    assert ledger.as_json(ledger.get(engine, "j", "r")["part_seconds"]) == {}, "a new attempt: no part yet"
    ledger.update(engine, "j", "r", attempt, parts={"route": 0.25, "score[route a]": 1.23456})
    ledger.update(engine, "j", "r", attempt, stage="score", seconds=2.5, parts={"score[route a]": 1.5}, rows_scored=9)
    ledger.update(engine, "j", "r", attempt, stage="persist", seconds=0.5)
    row = ledger.get(engine, "j", "r")
    assert ledger.as_json(row["part_seconds"]) == {"route": 0.25, "score[route a]": 1.5}, "replaced, not added"
    assert ledger.as_json(row["stage_seconds"]) == {"score": 2.5, "persist": 0.5} and row["rows_scored"] == 9


def test_a_shards_part_is_labelled_without_its_shard() -> None:
    spec = RunSpec(job_id="j", run_id="r", attempt=1, partition_date="2026-11-20", model_name="m", model_version=1,
                   dry_run=False, staging_dir="/tmp/x", shards=3)
    route = spec.for_shard(2).for_route("frequent", {"name": "m2", "version": 1})
    assert ledger_label(route, route.label("score")) == "score[route frequent]"
    assert ledger_label(spec.for_shard(0), spec.for_shard(0).label("shadow")) == "shadow"
    assert ledger_label(spec, spec.label("route")) == "route"
