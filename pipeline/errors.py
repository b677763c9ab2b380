"""Project exceptions: each message says what failed, where, and what to do next."""

from __future__ import annotations

from typing import Any

from pipeline.textsafe import safe_text


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


class DataRefusedError(StoreError):
    """The output database refused the rows themselves (a PostgreSQL data exception, SQLSTATE class 22, or an
    integrity violation, class 23: a text it cannot store, a duplicate key): the same rows are refused again,
    so it is not retryable. Made by ``store_failure``; its message names the partition, the table and what
    to fix."""

    retryable = False


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


class RequestError(ScoringError):
    """An online request cannot be read as rows (not a list of objects, a key that cannot be read as the job's
    entity_key_type, ...): its message names the problem and the row's position, never a value. The app
    answers it with HTTP 422 (400 for a body that is not JSON); nothing is scored or recorded."""

    retryable = False


# -- database errors: the ones a retry can fix and the ones it cannot ------------------------
DATA_SQLSTATE_CLASSES = ("22", "23")  # data exception, integrity constraint violation
DATA_ERROR_CLASSES = ("DataError", "IntegrityError")  # the DB-API's names (sqlite3, psycopg, ADBC, SQLAlchemy)
SQLSTATE_NAMES = {
    "22001": "a text too long for its column",
    "22003": "a number out of range",
    "22021": "a character not valid in the database's encoding (a NUL or bytes that are not UTF-8)",
    "22P02": "a value of the wrong type",
    "22P05": "a character the database cannot store (a NUL, \\u0000, or a lone surrogate)",
    "23502": "a missing value in a NOT NULL column",
    "23505": "duplicate keys (a unique index could not be built or a row repeats a key)",
    "23514": "a row outside the table's CHECK",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """The error, the driver's error SQLAlchemy wraps (``orig``) and their causes, each once."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen) or len(seen) > 20:
            continue
        seen.append(item)
        todo += [getattr(item, "orig", None), item.__cause__, item.__context__]
    return seen


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error (psycopg's and ADBC's errors carry it; through SQLAlchemy's wrapper and
    the error's causes), or None."""
    for item in _chain(exc):
        code = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_data_error(exc: BaseException) -> bool:
    """The database refused the data itself (SQLSTATE class 22 or 23, or a DB-API ``DataError`` /
    ``IntegrityError``, e.g. SQLite's UNIQUE constraint): retrying the same rows cannot help."""
    code = sqlstate(exc)
    if code is not None:
        return code[:2] in DATA_SQLSTATE_CLASSES
    return any(type(item).__name__ in DATA_ERROR_CLASSES for item in _chain(exc))


def _first_line(exc: BaseException) -> str:
    for item in _chain(exc):
        if getattr(item, "orig", None) is None and str(item).strip():
            return safe_text(str(item).strip().splitlines()[0])
    return type(exc).__name__


def data_refused(exc: BaseException, *, doing: str, partition_date: Any, table: str, where: str = "",
                 key: str | None = None) -> DataRefusedError:
    """The non-retryable error of a write the database refused for its data: what was refused, the partition,
    the table, and the next step (fix the rows, re-run the partition; never 'retry')."""
    code = sqlstate(exc)
    what = SQLSTATE_NAMES.get(code or "", "data it does not accept")
    hint = {
        "23505": f"look for repeated values of the entity key{f' {key!r}' if key else ''} in the partition's source "
                 "(a source that changed while it was read gives them too: re-read it once it is stable)",
        "22021": "find the rows with the NUL character or bytes that are not UTF-8 in the partition's source",
        "22P05": "find the rows with the NUL character or bytes that are not UTF-8 in the partition's source",
    }.get(code or "", "find the offending rows in the partition's source")
    return DataRefusedError(
        f"{doing} partition {partition_date} {'to' if doing.startswith('writing') else 'of'} table {table}"
        f"{f' on {where}' if where else ''} failed: the database refused the data: {what} "
        f"({f'SQLSTATE {code}: ' if code else ''}{_first_line(exc)}). The transaction was rolled back; the previous "
        f"copy of the partition is unchanged. Running it again on the same rows fails the same way: {hint}, fix them, then "
        "re-run the partition."
    )


def store_failure(exc: BaseException, *, doing: str, partition_date: Any, table: str, where: str = "",
                  key: str | None = None) -> StoreError:
    """A failed write as the error to raise: ``data_refused`` (not retryable) when the database refused the
    data, else a retryable ``StoreError`` (the database was down, locked, restarting) that says to retry."""
    if is_data_error(exc):
        return data_refused(exc, doing=doing, partition_date=partition_date, table=table, where=where, key=key)
    return StoreError(
        f"{doing} partition {partition_date} {'to' if doing.startswith('writing') else 'of'} table {table}"
        f"{f' on {where}' if where else ''} failed: {_first_line(exc)}. The transaction was rolled back; the "
        "previous copy of the partition is unchanged. Retry the task once the database is reachable again."
    )


def failure_text(exc: BaseException) -> str:
    """The error as the ledger keeps it: our messages whole; a database error's first line, without its SQL (a
    refusal of the data itself says a retry cannot help); a NUL or lone surrogate shown, never raw."""
    if isinstance(exc, ScoringError):
        return safe_text(str(exc))
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError around the driver's error
    if orig is not None:
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if is_data_error(exc):
            code = sqlstate(exc)
            return safe_text(
                f"database error ({type(orig).__name__}{f', SQLSTATE {code}' if code else ''}): {first}. The "
                "database refused the data itself: a retry fails the same way. Find and fix the offending rows in "
                "the partition's source, then re-run the partition.")
        return safe_text(f"database error ({type(orig).__name__}): {first}. Retry the task once the database "
                         "is back.")
    return safe_text(f"{type(exc).__name__}: {exc}")
