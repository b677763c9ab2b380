"""The kernels' composite on a small frame built inline: no staging area, no database, no registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.linear_model import LogisticRegression

from pipeline.kernels.flow import DriftSettings, Model, score_rows
from pipeline.kernels.predict import Scorer
from pipeline.kernels.transforms import for_card
from pipeline.kernels.validate import suite
from pipeline.model import ModelVersion

INPUTS = [{"name": "x", "type": "float", "nullable": False, "min": 0.0, "max": 10.0}]
CARD = {"name": "m", "version": 1, "inputs": INPUTS, "classes": [0, 1], "positive_class": 1,
        "training": {"rows": 100, "stats": {"x": {"kind": "numeric", "bin_edges": [0.0, 2.5, 5.0, 7.5, 10.0],
                                                  "bin_shares": [0.25, 0.25, 0.25, 0.25]}}}}
SCHEMA = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("__raw__x", pa.string())])


def _model(tmp_path: Path) -> Model:
    estimator = LogisticRegression().fit(np.array([[1.0], [2.0], [8.0], [9.0]]), [0, 0, 1, 1])
    scorer = Scorer(ModelVersion("m", 1, tmp_path, CARD), estimator, for_card(CARD))
    return Model(CARD, scorer, suite(INPUTS, "id", SCHEMA, duplicate_keys=[3], configured=[]))


def test_rows_in_memory_come_out_scored_quarantined_counted_and_judged(tmp_path: Path) -> None:
    rows = pa.table({"id": [1, 2, 3, 3, 4, 5], "x": [1.0, 9.0, 4.0, 6.0, 11.0, None],
                     "__raw__x": [None, None, None, None, None, "abc"]}, schema=SCHEMA)
    result = score_rows(rows.to_batches(2), _model(tmp_path), key="id", schema=SCHEMA, batch_rows=2,
                        drift=DriftSettings(threshold=0.2, alpha=0.01, min_rows=1))
    assert result.predictions.column("id").to_pylist() == [1, 2]
    assert result.predictions.column("prediction").to_pylist() == ["0", "1"]
    reasons = dict(zip(result.quarantine.column("x").to_pylist(), result.quarantine.column("reasons").to_pylist(),
                       strict=True))
    assert reasons[4.0] == "duplicate_key:id" and reasons[6.0] == "duplicate_key:id"
    assert reasons[11.0] == "be_between:x"
    assert reasons[None] == "not_null:x; invalid_number:x"
    assert result.counts == {"rows_in": 6, "rows_valid": 2, "rows_quarantined": 4, "rows_scored": 2}
    assert [(r["feature"], r["row_count"]) for r in result.drift] == [("x", 2)]
