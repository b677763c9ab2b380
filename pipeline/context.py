"""The run context: what every stage of one task needs, built once per task.

A task (or ``scoring run``) builds one ``RunContext`` from the job, the run's spec and the
output database's URL; the stages take it instead of re-reading the model card, rebuilding
the engine or the logger. The spec is the small, JSON-serialisable part that travels
between tasks (through XCom); the context is rebuilt from it in each task.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import redact
from pipeline.config import JobConfig
from pipeline.connections import Resolver
from pipeline.model import ModelVersion
from pipeline.registry import Registry
from pipeline.resolve import Models
from pipeline.staging import RunSpec
from pipeline.store import engines

log = logging.getLogger("pipeline.run")


class RunLog(logging.LoggerAdapter):
    """Prefix every line with the job, partition and run id; the run logger redacts every record
    (URL credentials, secret parameters: ``pipeline.redact.RedactFilter``)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        e = self.extra or {}
        return f"[job={e['job']} partition={e['partition']} run={e['run']}] {msg}", kwargs


def run_log(spec: RunSpec) -> RunLog:
    """The run's logger adapter; installs the redaction filter on ``pipeline.run`` (once)."""
    redact.install(log)
    return RunLog(log, {"job": spec.job_id, "partition": spec.partition_date, "run": spec.run_id})


class Progress:
    """Log a long loop's progress: ``validate: 500000/1000000 rows (81234 rows/s)``."""

    def __init__(self, log: logging.LoggerAdapter, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.done = 0
        self.started = time.perf_counter()

    def add(self, rows: int) -> None:
        self.done += rows
        rate = self.done / max(time.perf_counter() - self.started, 1e-9)
        self.log.info("%s: %d/%d rows (%.0f rows/s)", self.what, self.done, self.total, rate)


def counted(counts: dict[str, Any] | None, **values: Any) -> dict[str, Any]:
    """Fill a stage's counts in place: ``run_step`` passes its own dict, so what a stage counted is
    recorded in the ledger even when a later part of the stage fails."""
    counts = {} if counts is None else counts
    counts.update(values)
    return counts


def engine_for_job(job: JobConfig, url: str | None = None, resolver: Resolver | None = None) -> Any:
    """The job's output database engine (``url`` when the caller resolved it already)."""
    return engines.engine_for(url or engines.resolve_url(job.output.connection, resolver))


@dataclass(frozen=True)
class RunContext:
    """Job, run spec, output engine, the pinned model version, logger and resolver of one task.

    ``engine`` may be None for stages that touch no database (unit tests build such contexts
    with an inline card). ``models``: the task's model resolver (``pipeline.resolve.Models``, anchored in
    the registry database through ``resolver``): every model version the task uses is resolved through it,
    once; a context made from another (a shard's, a route's) shares its parent's.
    """

    job: JobConfig
    spec: RunSpec
    model: ModelVersion | None = None
    engine: Any = None
    resolver: Resolver | None = None
    log: RunLog = field(init=False, repr=False, compare=False)
    models: Models = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", run_log(self.spec))  # frozen: set once, here
        if self.models is None:
            object.__setattr__(self, "models", Models(self.resolver))

    @classmethod
    def build(cls, job: JobConfig, spec: RunSpec, url: str | None = None,
              resolver: Resolver | None = None) -> RunContext:
        """The context of one task: its output engine now, the pinned model version on first use."""
        return cls(job, spec, None, engine_for_job(job, url, resolver), resolver)

    def pinned(self) -> ModelVersion:
        """The run's pinned model version, resolved once, on first use (inside a stage, so that a
        missing version or a broken card is recorded in the ledger as the stage's failure)."""
        if self.model is None:  # its card checked against its anchor in the registry database, whatever the output's
            object.__setattr__(self, "model", self.models.resolve(self.spec.model_name, self.spec.model_version))
        assert self.model is not None
        return self.model

    def registry(self) -> Registry:
        """The model registry with its anchors in the registry database (``pipeline.anchors.registry``), found
        through this task's connections too; never the job's output database."""
        return self.models.registry

    @property
    def card(self) -> dict[str, Any]:
        return self.pinned().card

    @property
    def batch_rows(self) -> int:
        return self.job.source.batch_rows

    def path(self, name: str) -> Path:
        """This task's file of a staged dataset (``steps.SCORED`` ...)."""
        return self.spec.path(name)

    def parts(self, name: str) -> list[Path]:
        """Every file of a staged dataset: one per shard for a sharded run's root, else one."""
        return self.spec.parts(name)

    def with_spec(self, spec: RunSpec) -> RunContext:
        return replace(self, spec=spec)
