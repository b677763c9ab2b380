"""Bring your own model through Airflow: each kind registered in one call, scored by `airflow dags test`.

Every kind runs through Airflow's task code; the runs share the worker's kept Airflow process
(tests/e2e/airflow_runner.py), so the interpreter's start-up and imports are paid once rather than once per kind.
"""

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


def test_each_kind_scores_exactly_through_airflow(home: Path, migrated_home: Path) -> None:
    """Every kind of KINDS, registered in one call and scored by `airflow dags test` of its own job."""
    expected, jobs = {}, {}
    rows = None
    for kind, make in KINDS.items():
        model, target, frame = make(training_frame())
        labels = [c for c in ("Churn", "Spend", "Tier") if c != target]
        onboard.register_model(Registry(), kind, model, frame.drop(columns=labels), target=target, key=KEY,
                               alias="champion")
        rows = frame.head(250)
        expected[kind] = expected_scores(model, rows)
        jobs[kind] = byo_job(home, kind)
    assert rows is not None
    write_export(home, rows)  # one export (the same rows and columns for every kind), read by every job
    outs = [dags_test(migrated_home, job.job_id, DAY.isoformat()) for job in jobs.values()]
    for (kind, job), out in zip(jobs.items(), outs, strict=True):
        assert out.returncode == 0, (kind, out.stdout[-4000:] + out.stderr[-4000:])
        table = stored(job).loc[rows[KEY]]
        prediction, score = expected[kind]
        assert np.max(np.abs(table["score"].to_numpy() - score)) <= 1e-9, kind
        assert table["prediction"].tolist() == [str(p) for p in prediction], kind
