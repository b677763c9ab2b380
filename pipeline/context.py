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

from pipeline.config import JobConfig
from pipeline.connections import Resolver
from pipeline.registry import ModelVersion, Registry
from pipeline.staging import RunSpec

log = logging.getLogger("pipeline.run")


class RunLog(logging.LoggerAdapter):
    """Prefix every line with the job, partition and run id."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        e = self.extra or {}
        return f"[job={e['job']} partition={e['partition']} run={e['run']}] {msg}", kwargs


def run_log(spec: RunSpec) -> RunLog:
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


def engine_for_job(job: JobConfig, url: str | None = None, resolver: Resolver | None = None) -> Any:
    """The job's output database engine (``url`` when the caller resolved it already)."""
    from pipeline import store

    return store.engine_for(url or store.resolve_url(job.output.connection, resolver))


@dataclass(frozen=True)
class RunContext:
    """Job, run spec, output engine, the pinned model version, logger and resolver of one task.

    ``engine`` may be None for stages that touch no database (unit tests build such contexts
    with an inline card).
    """

    job: JobConfig
    spec: RunSpec
    model: ModelVersion
    engine: Any = None
    resolver: Resolver | None = None
    log: RunLog = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "log", run_log(self.spec))  # frozen: set once, here

    @classmethod
    def build(cls, job: JobConfig, spec: RunSpec, url: str | None = None,
              resolver: Resolver | None = None) -> RunContext:
        """Resolve the pinned model version and the output engine once."""
        model = Registry().resolve(spec.model_name, spec.model_version)
        return cls(job, spec, model, engine_for_job(job, url, resolver), resolver)

    @property
    def card(self) -> dict[str, Any]:
        return self.model.card

    @property
    def batch_rows(self) -> int:
        return self.job.source.batch_rows

    def path(self, name: str) -> Path:
        """This task's file of a staged dataset (``steps.SCORED`` ...)."""
        return self.spec.path(name)

    def parts(self, name: str) -> list[Path]:
        """Every file of a staged dataset: one per shard for a sharded run's root, else one."""
        return self.spec.parts(name)

    def for_shard(self, shard: int) -> RunContext:
        return replace(self, spec=self.spec.for_shard(shard))

    def with_spec(self, spec: RunSpec) -> RunContext:
        return replace(self, spec=spec)
