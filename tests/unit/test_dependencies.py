"""Runtime and development dependencies apart: a worker's image carries no test, lint or docs tool."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DEV_TOOLS = {"pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "ruff", "mkdocs", "mkdocs-material",
             "playwright", "lightgbm", "xgboost-cpu"}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", package.split("[")[0]).lower()] = version
    return pins


def test_runtime_requirements_hold_no_dev_tool_and_both_sets_are_pinned() -> None:
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert not DEV_TOOLS & set(runtime), sorted(DEV_TOOLS & set(runtime))
    assert set(dev) >= DEV_TOOLS, sorted(DEV_TOOLS - set(dev))
    assert all(runtime.values()) and all(dev.values()), "every line pinned with =="
    assert not set(runtime) & set(dev), "a package is in one set only"


def test_the_image_installs_the_runtime_set_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
