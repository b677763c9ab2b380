"""`scripts/native_stack.py up` copies the models' registration anchors into the stack's scoring database.

`make demo` registers its models into the embedded SQLite database; a stack scores with its own
PostgreSQL database, where a model with no anchor loads on its card alone and every run warns
"NOT anchored". The stack's start copies the records as registration wrote them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import scoring_cli, script_module

pytestmark = [pytest.mark.postgres]


def _native_stack():  # type: ignore[no-untyped-def]
    return script_module("native_stack")


def test_up_carries_the_registration_anchors_into_the_stacks_database(
        home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.anchors import Anchors
    from pipeline.registry import Registry
    from pipeline.store import engines

    sqlite = f"sqlite:///{home / 'registered.db'}"
    monkeypatch.delenv("SCORING_REGISTRY_DB")  # make demo's shell and the stack: the registry database is scoring_db
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", sqlite)  # where the models were registered (make demo's role)
    engines.engine_for.cache_clear()
    adopted = scoring_cli("models", "anchor", "churn")
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    registered = Anchors(engines.engine_for(sqlite)).of("churn")
    assert registered

    stack = _native_stack()
    first = stack.carry_anchors(sqlite, pg_url)
    assert first["carried"] == {"churn": sorted(registered)} and first["not_anchored"] == []
    copied = Anchors(engines.engine_for(pg_url)).of("churn")
    assert {v: (a.artifact_sha256, a.card_sha256, a.origin) for v, a in copied.items()} == {
        v: (a.artifact_sha256, a.card_sha256, a.origin) for v, a in registered.items()}
    assert stack.carry_anchors(sqlite, pg_url)["carried"] == {}  # a second start copies nothing again

    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", pg_url)  # the stack's workers: no "NOT anchored" warning
    engines.engine_for.cache_clear()
    with caplog.at_level(logging.WARNING):
        mv = Registry().resolve("churn", "champion")
    assert mv.anchor is not None, "the champion must be checked against its copied anchor"
    assert "NOT anchored" not in caplog.text


def test_up_names_models_it_could_not_anchor(home: Path, pg_url: str) -> None:
    """No record anywhere (the models were registered with no database): named, with the command that anchors."""
    stack = _native_stack()
    result = stack.carry_anchors(f"sqlite:///{home / 'never-created.db'}", pg_url)
    assert result == {"from": None, "carried": {}, "not_anchored": ["churn"]}
