"""The run note tells the outcome from the ledger and explains run ids (plugins/scoring_notes.py)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins"))
scoring_notes = pytest.importorskip("scoring_notes")

ROW = {"status": "success", "dry_run": False, "mode": "persist", "rows_written": 29329, "rows_scored": 29329,
       "model_name": "churn", "model_version": 2, "failed_stage": None, "error": None, "breach": None}


@pytest.mark.parametrize(("row", "text"), [
    (ROW, "Outcome: published 29,329 rows (model churn v2)."),
    ({**ROW, "dry_run": True}, "Outcome: dry run, 29,329 rows scored, none written (model churn v2)."),
    ({**ROW, "breach": "drift,quarantine"}, "Flagged: drift,quarantine (see check_quality and the report)."),
    ({**ROW, "status": "missing", "error": "no data for 2026-11-20 (expected by 2026-11-21 00:00 UTC); waited 0.0 "
      "min"}, "Outcome: missing. no data for 2026-11-20 (expected by 2026-11-21 00:00 UTC); waited 0.0 min"),
    ({**ROW, "status": "failed", "failed_stage": "validate", "error": "too many quarantined"},
     "Outcome: failed at stage validate: too many quarantined"),
    ({**ROW, "status": "failed", "failed_stage": "marked_failed", "error": "marked failed by hand in Airflow: the "
      "run, run r, partition 2026-11-20. Clear the run to score the partition again."},
     "Outcome: marked failed by hand in Airflow: the run, run r, partition 2026-11-20. Clear the run"),
    ({**ROW, "status": "skipped", "error": None}, "Outcome: marked by hand"),
    (None, "Outcome: no ledger row"),
])
def test_the_outcome_says_what_the_ledger_says(row: dict | None, text: str) -> None:
    assert text in scoring_notes.outcome_text(row)


def test_a_backfill_run_id_naming_the_interval_end_is_explained() -> None:
    text = scoring_notes.run_id_note("backfill__2026-10-02T00:00:00+00:00", "backfill", "2026-10-01")
    assert text == (" The run id's date (2026-10-02) is when the run was due (run_after: the end of the interval "
                    "it covers), not the partition.")
    assert scoring_notes.run_id_note("manual__2026-10-02T10:00:00+00:00", "manual", "2026-10-01") == ""
    assert scoring_notes.run_id_note("backfill__2026-10-01T00:00:00+00:00", "backfill", "2026-10-01") == ""


def test_an_operators_note_is_never_rewritten() -> None:
    from types import SimpleNamespace

    assert scoring_notes._ours(SimpleNamespace(dag_run_note=None))
    assert scoring_notes._ours(SimpleNamespace(dag_run_note=SimpleNamespace(user_id=None)))  # the listener's own
    assert not scoring_notes._ours(SimpleNamespace(dag_run_note=SimpleNamespace(user_id="admin")))  # UI or API
