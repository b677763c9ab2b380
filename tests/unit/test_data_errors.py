"""An error a retry cannot fix is never called retryable: database refusals of the data itself (SQLSTATE class
22, 23; the DB-API's DataError / IntegrityError) against a database that is down or locked."""

from __future__ import annotations

import sqlite3

import adbc_driver_manager as adbc
import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from pipeline import errors
from pipeline.errors import (
    DataRefusedError,
    StoreError,
    data_refused,
    is_data_error,
    sqlstate,
    store_failure,
)

UNIQUE_PG = psycopg.errors.UniqueViolation('could not create unique index "p_20261120_ab12cd_pkey"')
NUL_ADBC = adbc.DataError("INVALID_DATA: unsupported Unicode escape sequence",
                          status_code=adbc.AdbcStatusCode.INVALID_DATA, sqlstate="22P05")
UNIQUE_ADBC = adbc.IntegrityError("ALREADY_EXISTS: could not create unique index", sqlstate="23505",
                                  status_code=adbc.AdbcStatusCode.ALREADY_EXISTS)
DATA = [UNIQUE_PG, NUL_ADBC, UNIQUE_ADBC, psycopg.errors.UntranslatableCharacter("unsupported Unicode escape"),
        psycopg.errors.CharacterNotInRepertoire("invalid byte sequence for encoding \"UTF8\": 0x00"),
        sqlite3.IntegrityError("UNIQUE constraint failed: p.customer_id"),
        sa.exc.IntegrityError("INSERT ...", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))]
TRANSIENT = [psycopg.OperationalError("connection refused"), psycopg.errors.AdminShutdown("terminating connection"),
             psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
             psycopg.errors.SerializationFailure("could not serialize access"),
             adbc.OperationalError("IO: could not connect to server", status_code=adbc.AdbcStatusCode.IO),
             sqlite3.OperationalError("database is locked"),
             sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection"))]


@pytest.mark.parametrize("exc", DATA, ids=lambda e: type(e).__name__)
def test_a_refusal_of_the_data_is_not_retryable(exc: BaseException) -> None:
    assert is_data_error(exc)
    wrapped = StoreError("writing ... Retry the persist task.")
    wrapped.__cause__ = exc  # as the store raises it: `raise StoreError(...) from exc`
    assert is_data_error(wrapped)
    error = store_failure(exc, doing="writing", partition_date="2026-11-20", table="churn_predictions",
                          where="postgresql 127.0.0.1:5432/test", key="customer_id")
    assert type(error) is DataRefusedError and isinstance(error, StoreError) and error.retryable is False
    text = str(error)
    assert "partition 2026-11-20" in text and "table churn_predictions" in text and "re-run the partition" in text
    assert "retry" not in text.lower()


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_a_database_that_is_down_or_busy_stays_retryable(exc: BaseException) -> None:
    assert not is_data_error(exc)
    error = store_failure(exc, doing="writing", partition_date="2026-11-20", table="churn_predictions")
    assert type(error) is StoreError and error.retryable is True and "Retry the task" in str(error)


def test_the_message_names_what_was_refused_and_what_to_do() -> None:
    text = str(data_refused(UNIQUE_PG, doing="writing", partition_date="2026-11-20", table="t", key="customer_id"))
    assert "SQLSTATE 23505" in text and "duplicate keys" in text and "'customer_id'" in text
    text = str(data_refused(NUL_ADBC, doing="writing", partition_date="2026-11-20", table="t"))
    assert "SQLSTATE 22P05" in text and "NUL" in text and "not UTF-8" in text


def test_sqlstate_through_the_chain() -> None:
    outer = sa.exc.DataError("INSERT ...", {}, psycopg.errors.UntranslatableCharacter("x"))
    assert sqlstate(outer) == "22P05"
    try:
        try:
            raise UNIQUE_ADBC
        except adbc.Error as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        assert sqlstate(exc) == "23505" and is_data_error(exc)
    assert sqlstate(ValueError("no")) is None and not is_data_error(ValueError("no"))


def test_error_texts_never_carry_a_raw_nul() -> None:
    exc = psycopg.errors.UntranslatableCharacter("value 'a\x00b' refused \udce9")
    text = str(errors.data_refused(exc, doing="writing", partition_date="2026-11-20", table="t"))
    assert "\x00" not in text and "\\x00" in text and "\\udce9" in text
    assert "\x00" not in errors.failure_text(ValueError("file quotes \x00 here")) and "\\x00" in errors.failure_text(
        ValueError("file quotes \x00 here"))


def test_failure_text_of_a_raw_database_error() -> None:
    data = errors.failure_text(sa.exc.IntegrityError("INSERT", {}, UNIQUE_PG))
    assert "SQLSTATE 23505" in data and "retry fails the same way" in data and "Retry the task" not in data
    down = errors.failure_text(sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")))
    assert "Retry the task once the database is back" in down
