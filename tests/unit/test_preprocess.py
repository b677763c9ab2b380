"""Preprocessing transforms: churn_features@2 encodes categories by the card's list."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pytest

from pipeline import preprocess
from pipeline.errors import ModelIntegrityError
from pipeline.staging import StagedWriter, read_batches

CONTRACT = [{"name": "plan", "type": "category", "categories": ["basic", "premium", "standard"]},
            {"name": "tenure_months", "type": "float"}]


def _rows(plan: pd.Series) -> pd.DataFrame:
    n = len(plan)
    return pd.DataFrame({"plan": plan, "tenure_months": [12.0] * n, "total_charges": [120.0] * n,
                         "support_tickets_90d": [1.0] * n, "num_products": [2.0] * n,
                         "days_since_last_login": [3.0] * n})


@pytest.mark.parametrize("dtype", ["object", "str", "category"])
def test_categories_become_positions_and_missing_or_unknown_become_nan(dtype: str) -> None:
    transform = preprocess.bind(preprocess.get("churn_features", 2), CONTRACT)
    out = transform(_rows(pd.Series(["premium", "basic", None, "gold", "standard"], dtype=dtype)))
    codes = out["plan"].tolist()
    assert codes[:2] == [1.0, 0.0] and codes[4] == 2.0
    assert math.isnan(codes[2]) and math.isnan(codes[3]), "missing and unknown categories are NaN"
    assert out["charges_per_tenure_month"].tolist() == [10.0] * 5


def test_for_card_binds_the_contract_and_refuses_changed_code() -> None:
    card = {"inputs": CONTRACT, "preprocess": preprocess.spec("churn_features", 2)}
    assert preprocess.for_card(card)(_rows(pd.Series(["standard"])))["plan"].tolist() == [2.0]
    card["preprocess"]["fingerprint"] = "0" * 64
    with pytest.raises(Exception, match="has changed"):
        preprocess.for_card(card)


def test_staged_ipc_files_are_read_in_batches_and_by_column(tmp_path) -> None:
    path = tmp_path / "x.arrow"
    with StagedWriter(path) as writer:
        writer.write(pa.table({"a": list(range(10)), "b": [str(i) for i in range(10)], "c": [0.5] * 10}))
    batches = list(read_batches(path, 4, ["c", "a"]))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert batches[0].schema.names == ["c", "a"] and batches[2].column("a").to_pylist() == [8, 9]


# sha256 of the functions' source before they moved from pipeline/preprocess.py to pipeline/demo/transforms.py:
# demo models trained before the move keep scoring only while these stay the same.
FINGERPRINTS_BEFORE_THE_MOVE = {
    1: "9c9ba88555b9e84c5944513842780906c3f8839450991fb2f9b911ed7187cd66",
    2: "89347ae45934c4ab551a20a50bb000b02761c56430b097eb2715661144c82073",
}


@pytest.mark.parametrize("version", [1, 2])
def test_the_demo_transforms_kept_their_fingerprints_and_are_found_by_entry_point(version: int) -> None:
    fn = preprocess.get("churn_features", version)  # found through the scoring_pipeline.transforms entry point
    assert fn.__module__ == "pipeline.demo.transforms"
    assert preprocess.fingerprint(fn) == FINGERPRINTS_BEFORE_THE_MOVE[version]
    assert "pipeline.demo.transforms" in preprocess.load_plugins()


def test_an_unknown_transform_names_the_entry_point_group() -> None:
    with pytest.raises(ModelIntegrityError, match="scoring_pipeline.transforms") as err:
        preprocess.get("no_such_transform", 1)
    assert "identity@1" in str(err.value) and "churn_features@2" in str(err.value)
