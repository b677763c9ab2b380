from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import scoring_cli


def scoring(*args: str, models: Path) -> subprocess.CompletedProcess:
    return scoring_cli("models", "--models-dir", str(models), *args)


def _registry_with_card(tmp_path: Path, trained_models: Path) -> tuple[Path, Path]:
    """A copy of the trained registry, and a copy of churn v1's card to register again."""
    models = tmp_path / "models"
    shutil.copytree(trained_models, models)
    (tmp_path / "card.json").write_text((models / "churn" / "v1" / "card.json").read_text())
    return models, models / "churn" / "v1"


def _register_again(tmp_path: Path, models: Path, v1: Path) -> subprocess.CompletedProcess:
    return scoring("register", "churn", "--artifact", str(v1 / "model.joblib"), "--card", str(tmp_path / "card.json"),
                   "--golden", str(v1 / "golden.parquet"), models=models)


def test_models_cli_register_promote_rollback(tmp_path: Path, trained_models: Path) -> None:
    models, v1 = _registry_with_card(tmp_path, trained_models)
    out = _register_again(tmp_path, models, v1)
    assert out.returncode == 0, out.stderr
    assert "registered churn v2 sha256=" in out.stdout
    assert scoring("promote", "churn", "2", models=models).stdout.strip() == "churn: champion -> v2"
    listing = scoring("list", models=models).stdout.splitlines()
    assert listing[0].startswith("churn\tv1\t-") and listing[1].startswith("churn\tv2\tchampion")
    assert "rolled back to v1" in scoring("rollback", "churn", models=models).stdout
    assert "sha256 ok" in scoring("verify", "churn", "champion", models=models).stdout
    missing = scoring("show", "churn", "9", models=models)
    assert missing.returncode == 2 and "Known versions: 1, 2" in missing.stderr


def test_models_cli_archive_restore_delete_and_rollback_to(tmp_path: Path, trained_models: Path) -> None:
    models, v1 = _registry_with_card(tmp_path, trained_models)
    for _ in range(2):  # v2, v3
        out = _register_again(tmp_path, models, v1)
        assert out.returncode == 0, out.stderr
    assert scoring("promote", "churn", "3", models=models).stdout.strip() == "churn: champion -> v3"
    refused = scoring("archive", "churn", "3", models=models)
    assert refused.returncode == 2 and "champion" in refused.stderr and "Traceback" not in refused.stderr
    assert "archived" in scoring("archive", "churn", "2", models=models).stdout
    listing = scoring("list", "churn", models=models).stdout.splitlines()
    assert [ln.split("\t")[4] for ln in listing if ln.startswith("churn\tv")] == ["live", "archived", "live"]
    assert any("history" in ln and "archive" in ln for ln in listing)
    assert "rolled back to v1" in scoring("rollback", "churn", "--to", "1", models=models).stdout
    assert "restored" in scoring("restore", "churn", "2", models=models).stdout
    assert scoring("archive", "churn", "3", models=models).returncode == 0
    assert "deleted" in scoring("delete", "churn", "3", models=models).stdout
    out = _register_again(tmp_path, models, v1)
    assert "registered churn v4" in out.stdout, "a deleted version's number is not reused"


def test_models_cli_promote_and_rollback_are_audited_and_the_gate_needs_if_better(
        tmp_path: Path, trained_models: Path) -> None:
    models, v1 = _registry_with_card(tmp_path, trained_models)
    assert _register_again(tmp_path, models, v1).returncode == 0  # v2
    assert "no promotion, rollback or refused promotion recorded of churn" in scoring("audit", "churn",
                                                                                      models=models).stdout
    both = scoring("promote", "churn", "2", "--to-challenger", "2", "--if-better", models=models)
    assert both.returncode == 2 and "either as VERSION or as --to-challenger X" in both.stderr
    ungated = scoring("promote", "churn", "--to-challenger", "2", models=models)
    assert ungated.returncode == 2 and "add --if-better" in ungated.stderr and "Traceback" not in ungated.stderr
    assert scoring("promote", "churn", "2", "--reason", "hotfix", models=models).stdout.strip() == "churn: champion -> v2"
    assert "rolled back to v1" in scoring("rollback", "churn", "--reason", "hotfix broke", models=models).stdout
    rows = [ln for ln in scoring("audit", "churn", models=models).stdout.splitlines() if "\tchurn\t" in ln]
    assert [ln.split("\t")[3:5] for ln in rows] == [["rollback", "v2 -> v1"], ["promote", "v1 -> v2"]]
    assert rows[0].endswith("reason: hotfix broke") and rows[1].endswith("reason: hotfix")


def test_models_cli_gate_says_when_the_jobs_database_cannot_be_read(
        tmp_path: Path, trained_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models, v1 = _registry_with_card(tmp_path, trained_models)
    assert _register_again(tmp_path, models, v1).returncode == 0  # v2
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "churn_gate.yaml").write_text(yaml.safe_dump({
        "job_id": "churn_gate", "start_date": "2026-11-01", "entity_key": "customer_id",
        "source": {"path": str(tmp_path / "data")}, "model": {"name": "churn", "challengers": ["2"]},
        "output": {"table": "churn_gate_predictions", "connection": "nowhere_db"}}))
    monkeypatch.setenv("SCORING_JOBS_DIR", str(jobs))
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE_DB", "postgresql://nobody@127.0.0.1:1/none")  # nothing listens there
    out = scoring("promote", "churn", "--to-challenger", "2", "--if-better", models=models)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "job churn_gate: its comparisons could not be read from postgresql 127.0.0.1:1/none" in out.stderr
    assert "Nothing was promoted or recorded" in out.stderr
