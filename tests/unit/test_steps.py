"""The step table binds its work: every step names a function by import path, and it resolves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline import steps

ROOT = Path(__file__).resolve().parents[2]


def test_every_step_of_the_table_resolves_to_its_function() -> None:
    names = [s.name for s in steps.TABLE]
    assert len(names) == len(set(names)), names
    for step in steps.TABLE:
        module, _, attr = step.work.partition(":")
        function = step.function()
        assert callable(function) and function.__module__ == module and function.__name__ == attr, step.work
    assert {*steps.SCORING, *steps.OUTPUTS.values(), steps.FINALIZE, steps.PLAN, steps.SCORE_SHARD,
            steps.COMBINE} <= set(steps.TABLE)
    assert set(steps.ROUTE_STEPS) - {steps.ROUTER_FLAGS} <= set(steps.SCORING), "a route runs the run's own stages"


def test_the_table_is_read_without_the_stage_modules() -> None:
    """The DAG file reads the table at parse time: no stage module, no pandas or pyarrow."""
    probe = ("import sys; from pipeline import steps; steps.plan('persist', sharded=True)\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'pyarrow') or m in "
             "('pipeline.validate', 'pipeline.score', 'pipeline.cascade', 'pipeline.run'))\n"
             "print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
