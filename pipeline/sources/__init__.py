"""Sources: where a job's partitions come from (a folder of files per day, or a SQL query).

A source answers, for one job, the questions the pipeline asks of its input: is a partition there
(the DAG's sensor, ``scoring run``), how to name it in a log line or a message, how to split a
partition into shards (the sharded run's plan), and the run's rows, read batch by batch into the
contract's schema (the ingest stage). ``source_for`` chooses the implementation from the job file's
``source.kind``: the one place that reads it. A third kind of source is one new module here with a
class of the shape of ``Source``, and its line in ``SOURCES``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.sources.files import FilesSource
from pipeline.sources.sql import SqlSource

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.connections import Resolver
    from pipeline.kernels.conform import IngestResult, Wanted
    from pipeline.staging import RunSpec

__all__ = ["FilesSource", "Source", "SqlSource", "source_for"]


class Source(Protocol):
    """What every source implements (``FilesSource``, ``SqlSource``); ``ctx`` is the task's RunContext."""

    job: JobConfig

    def ready(self, day: dt.date, resolver: Resolver | None = None) -> bool:
        """Whether the partition is there to be read (the sensor's question)."""

    def require(self, day: dt.date, resolver: Resolver | None = None) -> None:
        """Raise PartitionNotFoundError when the partition is not there (``scoring run`` opens no attempt then)."""

    def describe(self) -> str:
        """How messages name the source."""

    def where(self, day: dt.date, ready: bool) -> str:
        """Where the partition is looked for and what was seen, for wait_for_partition's log lines."""

    def missing(self, day: dt.date) -> tuple[str, str]:
        """A partition that never came: what was not seen, and what to check (the ``missing`` ledger row)."""

    def timeout_message(self, day: dt.date) -> str:
        """wait_for_partition's message when it gives up."""

    def empty(self, day: dt.date, files: int) -> str:
        """What held no rows, for an empty partition's message."""

    def plan(self, ctx: Any) -> tuple[RunSpec, list[RunSpec]]:
        """A sharded run's plan: the root spec (with the shards used) and one spec per shard."""

    def read(self, ctx: Any, wanted: Wanted, write: Any) -> IngestResult:
        """The run's rows (a shard's share) into ``write``, batch by batch, in the contract's schema."""


SOURCES: dict[str, Callable[[JobConfig], Source]] = {"files": FilesSource, "sql": SqlSource}  # by source.kind


def source_for(job: JobConfig) -> Source:
    """The source the job file's ``source`` describes."""
    return SOURCES[job.source.kind](job)
