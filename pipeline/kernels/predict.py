"""Scoring a batch in memory: a loaded model version (its estimator with the preprocessing it was trained
with) and the scored rows it makes of a batch of features, keeping the entity key and the flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.kernels.columns import FLAGS
from pipeline.kernels.transforms import Transform

if TYPE_CHECKING:
    from pipeline.model import ModelVersion


@dataclass
class Scorer:
    """A loaded model with the transformation it was trained with."""

    version: ModelVersion
    estimator: Any
    transform: Transform

    @property
    def inputs(self) -> list[str]:
        return [c["name"] for c in self.version.card["inputs"]]

    def features(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Apply the model's registered preprocessing to contract columns."""
        return self.transform(raw[self.inputs])

    def predict(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class and score (probability of the positive class)."""
        if hasattr(self.estimator, "predict_proba"):
            best, classes, score = self._probabilities(features)
            return classes[best], score
        prediction = in_whole_blocks(self.estimator.predict, features)
        return prediction, prediction.astype("float64")

    def predict_arrow(self, features: pd.DataFrame) -> tuple[pa.Array, pa.Array]:
        """``predict`` as Arrow arrays, the class as text (numpy's ``astype(str)`` of it, as ``predict``'s
        callers store it): a classifier's labels are made text once, not once a row."""
        if hasattr(self.estimator, "predict_proba"):
            best, classes, score = self._probabilities(features)
            labels = pa.array(classes.astype(str), pa.string())
            prediction = pa.DictionaryArray.from_arrays(pa.array(best, pa.int32()), labels).cast(pa.string())
            return prediction, pa.array(score, pa.float64())
        prediction, score = self.predict(features)
        return pa.array(prediction.astype(str), pa.string()), pa.array(score, pa.float64())

    def _probabilities(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A classifier's most probable class (its position in ``classes``), its classes and the score."""
        proba = in_whole_blocks(self.estimator.predict_proba, features)
        classes = list(self.estimator.classes_)
        positive = self.version.card.get("positive_class", classes[-1])
        score = proba[:, classes.index(positive)] if len(classes) == 2 else proba.max(axis=1)
        return proba.argmax(axis=1), np.asarray(classes), score


BLOCK_ROWS = 16  # BLAS kernels multiply rows in blocks (4 here, up to 16 with AVX-512): see ``in_whole_blocks``


def in_whole_blocks(method: Any, features: pd.DataFrame) -> np.ndarray:
    """``method(features)`` with every row in a whole block of ``BLOCK_ROWS`` rows, so that a row's score never
    depends on how rows were batched.

    A linear model's score is a dot product that BLAS computes for a batch's rows in blocks (gemm's micro-kernel)
    and for the rows left over, or a lone row (gemv, ddot), by another routine whose sum can differ in the last
    bit. So a batch whose rows do not fill whole blocks (an online request of one row, a partition's last batch,
    a cascade route's few rows) is padded with copies of its last row to a whole block, in one call. The matrix's
    memory layout picks the routine too (pandas takes rows from a one-row frame into column-major memory, from a
    frame of several into row-major): the padded frame is rebuilt column by column into new memory, laid out
    alike whatever the rows came from.
    """
    rows = len(features)
    pad = -rows % BLOCK_ROWS
    if not pad:
        return method(features)
    taken = features.iloc[np.concatenate([np.arange(rows), np.full(pad, rows - 1)])]
    return method(pd.DataFrame(dict(taken.items())))[:rows]  # new memory, one layout whatever the rows came from


def scored_schema(key: str, key_type: pa.DataType) -> pa.Schema:
    """The scored rows: entity key, prediction, score and flags."""
    return pa.schema([(key, key_type), ("prediction", pa.string()), ("score", pa.float64()),
                      ("flags", pa.string())])


def score_batch(scorer: Scorer, batch: pa.RecordBatch | pa.Table, key: str, schema: pa.Schema) -> pa.Table:
    """One batch of features scored, keeping its entity keys and flags."""
    prediction, score = scorer.predict_arrow(batch.drop_columns([key, FLAGS]).to_pandas())
    return pa.table({key: batch.column(key), "prediction": prediction, "score": score,
                     "flags": batch.column(FLAGS).cast(pa.string())}, schema=schema)
