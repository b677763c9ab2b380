"""Where the anchors are read: the registry database (SCORING_REGISTRY_DB), found like any connection."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from pipeline import anchors, connections, settings


def _resolver(url: str):  # type: ignore[no-untyped-def]
    return lambda conn_id: connections.from_uri(conn_id, url)


def test_the_registry_database_is_scoring_db_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCORING_REGISTRY_DB")
    assert settings.registry_connection() == "scoring_db"
    monkeypatch.setenv("SCORING_REGISTRY_DB", " registry ")
    assert settings.registry_connection() == "registry"


def test_it_is_found_through_the_environment_a_resolver_or_airflow(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_REGISTRY_DB", "reg")
    monkeypatch.delenv("AIRFLOW_CONN_REG", raising=False)
    monkeypatch.delitem(sys.modules, "airflow.sdk", raising=False)
    assert anchors.registry() is None, "not configured: every version is refused (tests/integration)"
    url = f"sqlite:///{tmp_path / 'reg.db'}"
    found = anchors.registry(_resolver(url))  # a task's resolver (RunContext.registry)
    assert found is not None and found.connection == "reg" and str(tmp_path / "reg.db") in found.where

    conn = connections.from_uri("reg", f"sqlite:///{tmp_path / 'airflow.db'}")
    hook = types.SimpleNamespace(get_connection=lambda conn_id: types.SimpleNamespace(
        conn_type=conn.conn_type, host=conn.host, login=conn.login, password=conn.password, port=conn.port,
        schema=conn.schema, extra_dejson={}))
    monkeypatch.setitem(sys.modules, "airflow.sdk", types.SimpleNamespace(BaseHook=hook))
    found = anchors.registry()  # in an Airflow task: Airflow's connections, without importing Airflow
    assert found is not None and str(tmp_path / "airflow.db") in found.where

    def missing(conn_id: str) -> None:
        raise LookupError(conn_id)

    monkeypatch.setitem(sys.modules, "airflow.sdk", types.SimpleNamespace(BaseHook=types.SimpleNamespace(
        get_connection=missing)))
    assert anchors.registry() is None  # not defined in Airflow either

    monkeypatch.setenv("AIRFLOW_CONN_REG", f"sqlite:///{tmp_path / 'env.db'}")
    assert str(tmp_path / "env.db") in anchors.registry(_resolver(url)).where, "the environment comes first"


def test_the_opt_out_is_exactly_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, allowed in (("1", True), ("true", False), ("0", False), ("", False)):
        monkeypatch.setenv("SCORING_ALLOW_UNANCHORED", value)
        assert settings.allow_unanchored() is allowed
