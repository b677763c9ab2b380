"""Bring your own model through Airflow: each kind registered in one call, scored by `airflow dags test`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import onboard
from pipeline.registry import Registry
from tests.conftest import DAY
from tests.e2e.conftest import dags_test
from tests.integration.test_byo_models import (
    KEY,
    KINDS,
    byo_job,
    expected_scores,
    stored,
    training_frame,
    write_export,
)

pytestmark = [pytest.mark.airflow, pytest.mark.slow]
# Every kind of KINDS is scored exactly by the same code in tests/integration/test_byo_models.py; through
# Airflow's task processes (about 25 s each) a third-party booster stands for them (native categories go
# through Airflow in every churn run: the demo model is a HistGradientBoosting with native categories).
THROUGH_AIRFLOW = ("lightgbm",)


@pytest.mark.parametrize("kind", THROUGH_AIRFLOW)
def test_each_kind_scores_exactly_through_airflow(home: Path, migrated_home: Path, kind: str) -> None:
    model, target, frame = KINDS[kind](training_frame())
    labels = [c for c in ("Churn", "Spend", "Tier") if c != target]
    onboard.register_model(Registry(), kind, model, frame.drop(columns=labels), target=target, key=KEY,
                           alias="champion")
    rows = frame.head(250)
    write_export(home, rows)
    job = byo_job(home, kind)
    out = dags_test(migrated_home, job.job_id, DAY.isoformat())
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    table = stored(job).loc[rows[KEY]]
    prediction, score = expected_scores(model, rows)
    assert np.max(np.abs(table["score"].to_numpy() - score)) <= 1e-9
    assert table["prediction"].tolist() == [str(p) for p in prediction]
