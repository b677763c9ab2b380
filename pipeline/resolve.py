"""The one model resolver: every model version anything uses is resolved here, at one level of trust.

A run resolves every model it touches (champion, challengers, route models) when it starts and records
the versions in its spec; each later task resolves those pinned versions through its run context's
``Models`` (``RunContext.models``), once per task; the outcomes job, ``scoring models show`` and
``verify`` resolve through it too. Every card is checked against its anchor in the registry database
(``pipeline.anchors.registry``: ``SCORING_REGISTRY_DB``, found through the caller's connections), never
the database a job writes to.
"""

from __future__ import annotations

from typing import Any

from pipeline.connections import Resolver
from pipeline.model import ModelVersion
from pipeline.registry import Registry


class Models:
    """Resolve model versions, anchored in the registry database, each (name, reference) once.

    ``resolver``: the caller's connections (a task's Airflow connections), through which the registry
    database is found when ``AIRFLOW_CONN_<ID>`` does not name it. ``registry``: a registry the caller
    built already (``scoring models --models-dir/--connection``); by default the one below
    ``SCORING_MODELS_DIR`` with the registry database's anchors, made on first use.
    """

    def __init__(self, resolver: Resolver | None = None, registry: Registry | None = None) -> None:
        self.resolver = resolver
        self._registry = registry
        self._resolved: dict[tuple[str, str], ModelVersion] = {}

    @property
    def registry(self) -> Registry:
        """The registry resolved in (and loaded from: ``Registry.load``), its anchors the registry database's."""
        if self._registry is None:
            self._registry = Registry(resolver=self.resolver)
        return self._registry

    def resolve(self, name: str, ref: str | int) -> ModelVersion:
        """A version number or alias resolved, its card checked against its anchor; an error is not remembered."""
        key = (name, str(ref).strip())
        if key not in self._resolved:
            mv = self.registry.resolve(name, ref)  # the one place a model version is resolved
            self._resolved[key] = self._resolved[(name, str(mv.version))] = mv
        return self._resolved[key]

    def card(self, name: str, ref: str | int) -> dict[str, Any]:
        """The checked card of a version (``resolve``)."""
        return self.resolve(name, ref).card
