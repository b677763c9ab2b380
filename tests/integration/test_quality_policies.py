"""Drift and quality with a visible state: block / flag / ignore through whole runs (plain, sharded, cascade, push).

A breach with ``block`` is refused by the gate before the output step (failed_stage drift_gate, the
partition's previous state stays); ``flag`` publishes and marks the ledger's ``breach`` (and
quality.check fails); ``ignore`` publishes and records only. Small samples from the training
population are not a breach.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import ledger, local, quality
from pipeline.config import load_job
from pipeline.errors import DriftError, QualityBreach
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition

pytestmark = pytest.mark.slow


def _engine() -> Any:
    return engines.for_connection("scoring_db")


def _predictions(table: str = "churn_test_predictions") -> pd.DataFrame:
    with _engine().connect() as conn:
        return pd.read_sql(sa.text(f"SELECT customer_id, score, run_id FROM {table}"), conn).set_index("customer_id")


def _report(home: Path, run_id: str, job_id: str = "churn_test") -> str:
    return (home / "reports" / job_id / str(DAY) / f"{run_id}.html").read_text()


def _job(home: Path, **overrides: Any) -> Any:
    return load_job(write_job(home, **overrides))


def test_block_refuses_at_the_gate_and_the_previous_state_stays(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_partition(home, n=2000)
    job = _job(home, drift={"on_breach": "block"})
    assert local.run_partition(job, DAY, run_id="good")["breach"] is None
    before = _predictions()
    write_partition(home, n=2000, shift=1.0)
    with caplog.at_level(logging.ERROR, logger="pipeline.drift"), pytest.raises(DriftError) as err:
        local.run_partition(job, DAY, run_id="shifted")
    message = str(err.value)
    assert message.startswith(f"partition {DAY} of job churn_test was NOT published"), message
    assert "support_tickets_90d (PSI " in message and ", n 19" in message and ", p " in message
    assert "previously published state is unchanged" in message and "re-run the partition" in message
    pd.testing.assert_frame_equal(_predictions(), before)  # the good run's rows, untouched
    row = ledger.get(_engine(), "churn_test", "shifted")
    assert (row["status"], row["failed_stage"], row["breach"]) == ("failed", "drift_gate", None)
    assert row["error"] == message
    assert any("DRIFT ALERT" in r.getMessage() and "NOT published" in r.getMessage() for r in caplog.records)
    html = _report(home, "shifted")
    assert "class='banner block'" in html and "Not published" in html and "within the threshold" not in html
    assert html.index("id='verdict'") < html.index("What failed") < html.index("Quarantined rows")
    quality.check(job, DAY, "shifted", resolver=None)  # a refused run is its own failure, not a flagged breach


def test_flag_publishes_and_marks_drift_and_quarantine(home: Path) -> None:
    write_partition(home, n=2000, shift=1.0)  # the generator's broken records are quarantined: above 0.01%
    job = _job(home, validation={"max_quarantine_share": 0.0001, "on_breach": "flag"})
    summary = local.run_partition(job, DAY, run_id="flagged")
    assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 1800
    assert summary["breach"] == "drift,quarantine"
    assert ledger.get(_engine(), "churn_test", "flagged")["breach"] == "drift,quarantine"
    with pytest.raises(QualityBreach) as err:
        quality.check(job, DAY, "flagged")
    assert "support_tickets_90d (PSI" in str(err.value) and "quarantine: " in str(err.value)
    html = _report(home, "flagged")
    assert "class='banner flag'" in html and "Published with a breach" in html
    assert "within the threshold" not in html
    banner = html[html.index("id='verdict'"):html.index("</div>", html.index("id='verdict'"))]
    assert "support_tickets_90d" in banner and "n 19" in banner and " p " in banner and "quarantined" in banner


def test_ignore_publishes_records_and_does_not_mark(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_partition(home, n=2000, shift=1.0)
    job = _job(home, drift={"on_breach": "ignore"})
    with caplog.at_level(logging.WARNING, logger="pipeline.drift"):
        summary = local.run_partition(job, DAY, run_id="ignored")
    assert summary["status"] == "success" and summary["breach"] is None and summary["drifted_features"]
    assert not any("DRIFT ALERT" in r.getMessage() for r in caplog.records)
    assert any("not alerted (drift.on_breach: ignore)" in r.getMessage() for r in caplog.records)
    quality.check(job, DAY, "ignored")
    with _engine().connect() as conn:
        drifted = conn.execute(sa.text("SELECT COUNT(*) FROM scoring_drift WHERE drifted = :t AND p_value < 0.001"),
                               {"t": True}).scalar()
    assert drifted >= 2, "recorded in scoring_drift with its p-value"
    assert "class='banner ignore'" in _report(home, "ignored")


def test_148_rows_from_the_training_population_are_no_breach(home: Path) -> None:
    write_partition(home, n=150)  # ~148 active customers after the day's absentees, the model's own population
    job = _job(home, drift={"min_rows": 100}, validation={"max_quarantine_share": 0.2})
    summary = local.run_partition(job, DAY, run_id="small")
    assert 140 <= summary["rows_scored"] <= 150
    assert summary["drifted_features"] == [] and summary["breach"] is None
    with _engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT feature, value, p_value, row_count FROM scoring_drift")).all()
    assert rows and all(r.p_value is not None for r in rows)
    html = _report(home, "small")
    assert "class='banner ok'" in html and "No breach" in html


@pytest.mark.parametrize("policy", ["block", "flag"])
def test_a_sharded_run_gates_the_whole_partition(home: Path, policy: str) -> None:
    write_partition(home, n=2000, shift=1.0, files=4)
    job = _job(home, drift={"on_breach": policy},
               source={"path": str(home / "data" / "churn"), "batch_rows": 300, "shards": 2})
    if policy == "block":
        with pytest.raises(DriftError, match="was NOT published"):
            local.run_partition(job, DAY, run_id="sharded")
        row = ledger.get(_engine(), "churn_test", "sharded")
        assert (row["status"], row["failed_stage"]) == ("failed", "drift_gate")
        with _engine().connect() as conn:
            assert not sa.inspect(conn).has_table("churn_test_predictions") or _predictions().empty
    else:
        summary = local.run_partition(job, DAY, run_id="sharded")
        assert summary["status"] == "success" and summary["breach"] == "drift"


def test_push_mode_blocks_before_anything_is_sent(home: Path) -> None:
    write_partition(home, n=2000, shift=1.0)
    out = home / "pushed"
    job = _job(home, drift={"on_breach": "block"},
               output={"mode": "push", "connection": "scoring_db", "push": {"sink": {"kind": "files", "uri": str(out)}}})
    with pytest.raises(DriftError, match="was NOT published"):
        local.run_partition(job, DAY, run_id="push-blocked")
    assert not list(out.rglob("*.parquet")), "nothing delivered"
    row = ledger.get(_engine(), "churn_test", "push-blocked")
    assert (row["status"], row["failed_stage"], row["rows_delivered"]) == ("failed", "drift_gate", None)


@pytest.mark.parametrize("policy", ["block", "flag"])
def test_a_cascade_is_gated_on_the_router_and_route_models(cascade_home: Path, policy: str) -> None:
    home = cascade_home
    write_partition(home, n=2000, shift=1.0)
    job = _job(home, model={"name": "segments"}, drift={"on_breach": policy},
               cascade={"routes": {"frequent": {"name": "churn_frequent"}, "occasional": {"name": "churn_occasional"}}},
               output={"table": "cascade_predictions", "connection": "scoring_db"})
    if policy == "block":
        with pytest.raises(DriftError, match="was NOT published"):
            local.run_partition(job, DAY, run_id="cascade")
        row = ledger.get(_engine(), "churn_test", "cascade")
        assert (row["status"], row["failed_stage"]) == ("failed", "drift_gate")
    else:
        summary = local.run_partition(job, DAY, run_id="cascade")
        assert summary["status"] == "success" and summary["breach"] == "drift"
        with _engine().connect() as conn:
            models = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT model_name FROM scoring_drift "
                                                         "WHERE drifted = :t"), {"t": True})}
        assert models, "the breach names its model (router or route)"
