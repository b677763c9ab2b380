"""The live copy of a partition: which attempt may publish it, checked in the transaction that writes it.

Below ``pipeline.store`` (whose partition writes run the check inside their own transaction) and
``pipeline.lease`` (which opens, watches and closes attempts): plain SQL on the ledger, through a
SQLAlchemy connection or an ADBC cursor.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline.errors import ScoringError

REFUSED = "start"  # failed_stage of an attempt refused when it opened: it never held the partition


def _now() -> dt.datetime:
    """UTC now without tzinfo, as the ledger binds it (``pipeline.ledger.now``)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SupersededError(ScoringError):
    """A later attempt of the partition has started: this one must not go on (nor publish)."""

    retryable = False


# -- the per-partition lock --------------------------------------------------------------
def lock_key(job_id: str, partition_date: str | dt.date) -> str:
    return f"scoring_partition:{job_id}:{partition_date}"


def advisory_lock(conn: Connection, job_id: str, partition_date: str | dt.date) -> None:
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": lock_key(job_id, partition_date)})


Query = Callable[[str, dict[str, Any]], list[dict[str, Any]]]  # runs one statement with :named parameters


def sa_query(conn: Connection) -> Query:
    """A SQLAlchemy connection as a ``Query``."""
    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        result = conn.execute(sa.text(sql), params)
        return [dict(r) for r in result.mappings()] if result.returns_rows else []
    return run


def adbc_query(cur: Any) -> Query:
    """An ADBC cursor as a ``Query``: ``:name`` parameters become PostgreSQL's ``$n``."""
    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        names: list[str] = []
        positional = re.sub(r"(?<!:):([a-z_]+)", lambda m: f"${names.append(m[1]) or len(names)}", sql)
        cur.execute(positional, parameters=tuple(params[n] for n in names))
        if cur.description is None:
            return []
        columns = [d[0] for d in cur.description]
        return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    return run


def superseded_by(query: Query, job_id: str, run_id: str, attempt: int, day: Any) -> str | None:
    """The later attempt of the partition that took it over, if one did (refused ones never do)."""
    mine = query("SELECT started_at, status, error FROM scoring_runs WHERE job_id = :j AND run_id = :r "
                 "AND attempt = :a", {"j": job_id, "r": run_id, "a": attempt})
    if not mine:
        return f"its ledger row (run {run_id!r} attempt {attempt}) is gone"
    if mine[0]["status"] == "abandoned":
        return str(mine[0]["error"])
    later = query(
        "SELECT run_id, attempt, status FROM scoring_runs WHERE job_id = :j AND partition_date = :d AND NOT dry_run "
        "AND started_at > :t AND NOT (run_id = :r AND attempt = :a) "
        "AND NOT (status = 'failed' AND COALESCE(failed_stage, '') = :refused) ORDER BY started_at DESC LIMIT 1",
        {"j": job_id, "d": day, "t": mine[0]["started_at"], "r": run_id, "a": attempt, "refused": REFUSED})
    if not later:
        return None
    return f"run {later[0]['run_id']!r} attempt {later[0]['attempt']} ({later[0]['status']}) started later"


# -- publishing --------------------------------------------------------------------------
def publish(conn: Connection, job_id: str, run_id: str, attempt: int, day: dt.date) -> None:
    """In the transaction that replaces the partition's rows (SQLAlchemy): check, then move ``live`` here.

    On SQLite that transaction has written already, so it holds the database's one write lock:
    no other attempt can commit between this check and the rows' commit.
    """
    if conn.dialect.name == "postgresql":
        advisory_lock(conn, job_id, day)
    _publish(sa_query(conn), job_id, run_id, attempt, day)


def publish_adbc(cur: Any, job_id: str, run_id: str, attempt: int, day: dt.date) -> None:
    """The same, on an ADBC cursor inside its transaction (PostgreSQL)."""
    query = adbc_query(cur)
    query("SELECT pg_advisory_xact_lock(hashtext(:k))", {"k": lock_key(job_id, day)})
    _publish(query, job_id, run_id, attempt, day)


def _publish(query: Query, job_id: str, run_id: str, attempt: int, day: dt.date) -> None:
    taken = superseded_by(query, job_id, run_id, attempt, day)
    if taken:
        raise SupersededError(f"partition {day}: run {run_id!r} attempt {attempt} was superseded ({taken}) "
                              "before it published; the rows it staged were not written.")
    params = {"j": job_id, "d": day, "r": run_id, "a": attempt, "t": _now()}
    query("UPDATE scoring_runs SET live = FALSE WHERE job_id = :j AND partition_date = :d AND live", params)
    query("UPDATE scoring_runs SET live = TRUE, published_at = :t WHERE job_id = :j AND run_id = :r AND attempt = :a",
          params)
