"""Metrics: an Airflow run sends Airflow's StatsD metrics and the pipeline's to one exporter, read back from it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from pipeline import ledger, local, run
from pipeline.errors import ScoringError
from tests.conftest import DAY, ROOT, write_job, write_partition
from tests.e2e.conftest import dags_test, free_port

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture
def exporter() -> Iterator[tuple[int, str]]:
    """scripts/statsd_exporter.py on free ports: (its StatsD UDP port, its /metrics URL)."""
    udp, web = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "statsd_exporter.py"), "--statsd-port", str(udp),
                             "--web-port", str(web)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{web}/metrics"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=2)
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    yield udp, url
    proc.terminate()
    proc.wait(timeout=10)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(requests.get(url, timeout=10).text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def wait_for(url: str, name: str, **labels: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        samples = scrape(url)
        if value(samples, name, **labels) is not None:
            return samples
        time.sleep(0.5)
    raise AssertionError(f"no {name} {labels} at {url}")


def test_an_airflow_run_sends_airflows_metrics_and_ours_to_one_exporter(
        home: Path, migrated_home: Path, exporter: tuple[int, str], monkeypatch: pytest.MonkeyPatch) -> None:
    udp, url = exporter
    statsd = {"AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
              "AIRFLOW__METRICS__STATSD_PORT": str(udp)}
    for name, setting in statsd.items():
        monkeypatch.setenv(name, setting)  # dags_test passes the test's environment on
    write_partition(home, n=900)
    write_job(home)
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    samples = wait_for(url, "scoring_run_status", job="churn_test")
    with run.engine(run.find_job("churn_test")).connect() as conn:
        [row] = [dict(r) for r in conn.execute(sa.text("SELECT * FROM scoring_runs WHERE job_id = 'churn_test'"))
                 .mappings()]
    for kind in ("in", "valid", "quarantined", "scored", "written"):
        assert value(samples, "scoring_run_rows", job="churn_test", kind=kind) == row[f"rows_{kind}"], kind
    assert value(samples, "scoring_run_status", job="churn_test", mode="persist") == 1
    assert value(samples, "scoring_run_seconds", job="churn_test", status="success") == pytest.approx(
        row["duration_s"], rel=1e-3)
    stages = ledger.as_json(row["stage_seconds"])
    for stage in ("ingest", "validate", "score", "persist"):
        assert value(samples, "scoring_stage_seconds", job="churn_test", stage=stage) == pytest.approx(
            stages[stage], rel=1e-3)
        assert value(samples, "scoring_stage_rows_per_second", job="churn_test", stage=stage) == pytest.approx(
            row["rows_in"] / stages[stage], rel=1e-3)
    assert value(samples, "scoring_drift_max_psi", job="churn_test") >= 0
    airflow = sorted({n for n, _ in samples if n.startswith("airflow_")})
    assert any("ti" in n or "task" in n for n in airflow), f"Airflow's own metrics reach the same exporter: {airflow}"

    # a failed attempt says so too (here without Airflow: the same code path records every attempt)
    write_job(home, job_id="broken_test", entity_key="no_such_column")
    with pytest.raises(ScoringError):
        local.run_partition(run.find_job("broken_test"), DAY)
    samples = wait_for(url, "scoring_run_status", job="broken_test")
    assert value(samples, "scoring_run_status", job="broken_test") == 0
    assert value(samples, "scoring_run_rows", job="broken_test", kind="in") == 0  # nothing was read
