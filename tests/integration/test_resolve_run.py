"""A run resolves every model it touches at one level of trust: anchored in the registry database found through
the task's connections, at its start as in every later task (``pipeline.resolve.Models``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import connections, local
from pipeline.config import load_job
from pipeline.errors import ConfigError, ModelIntegrityError
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition


def test_a_run_finds_the_registry_database_through_the_tasks_connections(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry_id = os.environ["SCORING_REGISTRY_DB"]
    url = os.environ[connections.env_var(registry_id)]
    monkeypatch.delenv(connections.env_var(registry_id))  # known only to the task (Airflow's connections)
    engines.engine_for.cache_clear()

    def task_connections(conn_id: str) -> connections.Conn:
        if conn_id != registry_id:
            raise ConfigError(f"connection {conn_id!r} is not defined")
        return connections.from_uri(conn_id, url)

    write_partition(home, n=300)
    job = load_job(write_job(home))
    with pytest.raises(ModelIntegrityError, match="no registry database is configured"):
        local.run_partition(job, DAY, run_id="without")  # refused at start, as before, with no way to the anchors
    row = local.run_partition(job, DAY, run_id="through", resolver=task_connections)
    assert (row["status"], row["model_version"]) == ("success", 1) and row["rows_scored"] > 0
