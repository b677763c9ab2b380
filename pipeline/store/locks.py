"""Lock patience (PostgreSQL): DDL one at a time, and short lock tries so readers never queue behind a change."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import settings
from pipeline.errors import StoreError
from pipeline.store import engines, sqlfiles

log = logging.getLogger(__name__)


SWAP_TRIES = 3
SWAP_TRY_MS = 300  # one try's lock_timeout: how long readers may queue behind a swap waiting for the table
SWAP_PAUSE_S = (0.05, 1.0)  # the pause after the first failed try, doubling (jittered) up to the second


class SwapWaitError(StoreError):
    """A swap gave up waiting for readers of the predictions table. A retry can help: the readers end."""

    retryable = True


def ddl_lock(conn: Connection) -> None:
    """One schema change at a time, for the rest of the transaction, whose first statement this must be.

    PostgreSQL: an advisory lock (concurrent CREATE ... IF NOT EXISTS can collide). SQLite: the database's
    write lock, taken now (``BEGIN IMMEDIATE``, waiting as any writer does): pysqlite would begin only at the
    first write, so two runs preparing a new job's tables at once both found the latest-row table missing
    and the second filled it again from the rows the first had just published (UNIQUE constraint failed).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(sqlfiles.plain("store/locks.sql", "ddl_lock")))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(sqlfiles.plain("store/locks.sql", "ddl_lock_sqlite"))


def lock_timeout(conn: Connection, ms: int) -> None:
    """PostgreSQL: this transaction's lock waits last ``ms`` at most (``SET LOCAL lock_timeout``, the time bound)."""
    conn.execute(sa.text(sqlfiles.plain("store/common.sql", "lock_timeout")), {"timeout": f"{int(ms)}ms"})


def lock_timeout_adbc(cur: Any, ms: int) -> None:
    """``lock_timeout`` through an ADBC cursor."""
    cur.execute(sqlfiles.plain("store/common.sql", "lock_timeout_adbc"), parameters=(f"{int(ms)}ms",))


def short_locks(engine: Engine, what: str, body: Callable[[Connection], None]) -> None:
    """Run ``body`` in one transaction (under the DDL lock) whose every lock wait is short (PostgreSQL).

    The DDL of a run's start (views made anew, comments, a column added) needs the tables and views
    to itself; a request waiting for one held by a long query would hold every later reader behind
    it. So each wait is ``SWAP_TRY_MS`` at most: the transaction is rolled back, pauses (jittered,
    doubling up to ``SWAP_PAUSE_S[1]``) and is tried again, for up to ``SWAP_TRIES`` times
    ``settings.swap_lock_timeout_s()`` in all, then fails with ``SwapWaitError`` (retryable).
    """
    patience = SWAP_TRIES * settings.swap_lock_timeout_s()
    started = time.monotonic()
    for tried in itertools.count(1):
        try:
            with engines.begin(engine) as conn:
                ddl_lock(conn)  # (waits for another start's DDL as long as it takes)
                if conn.dialect.name == "postgresql":
                    lock_timeout(conn, SWAP_TRY_MS)
                body(conn)
            if tried > 1:
                log.warning("%s: readers held it; done at try %d after %.1fs", what, tried, time.monotonic() - started)
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":
                raise
            waited = time.monotonic() - started
            if waited >= patience:
                raise SwapWaitError(
                    f"{what} gave up after {tried} tries in {waited:.0f}s: queries reading it held it throughout "
                    f"(lock timeout {SWAP_TRY_MS} ms a try, so other readers never waited long behind it). Nothing "
                    "was changed. Retry the task once the long queries have ended (pg_stat_activity lists them); "
                    "SCORING_SWAP_LOCK_TIMEOUT_S sets how long it keeps trying (three times its value).") from None
            first, longest = SWAP_PAUSE_S
            time.sleep(min(longest, first * 2 ** (tried - 1)) * random.uniform(0.5, 1.0))


def patient(conn: Connection) -> None:
    """PostgreSQL: from here on, the transaction's lock waits are as long as a swap's patience: a one-time
    migration (a table made from its whole history) that ``short_locks`` rolled back for a short wait
    late in it would redo all its work at every try. Readers wait for it once, as for any migration."""
    if conn.dialect.name == "postgresql":
        lock_timeout(conn, int(SWAP_TRIES * settings.swap_lock_timeout_s() * 1000))


def tried(tries: int, conn: Any, what: str, transaction: Callable[[], None]) -> None:
    """Run and commit ``transaction``; rolled back and tried again while it waits too long for a lock."""
    for tried in range(1, tries + 1):
        try:
            transaction()
            conn.commit()
            return
        except Exception as exc:
            conn.rollback()
            if getattr(exc, "sqlstate", None) != "55P03" or tried == tries:
                raise
            log.warning("%s: another transaction held a table it writes for %.0fs (try %d/%d)", what,
                        settings.swap_lock_timeout_s(), tried, tries)


def take_from_readers(cur: Any, engine: Engine, tables: str, what: str) -> None:
    """Lock ``tables`` (``ONLY parent, old partition``) ACCESS EXCLUSIVE for the swap, in the caller's transaction.

    While a lock request waits, every reader that comes after it queues behind it: one long query
    would stall all of them for as long as the swap waits. So each try waits ``SWAP_TRY_MS`` at most
    (``sql/060_swap_take.sql``, a PL/pgSQL loop: a failed try is a subtransaction rolled back), then steps
    out of the queue for a jittered pause that doubles up to ``SWAP_PAUSE_S[1]``, for up to ``SWAP_TRIES``
    times ``settings.swap_lock_timeout_s()`` in all. Raises ``SwapWaitError`` when it never got the lock.
    """
    patience = SWAP_TRIES * settings.swap_lock_timeout_s()
    first, longest = SWAP_PAUSE_S
    started = time.monotonic()
    numbers = {"try_ms": SWAP_TRY_MS, "first_s": first, "longest_s": longest, "patience_s": patience,
               "rest_ms": int(settings.swap_lock_timeout_s() * 1000)}
    quoted = {"tables": tables, **{k: str(v) for k, v in numbers.items()}}
    for stmt in sqlfiles.render_sql(engine, "060_swap_take.sql", quoted=quoted):
        cur.execute(stmt)
    cur.execute(sqlfiles.plain("store/locks.sql", "swap_outcome"))
    locked, tries = cur.fetchone()
    waited = time.monotonic() - started
    if locked == "yes":
        if int(tries) > 1:
            log.warning("swapping %s in: readers held the table; took it at try %s after %.1fs", what, tries, waited)
        return
    raise SwapWaitError(
        f"swapping {what} in gave up after {tries} tries in {waited:.0f}s: queries reading the table held it "
        f"throughout (lock timeout {SWAP_TRY_MS} ms a try, so other readers never waited long behind the swap). "
        "The transaction was rolled back; the previous copy of the partition is unchanged. Retry the persist task "
        "once the long queries on the table have ended (pg_stat_activity lists them); SCORING_SWAP_LOCK_TIMEOUT_S "
        "sets how long a swap keeps trying (three times its value).")
