"""Project exceptions: each message says what failed, where, and what to do next."""

from __future__ import annotations


class ScoringError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(ScoringError):
    """A job file is missing, unreadable or does not match the job schema."""


class PartitionNotFoundError(ScoringError):
    """The partition's files are not there (yet)."""


class InputError(ScoringError):
    """A partition cannot be read as the model's input contract (partition-level failure)."""


class ValidationFailedError(ScoringError):
    """Too many rows failed validation: the run publishes nothing."""


class ModelNotFoundError(ScoringError):
    """The requested model, version or alias is not in the registry."""


class ModelIntegrityError(ScoringError):
    """A model artifact does not match the sha256 of its model card, or cannot be loaded."""


class StoreError(ScoringError):
    """The output database refused a write or could not be reached."""


class ReconciliationError(ScoringError):
    """The run ledger does not add up: a row was lost or counted twice."""


class DeliveryError(ScoringError):
    """Push mode: some batches could not be delivered (they are dead-lettered); a retry may succeed."""


class PermanentDeliveryError(DeliveryError):
    """Push mode: the receiver refused batches in a way a retry cannot fix (HTTP 4xx, unroutable)."""


class DriftError(ScoringError):
    """Drift above the job's threshold with ``drift.block: true``: the run publishes nothing."""
