from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def scoring(*args: str, models: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "models", "--models-dir", str(models), *args],
                          capture_output=True, text=True, timeout=120)


def test_models_cli_register_promote_rollback(tmp_path: Path, trained_models: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained_models, models)
    v1 = models / "churn" / "v1"
    card = json.loads((v1 / "card.json").read_text())
    (tmp_path / "card.json").write_text(json.dumps(card))
    out = scoring("register", "churn", "--artifact", str(v1 / "model.joblib"), "--card", str(tmp_path / "card.json"),
                  "--golden", str(v1 / "golden.parquet"), models=models)
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
    models = tmp_path / "models"
    shutil.copytree(trained_models, models)
    v1 = models / "churn" / "v1"
    card = json.loads((v1 / "card.json").read_text())
    (tmp_path / "card.json").write_text(json.dumps(card))
    for _ in range(2):  # v2, v3
        out = scoring("register", "churn", "--artifact", str(v1 / "model.joblib"), "--card",
                      str(tmp_path / "card.json"), "--golden", str(v1 / "golden.parquet"), models=models)
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
    out = scoring("register", "churn", "--artifact", str(v1 / "model.joblib"), "--card", str(tmp_path / "card.json"),
                  "--golden", str(v1 / "golden.parquet"), models=models)
    assert "registered churn v4" in out.stdout, "a deleted version's number is not reused"
