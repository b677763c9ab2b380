"""Load tables left behind by attempts that are not running: found by their mark, dropped."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import livecopy
from pipeline.store import engines, locks, naming, sqlfiles

log = logging.getLogger(__name__)


LOAD_MARK = "scoring load table "  # the COMMENT of a table a persist is loading: this, then JSON (table, attempt)


def drop_stale_loads(cur: Any, engine: Engine, home: str, table: str, day: dt.date) -> None:
    """Drop the load tables of ``table`` left by attempts that are not running (killed, failed, abandoned),
    and any earlier load of ``day`` (this persist supersedes it): the next persist into the table clears
    them (the caller commits). Another day's running attempt keeps its own."""
    cur.execute(sqlfiles.plain("store/load_tables.sql", "loads_in_schema"), parameters=(home, LOAD_MARK))
    for name, text in cur.fetchall():
        info = _load_info(text)
        if info.get("table") != table:
            continue
        status = _attempt_status(livecopy.adbc_query(cur), info)
        if info.get("day") == day.isoformat() or (info.get("run_id") is not None and status != "running"):
            cur.execute(sqlfiles.statement(engine, "store/common.sql", "drop_table", quoted={
                "table": naming.qualified(engine, home, name)}))
            log.info("dropped load table %s.%s of an attempt no longer running", home, name)


def _load_info(comment_text: str) -> dict[str, Any]:
    """The JSON of a load table's mark (``LOAD_MARK`` + JSON); {} when it cannot be read."""
    try:
        info = json.loads(comment_text[len(LOAD_MARK):])
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _attempt_status(query: livecopy.Query, info: dict[str, Any]) -> str | None:
    """The ledger status of the attempt that made a load table (None: no such row, or no attempt in the mark)."""
    if info.get("run_id") is None:
        return None
    rows = query(sqlfiles.plain("store/load_tables.sql", "attempt_status"),
                 {"j": info.get("job_id"), "r": info["run_id"], "a": info.get("attempt")})
    return str(rows[0]["status"]) if rows else None


REAP_LOCK_TIMEOUT_MS = 2000  # a load table still in use (a zombie's COPY) is skipped, not waited for


def drop_dead_loads(engine: Engine, job_id: str) -> list[str]:
    """Drop the load tables of ``job_id``, of any day and any predictions table, in any schema of the
    database, whose attempt is of this ledger (scoring_runs of the connection's schema) and not
    ``running`` there (killed then abandoned, failed, its row deleted); returns their qualified names
    (``schema.table``).

    The reaper's sweep (``pipeline.lease.reap``): a killed attempt's load table goes even when its day is
    never run again. A load table without an attempt in its mark (a direct ``replace_partition`` call)
    is left to the next persist of its day, and one of another ledger (its mark names the schema of the
    ledger that made it; a mark from before, the load table's own schema) to that ledger. Each table is
    dropped in its own short transaction with a lock timeout: one still in use (a zombie still copying
    into it) is skipped and logged, and the next sweep takes it. SQLite has no load tables: [].
    """
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        ledger = conn.execute(sa.text(sqlfiles.plain("store/common.sql", "current_schema"))).scalar_one()
        found = conn.execute(sa.text(sqlfiles.plain("store/load_tables.sql", "loads_anywhere")),
                             {"mark": LOAD_MARK}).all()
    dropped: list[str] = []
    for home, name, text in found:
        info = _load_info(text)
        if info.get("job_id") != job_id or info.get("run_id") is None or info.get("ledger", home) != ledger:
            continue  # another job's, a direct call's, or another ledger's (a second deployment in the database)
        if _drop_if_dead(engine, home, name, info):
            dropped.append(f"{home}.{name}")
    return dropped


def _drop_if_dead(engine: Engine, home: str, name: str, info: dict[str, Any]) -> bool:
    """Drop one load table of the reaper's sweep if its attempt is not running, in a short transaction."""
    try:
        with engines.begin(engine) as conn:
            locks.lock_timeout(conn, REAP_LOCK_TIMEOUT_MS)
            status = _attempt_status(livecopy.sa_query(conn), info)
            if status == "running" or (status is None and "ledger" not in info):
                return False  # alive; or, by a mark of before, maybe another ledger's (nothing to judge it by)
            preparer = engine.dialect.identifier_preparer  # names read from the catalogue, quoted as they are
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "drop_table", quoted={
                "table": f"{preparer.quote_identifier(home)}.{preparer.quote_identifier(name)}"}))
    except sa.exc.OperationalError as exc:
        log.warning("load table %s.%s of job %s (attempt %s) is in use: left for the next sweep (%s)",
                    home, name, info.get("job_id"), info.get("attempt"), str(exc).splitlines()[0])
        return False
    log.info("dropped load table %s.%s of job %s: attempt %s/%s is %s", home, name, info.get("job_id"),
             info.get("run_id"), info.get("attempt"), status or "gone from the ledger")
    return True
