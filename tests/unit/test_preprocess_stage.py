"""The preprocess stage: the card's registered transformation over ``valid`` -> ``features``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import preprocess, steps
from pipeline.config import parse_job
from pipeline.context import RunContext
from pipeline.errors import ModelIntegrityError
from pipeline.kernels.conform import contract_schema
from pipeline.registry import ModelVersion
from pipeline.staging import RunSpec, StagedWriter, read_batches, staged_rows, staged_schema

INPUTS = [{"name": "age", "type": "float", "nullable": False, "min": 0, "max": 120},
          {"name": "plan", "type": "category", "nullable": False, "categories": ["a", "b"]}]
VALID_SCHEMA = contract_schema(INPUTS, "id", pa.int64()).append(pa.field(steps.FLAGS, pa.string()))


@preprocess.register("t_double", 1)
def t_double(df: pd.DataFrame) -> pd.DataFrame:
    """Test transform: age doubled, plan as a 0/1 indicator."""
    return pd.DataFrame({"age2": df["age"] * 2, "is_b": (df["plan"] == "b").astype("float64")})


@preprocess.register("t_contract", 1)
def t_contract(df: pd.DataFrame, contract: list[dict[str, Any]]) -> pd.DataFrame:
    """Test transform that reads the contract: plan as its position in the card's categories."""
    categories = next(c["categories"] for c in contract if c["name"] == "plan")
    return pd.DataFrame({"plan_code": df["plan"].map(categories.index).astype("float64")})


def _ctx(tmp_path: Path, rows: list[tuple[Any, ...]], entry: dict[str, Any] | None = None) -> RunContext:
    job = parse_job({
        "job_id": "t", "start_date": "2026-11-01", "entity_key": "id",
        "source": {"path": str(tmp_path / "data"), "batch_rows": 3},
        "model": {"name": "m", "ref": "1"}, "output": {"table": "t_predictions"},
    }, Path("t.yaml"))
    (tmp_path / "stage").mkdir(exist_ok=True)
    spec = RunSpec(job_id="t", run_id="r1", attempt=1, partition_date="2026-11-20", model_name="m",
                   model_version=1, dry_run=False, staging_dir=str(tmp_path / "stage"))
    card = {"name": "m", "version": 1, "inputs": INPUTS, "preprocess": entry or preprocess.spec("t_double", 1)}
    ctx = RunContext(job=job, spec=spec, model=ModelVersion("m", 1, tmp_path / "model", card), engine=None)
    with StagedWriter(ctx.path(steps.VALID), VALID_SCHEMA) as writer:
        if rows:
            writer.write(pa.table({n: [r[i] for r in rows] for i, n in enumerate(VALID_SCHEMA.names)},
                                  VALID_SCHEMA))
    return ctx


# id, age, plan, __raw__age, __flags (as validate writes valid rows): flags only in the second batch
ROWS = [(10, 1.0, "a", None, None), (11, 2.5, "b", None, None), (12, 3.0, "a", None, None),
        (13, 4.0, "b", None, "unknown_category:plan"), (14, 0.0, "a", None, None)]
FEATURE_SCHEMA = pa.schema([("id", pa.int64()), ("age2", pa.float64()), ("is_b", pa.float64()),
                            (steps.FLAGS, pa.string())])


def test_features_have_the_key_first_transformed_values_and_text_flags(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, ROWS)
    assert preprocess.transform_file(ctx) == {}
    path = ctx.path(steps.FEATURES)
    assert staged_schema(path) == FEATURE_SCHEMA
    rows = [r for b in read_batches(path, 100) for r in b.to_pylist()]
    assert rows == [
        {"id": 10, "age2": 2.0, "is_b": 0.0, steps.FLAGS: None},
        {"id": 11, "age2": 5.0, "is_b": 1.0, steps.FLAGS: None},
        {"id": 12, "age2": 6.0, "is_b": 0.0, steps.FLAGS: None},
        {"id": 13, "age2": 8.0, "is_b": 1.0, steps.FLAGS: "unknown_category:plan"},
        {"id": 14, "age2": 0.0, "is_b": 0.0, steps.FLAGS: None},
    ]


def test_a_transform_taking_the_contract_gets_the_cards_inputs(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, ROWS, preprocess.spec("t_contract", 1))
    preprocess.transform_file(ctx)
    batches = list(read_batches(ctx.path(steps.FEATURES), 100))
    assert batches[0].schema.names == ["id", "plan_code", steps.FLAGS]
    assert [v for b in batches for v in b.column("plan_code").to_pylist()] == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_zero_valid_rows_yield_an_empty_file_with_the_feature_schema(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, [])
    preprocess.transform_file(ctx)
    assert staged_rows(ctx.path(steps.FEATURES)) == 0
    assert staged_schema(ctx.path(steps.FEATURES)) == FEATURE_SCHEMA


def test_a_changed_fingerprint_refuses_to_preprocess(tmp_path: Path) -> None:
    entry = {**preprocess.spec("t_double", 1), "fingerprint": "0" * 64}
    ctx = _ctx(tmp_path, ROWS, entry)
    with pytest.raises(ModelIntegrityError, match=r"t_double@1 has changed since model m v1"):
        preprocess.transform_file(ctx)
    assert not ctx.path(steps.FEATURES).exists()


def test_an_unregistered_transform_names_what_is_known(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, ROWS, {"name": "t_missing", "version": 7})
    with pytest.raises(ModelIntegrityError, match=r"t_missing@7 is not registered \(known: .*t_double@1"):
        preprocess.transform_file(ctx)
