"""The README's "Bring your own model" steps, run as written, in a scratch folder standing for a fresh checkout."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def readme_steps() -> list[tuple[str, str]]:
    """The fenced blocks between the byo markers: (language, code), in order."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- byo:start -->"):text.index("<!-- byo:end -->")]
    return re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.S)


def test_the_readme_steps_work_as_written(tmp_path: Path) -> None:
    steps = readme_steps()
    assert [lang for lang, _ in steps] == ["python", "bash", "bash", "bash", "bash", "bash"]
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = ["set -euo pipefail"]
    for lang, code in steps:
        if lang == "python":  # the training script: its first line names the file
            name = code.splitlines()[0].lstrip("# ").strip()
            (tmp_path / name).write_text(code)
        else:
            script.append(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "AIRFLOW_CONN_"))}
    env["SCORING_HOME"] = str(tmp_path)
    out = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = json.loads((tmp_path / "telco_run.json").read_text())
    assert run["status"] == "success" and run["rows_in"] == 500
    assert run["rows_scored"] == 500 and run["rows_quarantined"] == 0, "blank TotalCharges reach the imputer"
    assert "registered telco v1" in out.stdout and "telco\tv1\tchampion" in out.stdout
    assert "ok\ttelco_daily" in out.stdout
    from pipeline.registry import Registry, sha256_of

    card = Registry(tmp_path / "models").resolve("telco", "champion").card
    assert card["sha256"] == sha256_of(tmp_path / "telco.joblib"), "the user's own file is what got registered"
    top = [ln for ln in out.stdout.splitlines() if ln.startswith("('")]
    assert len(top) == 5 and all(ln.endswith(", '1', 1)") or ln.endswith(", '0', 1)") for ln in top)
