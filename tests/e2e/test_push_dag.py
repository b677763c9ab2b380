"""Push mode run by Airflow itself (`airflow dags test`) against a real local receiver."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from pipeline.demo.receiver import Receiver
from pipeline.ledger import as_json
from pipeline.store import engines
from tests.conftest import DAY, ROOT, write_job, write_partition
from tests.e2e.conftest import dags_test

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _engine() -> sa.Engine:
    return engines.for_connection("scoring_db")


def _ledger(job_id: str) -> list[dict]:
    with _engine().connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM scoring_runs WHERE job_id = :j ORDER BY started_at"), {"j": job_id}).mappings()]


def _table_state(table: str) -> tuple[int, str]:
    with _engine().connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT COUNT(*), MAX(run_id) FROM {table}")).one())


def test_shipped_promotions_job_pushes_and_leaves_predictions_untouched(
    home: Path, migrated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_partition(home, n=2000)
    # a persisted partition in the same database (scored first, in the same process): the push run must not touch it
    write_job(home)
    # the shipped job file, reading this test's data
    doc = yaml.safe_load((ROOT / "dags" / "jobs" / "promotions_daily.yaml").read_text())
    doc["source"].update(path=str(home / "data" / "churn"), wait_timeout_minutes=0.05, poke_interval_seconds=1)
    (home / "jobs" / "promotions_daily.yaml").write_text(yaml.safe_dump(doc))
    with Receiver(token="e2e-token", faults=["500", "429:1"]) as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_PROMOTIONS_WEBHOOK", f"http://:e2e-token@127.0.0.1:{receiver.port}")
        persisted, out = (dags_test(migrated_home, dag_id, DAY.isoformat()) for dag_id in ("churn_test",
                                                                                           "promotions_daily"))
        rows = receiver.store.unique_rows()
    assert persisted.returncode == 0, persisted.stdout[-3000:] + persisted.stderr[-3000:]
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    [scored] = _ledger("churn_test")
    before = (scored["rows_written"], scored["run_id"])  # what the persist run left
    [row] = _ledger("promotions_daily")
    assert row["status"] == "success" and row["mode"] == "push"
    assert row["rows_delivered"] == len(rows) == 500 and row["rows_dead_lettered"] == 0
    assert row["rows_in"] == row["rows_delivered"] + row["rows_not_selected"] + row["rows_quarantined"]
    assert [r["rank"] for r in rows] == list(range(1, 501))
    assert set(as_json(row["stage_seconds"])) == {"ingest", "validate", "preprocess", "score", "drift_gate", "push",
                                                  "finalize"}
    assert _table_state("churn_test_predictions") == before
    with _engine().connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert not any(t.startswith("promotions") for t in tables), tables


def test_trigger_form_switches_the_output_mode(home: Path, migrated_home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A job with both outputs: the branch follows the job's mode, or the form's override."""
    write_partition(home, n=800)
    with Receiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_PROMO_HOOK", f"http://127.0.0.1:{receiver.port}")
        write_job(home, output={"mode": "push", "table": "churn_test_predictions",
                                "push": {"sink": {"kind": "webhook", "connection": "promo_hook"}}})
        conf = json.dumps({"output_mode": "persist"})
        pushed, persisted = (dags_test(migrated_home, "churn_test", DAY.isoformat(), c) for c in (None, conf))
        assert pushed.returncode == 0, pushed.stdout[-3000:] + pushed.stderr[-3000:]
        assert persisted.returncode == 0, persisted.stdout[-3000:] + persisted.stderr[-3000:]
        sent = receiver.store.stats()["rows_unique"]
    first, second = _ledger("churn_test")
    assert (first["mode"], second["mode"]) == ("push", "persist")
    assert sent == first["rows_delivered"] == first["rows_scored"] > 700, "the persist run sent nothing"
    assert _table_state("churn_test_predictions") == (second["rows_written"], second["run_id"])
    assert second["rows_written"] == second["rows_scored"]
    # the branch skipped the other output task each time
    assert "Following branch {'push'}" in pushed.stdout + pushed.stderr
    assert "Skipping tasks [('persist', -1)]" in pushed.stdout + pushed.stderr
    assert "Skipping tasks [('push', -1)]" in persisted.stdout + persisted.stderr
    assert dt.date.fromisoformat(str(first["partition_date"])) == DAY
