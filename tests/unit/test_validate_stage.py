"""The validate stage: ``ingested`` -> ``valid`` + ``quarantine`` with reason codes, a report, the threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline import steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.errors import ValidationFailedError
from pipeline.kernels.conform import contract_schema, original_values
from pipeline.kernels.validate import contract_expectations
from pipeline.registry import ModelVersion
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_schema
from pipeline.validate import validate_file

DAY = "2026-11-20"
INPUTS = [{"name": "age", "type": "float", "nullable": False, "min": 0, "max": 120},
          {"name": "plan", "type": "category", "nullable": False, "categories": ["a", "b"]}]
CARD = {"name": "m", "version": 1, "inputs": INPUTS}
SCHEMA = contract_schema(INPUTS, "id", pa.int64())
# id, age, plan, __raw__age (as ingest writes them) and the reasons each row must get
ROWS: list[tuple[Any, Any, Any, Any, str | None]] = [
    (1, 30.0, "a", None, None),
    (2, 150.0, "a", None, "be_between:age"),
    (3, 40.0, "c", None, "unknown_category:plan"),
    (4, None, "b", "abc", "not_null:age; invalid_number:age"),  # not nullable and unparseable
    (None, 20.0, "a", None, "not_null:id"),
    (6, 50.0, None, None, "not_null:plan"),
    (7, 0.0, "b", None, None),
    (8, 120.0, "a", None, None),
    (9, -1.0, "zz", None, "be_between:age; unknown_category:plan"),
]


@pytest.fixture(autouse=True)
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCORING_REPORTS_DIR", str(tmp_path / "reports"))
    return tmp_path / "reports"


def _ctx(tmp_path: Path, batch_rows: int = 3, share: float = 1.0, duplicates: list[Any] | None = None,
         rows: list[tuple[Any, ...]] | None = None, **validation: Any) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
        "source": {"path": str(tmp_path / "data"), "batch_rows": batch_rows},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
        "validation": {"max_quarantine_share": share, **validation},
    }, Path("t.yaml"))
    stage = tmp_path / f"stage-{batch_rows}"
    stage.mkdir()
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date=DAY, model_name="m", model_version=1,
                   dry_run=False, staging_dir=str(stage))
    ctx = RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", CARD), engine=None)
    rows = ROWS if rows is None else rows
    with StagedWriter(ctx.path(steps.INGESTED), SCHEMA) as writer:
        writer.write(pa.table({name: [r[i] for r in rows] for i, name in enumerate(SCHEMA.names)}, SCHEMA))
    spec.write_json(steps.INGEST_STATE, {"files": [], "duplicate_keys": duplicates or [], "ignored_columns": []})
    return ctx


def _read(path: Path) -> list[dict[str, Any]]:
    return [r for b in read_batches(path, 100) for r in b.to_pylist()]


def _split(ctx: RunContext) -> tuple[list[Any], dict[Any, str]]:
    valid = [r["id"] for r in _read(ctx.path(steps.VALID))]
    quarantined = {r["id"]: r["reasons"] for r in _read(ctx.path(steps.QUARANTINE))}
    return valid, quarantined


EXPECTED_VALID = [r[0] for r in ROWS if r[4] is None]
EXPECTED_QUARANTINE = {r[0]: r[4] for r in ROWS if r[4] is not None}


def test_contract_expectations_cover_nulls_ranges_categories_and_numbers() -> None:
    reasons = [e["reason"] for e in contract_expectations(INPUTS, "id")]
    assert reasons == ["not_null:id", "not_null:age", "be_between:age", "not_null:plan",
                       "unknown_category:plan", "invalid_number:age"]
    flagged = contract_expectations(INPUTS, "id", unknown_categories="flag")
    assert [e["on_fail"] for e in flagged if e["reason"] == "unknown_category:plan"] == ["flag"]


def test_rows_are_split_with_exact_keys_and_reasons(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    counts = validate_file(ctx)
    assert counts == {"rows_valid": 3, "rows_quarantined": 6}
    valid, quarantined = _split(ctx)
    assert valid == EXPECTED_VALID == [1, 7, 8]
    assert quarantined == EXPECTED_QUARANTINE
    assert staged_schema(ctx.path(steps.VALID)).names == [*SCHEMA.names, steps.FLAGS]
    assert staged_schema(ctx.path(steps.QUARANTINE)).names == [*SCHEMA.names, "reasons"]
    assert all(r[steps.FLAGS] is None for r in _read(ctx.path(steps.VALID)))
    bad_number = next(r for r in _read(ctx.path(steps.QUARANTINE)) if r["id"] == 4)
    assert original_values(bad_number) == {"id": 4, "age": "abc", "plan": "b",
                                          "reasons": "not_null:age; invalid_number:age"}


def test_unknown_categories_can_be_flagged_instead_of_quarantined(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, unknown_categories="flag")
    assert validate_file(ctx) == {"rows_valid": 4, "rows_quarantined": 5}
    valid = {r["id"]: r[steps.FLAGS] for r in _read(ctx.path(steps.VALID))}
    assert valid == {1: None, 3: "unknown_category:plan", 7: None, 8: None}
    _, quarantined = _split(ctx)
    assert quarantined[9] == "be_between:age; unknown_category:plan", "a quarantined row lists its flags too"


def test_duplicate_keys_from_ingest_are_quarantined(tmp_path: Path) -> None:
    rows = [(1, 1.0, "a", None, None), (2, 2.0, "a", None, None), (1, 3.0, "b", None, None)]
    ctx = _ctx(tmp_path, rows=rows, duplicates=[1])
    assert validate_file(ctx) == {"rows_valid": 1, "rows_quarantined": 2}
    valid, _ = _split(ctx)
    assert valid == [2]
    assert [r["reasons"] for r in _read(ctx.path(steps.QUARANTINE))] == ["duplicate_key:id"] * 2


def test_the_report_json_is_written_under_the_reports_dir(tmp_path: Path, reports: Path) -> None:
    validate_file(_ctx(tmp_path))
    path = reports / "t" / DAY / "r1.json"
    report = json.loads(path.read_text())
    assert path.with_suffix(".html").exists()
    assert (report["rows_in"], report["rows_valid"], report["rows_quarantined"]) == (9, 3, 6)
    assert report["rows_evaluated"] == 9 and report["model"] == "m v1"
    assert report["unexpected_counts"] == {"be_between:age": 2, "invalid_number:age": 1, "not_null:age": 1,
                                           "not_null:id": 1, "not_null:plan": 1, "unknown_category:plan": 2}
    assert report["quarantine_sample"][0] == {"id": 2, "age": 150.0, "plan": "a", "reasons": "be_between:age"}
    checks = {c["reason"]: c for c in report["checks"]}
    assert checks["unknown_category:plan"]["unexpected"] == 2
    assert sorted(checks["unknown_category:plan"]["sample"]) == ["c", "zz"]


def test_the_report_samples_the_first_quarantined_rows_across_batches(tmp_path: Path, reports: Path) -> None:
    validate_file(_ctx(tmp_path, batch_rows=3))
    report = json.loads((reports / "t" / DAY / "r1.json").read_text())
    assert [r["id"] for r in report["quarantine_sample"]] == [2, 3, 4, None, 6, 9]


def test_above_the_threshold_fails_naming_the_share_and_the_report(tmp_path: Path, reports: Path) -> None:
    ctx = _ctx(tmp_path, share=0.5)
    with pytest.raises(ValidationFailedError) as err:
        validate_file(ctx)
    message = str(err.value)
    assert "6 of 9 rows (66.7%) failed validation" in message
    assert "max_quarantine_share of 50.0%" in message
    assert f"Report: {reports / 't' / DAY / 'r1.html'}" in message
    assert err.value.counts == {"rows_valid": 3, "rows_quarantined": 6}
    assert ctx.path(steps.QUARANTINE).exists(), "the quarantine is staged before the threshold check"


@pytest.mark.parametrize("batch_rows", [1, 3, 100])
def test_a_rows_fate_does_not_depend_on_batch_rows(tmp_path: Path, batch_rows: int) -> None:
    ctx = _ctx(tmp_path, batch_rows=batch_rows)
    assert validate_file(ctx) == {"rows_valid": 3, "rows_quarantined": 6}
    assert _split(ctx) == (EXPECTED_VALID, EXPECTED_QUARANTINE)
