"""Project exceptions: each message says what failed, where, and what to do next."""

from __future__ import annotations

from typing import Any


class ScoringError(Exception):
    """Base class of every error the pipeline raises on purpose.

    ``retryable`` says whether running the same task again can help: a database that was
    down may be back, a bad job file or a tampered model will not change by itself. The
    DAG fails a task at once, without its retries, when the error is not retryable.
    ``counts`` holds what the failing stage had counted (rows in, quarantined, ...): the
    ledger records them with the failure.
    """

    retryable = True

    def __init__(self, *args: object, counts: dict[str, Any] | None = None) -> None:
        super().__init__(*args)
        self.counts: dict[str, Any] = dict(counts or {})


class ConfigError(ScoringError):
    """A job file is missing, unreadable or does not match the job schema."""

    retryable = False


class PartitionNotFoundError(ScoringError):
    """The partition's files are not there (yet)."""

    retryable = False


class InputError(ScoringError):
    """A partition cannot be read as the model's input contract (partition-level failure)."""

    retryable = False


class ValidationFailedError(ScoringError):
    """Too many rows failed validation: the run publishes nothing."""

    retryable = False


class ModelNotFoundError(ScoringError):
    """The requested model, version or alias is not in the registry."""

    retryable = False


class ModelIntegrityError(ScoringError):
    """A model artifact does not match the sha256 of its model card, or cannot be loaded."""

    retryable = False


class StoreError(ScoringError):
    """The output database refused a write or could not be reached."""


class ReconciliationError(ScoringError):
    """The run ledger does not add up: a row was lost or counted twice."""

    retryable = False


class DeliveryError(ScoringError):
    """Push mode: some batches could not be delivered (they are dead-lettered); a retry may succeed."""


class PermanentDeliveryError(DeliveryError):
    """Push mode: the receiver refused batches in a way a retry cannot fix (HTTP 4xx, unroutable)."""

    retryable = False


class DriftError(ScoringError):
    """Drift that is a breach (PSI above the threshold, significant, enough rows) with ``drift.on_breach:
    block``: the output step refuses, the run publishes nothing."""

    retryable = False


class QualityBreach(ScoringError):
    """A published partition carries a flagged breach (drift, quarantine share): the DAG's check task fails
    on it, the partition stays published. Re-running does not change the data, so it is not retryable."""

    retryable = False


class StagingError(ScoringError):
    """A step's staged input is missing (the staging area was cleaned): re-run the run from its start."""

    retryable = False
