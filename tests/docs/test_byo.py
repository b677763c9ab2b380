"""The bring-your-own-model walk-through, run as written in a scratch copy of a fresh checkout.

The walk-through is the part of one page between ``<!-- byo:start -->`` and ``<!-- byo:end -->``
(README.md or a page under docs/). Its python block is the user's training script: the file its
first line names; its bash blocks then run in order in one shell (tests/docs/runner.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.docs.blocks import byo_blocks
from tests.docs.runner import fresh_checkout, run_blocks, user_env

pytestmark = pytest.mark.slow


def test_the_walk_through_works_as_written(tmp_path: Path) -> None:
    steps = byo_blocks()
    assert steps, "no <!-- byo:start --> ... <!-- byo:end --> section in README.md or docs/"
    assert len({b.path for b in steps}) == 1, f"byo markers in more than one page: {[b.where for b in steps]}"
    assert [b.lang for b in steps] == ["python", "bash", "bash", "bash", "bash", "bash"], \
        [f"{b.where} {b.lang}" for b in steps]
    home = fresh_checkout(tmp_path / "checkout")
    for step in steps:  # the training script: its first line names the file
        if step.lang == "python":
            name = step.code.splitlines()[0].lstrip("# ").strip()
            (home / name).write_text(step.code)
    out = run_blocks([b for b in steps if b.lang == "bash"], home, user_env(home), tmp_path / "scripts")
    assert out.returncode == 0, out.report()
    run = json.loads((home / "telco_run.json").read_text())
    assert run["status"] == "success" and run["rows_in"] == 500
    assert run["rows_scored"] == 500 and run["rows_quarantined"] == 0, "blank TotalCharges reach the imputer"
    assert "registered telco v1" in out.stdout and "telco\tv1\tchampion" in out.stdout
    assert "ok\ttelco_daily" in out.stdout
    from pipeline.anchors import Anchors
    from pipeline.registry import Registry, sha256_of
    from pipeline.store.engines import engine_for

    anchors = Anchors(engine_for(f"sqlite:///{home / '.data' / 'scoring.db'}"))  # where the walk-through anchored it
    card = Registry(home / "models", anchors=anchors).resolve("telco", "champion").card
    assert card["sha256"] == sha256_of(home / "telco.joblib"), "the user's own file is what got registered"
    top = [ln for ln in out.stdout.splitlines() if ln.startswith("('")]
    assert len(top) == 5 and all(ln.endswith(", '1', 1)") or ln.endswith(", '0', 1)") for ln in top), out.stdout
