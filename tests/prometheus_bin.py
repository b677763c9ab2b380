"""Debian's Prometheus for the tests: ``prometheus`` and ``promtool`` (``make test`` installs them as root)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def need(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; absent, the test skips (fails when CI=true) saying why."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        message = f"{name} is not installed: Debian's prometheus package (make test installs it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
