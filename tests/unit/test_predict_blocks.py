"""A row's score does not depend on how rows were batched, to the last bit (``kernels.predict.in_whole_blocks``).

BLAS multiplies a batch's rows in whole blocks and the rows left over by another routine, whose sums differ in
the last bit for a linear model: without the padding, a LogisticRegression's scores of rows alone or in chunks
of 5, 9, 17 and 33 rows differ from the whole batch's for some rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from pipeline.kernels.predict import BLOCK_ROWS, in_whole_blocks


def _frame(features: int, rows: int = 401) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(features)
    frame = pd.DataFrame(rng.normal(size=(rows, features)), columns=[f"c{i}" for i in range(features)])
    return frame, (frame["c0"] + rng.normal(size=rows) > 0).astype(int).to_numpy()


@pytest.mark.parametrize("features", [3, 5, 40])
def test_every_chunking_gives_the_whole_batchs_scores_bit_for_bit(features: int) -> None:
    frame, label = _frame(features)
    model = LogisticRegression().fit(frame, label)
    whole = in_whole_blocks(model.predict_proba, frame)[:, 1]
    for size in (1, 2, 3, 5, 9, BLOCK_ROWS, 17, 33, 100):
        chunks = np.concatenate([in_whole_blocks(model.predict_proba, frame.iloc[i:i + size])[:, 1]
                                 for i in range(0, len(frame), size)])
        assert (chunks == whole).all(), f"chunks of {size} rows"


def test_without_the_blocks_a_lone_row_can_differ_in_the_last_bit() -> None:
    """The premise, on this machine's BLAS: a lone row's score differs from its batch's in the last bit."""
    frame, label = _frame(40)
    model = LogisticRegression().fit(frame, label)
    whole = in_whole_blocks(model.predict_proba, frame)[:, 1]
    alone = np.array([model.predict_proba(frame.iloc[[i]])[0, 1] for i in range(len(frame))])
    blocked = np.array([in_whole_blocks(model.predict_proba, frame.iloc[[i]])[0, 1] for i in range(len(frame))])
    from_arrow = np.array([in_whole_blocks(model.predict_proba, pa.Table.from_pandas(frame.iloc[i:i + 1])
                                           .to_pandas())[0, 1] for i in range(len(frame))])
    assert np.allclose(alone, whole, rtol=0, atol=1e-12)
    assert (alone != whole).any(), "BLAS gave a lone row the batch's bits: the padding is no longer needed here"
    assert (blocked == whole).all()
    assert (from_arrow == whole).all(), "a row read from Arrow alone (the online door's one-row request)"


def test_a_regressor_and_the_row_count_and_order_are_kept() -> None:
    frame, _ = _frame(5, rows=37)
    model = Ridge().fit(frame, frame["c1"] * 2.0)
    out = in_whole_blocks(model.predict, frame)
    assert out.shape == (37,)
    assert (out == in_whole_blocks(model.predict, frame.iloc[::-1])[::-1]).all()
