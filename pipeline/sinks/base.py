"""What every sink shares: the batch it sends, the failure it raises, the interface it implements."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline.redact import redact


class DeliveryFailed(Exception):
    """One delivery attempt failed (its message is redacted: no credential of a URL or header in it).

    Args:
        retryable: another attempt may succeed (5xx, 429, a dropped connection, a broker nack).
        retry_after: seconds the receiver asked us to wait (HTTP Retry-After).
    """

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(redact(message))
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Batch:
    """One batch of a partition's push: its identity, its idempotency key and its rows."""

    job_id: str
    partition_date: str
    model_name: str
    model_version: int
    batch_no: int
    batch_count: int
    key: str
    rows: int
    read: Callable[[], Iterator[pa.Table]]

    def table(self) -> pa.Table:
        """All rows of the batch in one table."""
        return pa.concat_tables(list(self.read()))

    def records(self) -> list[dict[str, Any]]:
        return self.table().to_pylist()

    def body(self, fmt: str) -> bytes:
        """The batch as JSON lines (``jsonl``) or one JSON array (``json``)."""
        rows = self.records()
        if fmt == "json":
            return json.dumps(rows, separators=(",", ":"), default=str).encode()
        return "".join(json.dumps(r, separators=(",", ":"), default=str) + "\n" for r in rows).encode()

    def headers(self) -> dict[str, str]:
        """Metadata every sink sends along (HTTP headers, message headers, stream fields)."""
        return {
            "Idempotency-Key": self.key,
            "X-Scoring-Job": self.job_id,
            "X-Scoring-Partition": self.partition_date,
            "X-Scoring-Model": f"{self.model_name}:{self.model_version}",
            "X-Scoring-Batch": str(self.batch_no),
            "X-Scoring-Batch-Count": str(self.batch_count),
            "X-Scoring-Rows": str(self.rows),
        }


class Sink(ABC):
    """Where a push delivers batches."""

    @property
    @abstractmethod
    def target(self) -> str:
        """Where batches go, without credentials (kept in the delivery state and messages; see pipeline.redact)."""

    @abstractmethod
    def send(self, batch: Batch) -> None:
        """Deliver one batch; return only once the receiver has it, else raise DeliveryFailed."""

    def finish(self, batch_count: int) -> None:  # noqa: B027 - optional hook
        """Called once every batch of a partition is delivered (e.g. remove stale files)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
