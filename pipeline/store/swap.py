"""PostgreSQL: a partition loaded into a table of its own, indexed, then swapped in for the old one."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import livecopy, settings
from pipeline.store import analyst, bulk, engines, load_tables, locks, naming, sqlfiles


def replace_adbc(engine: Engine, table: str, columns: list[str], job_id: str, partition_date: dt.date,
                  batches: Iterable[pa.Table], quarantine: Iterable[list[dict[str, Any]]],
                  schema: str | None = None, attempt: tuple[str, int] | None = None,
                  constants: dict[str, Any] | None = None) -> int:
    """PostgreSQL: load the partition's rows into a table of their own, index it, swap it in.

    1. **load**: ``<prefix>_<yyyymmdd>_load_<token>`` (``LIKE`` the predictions table, no index) takes
       the rows by binary COPY; committed, it is visible to no reader of the predictions table. The
       COPY carries only the columns that vary by row: ``constants`` are the load table's defaults
       while it loads (dropped after), and absent lineage columns are null.
    2. **index**: the primary key and the index by key, as the predictions table has them, and a
       ``CHECK`` on the day that lets ``ATTACH`` skip its scan; ``ANALYZE``.
    3. **swap**, one short transaction (``_swap``): the quarantine rows replaced, the publish check of
       ``pipeline.lease``, the day's old partition detached and dropped, the new one attached. The table
       is taken from its readers in tries of ``locks.SWAP_TRY_MS`` (``locks.take_from_readers``): readers never
       queue behind a waiting swap for longer than that.

    Readers see the old partition until 3 commits, then the new one: a re-run costs what a first
    load costs (no DELETE, no index maintenance during the COPY). A failure anywhere drops the load
    table; one left by a killed attempt is dropped by the next persist into the table.
    """
    import adbc_driver_postgresql.dbapi as adbc

    prefix, key = naming.partition_prefix(table), columns[0]
    token = hashlib.sha256(f"{attempt}:{os.getpid()}:{time.time_ns()}".encode()).hexdigest()[:6]
    load = f"{prefix}_{partition_date:%Y%m%d}_load_{token}"
    with adbc.connect(engines.libpq_uri(engine)) as conn, conn.cursor() as cur:  # autocommit off
        homes = _homes(cur, engine, schema)
        mark = load_tables.LOAD_MARK + json.dumps({"table": table, "job_id": job_id, "day": partition_date.isoformat(),
                                                   "run_id": attempt and attempt[0],
                                                   "attempt": attempt and attempt[1], "ledger": homes.ledger})
        parent, q_load = naming.qualified(engine, homes.table, table), naming.qualified(engine, homes.days, load)
        load_tables.drop_stale_loads(cur, engine, homes.days, table, partition_date)
        constants = constants or {}
        _create_load(engine, cur, q_load, parent, partition_date, mark, constants)
        conn.commit()
        try:
            written = bulk.copy_rows(cur, load, homes.days, [c for c in columns if c not in constants], batches)
            conn.commit()
            _ready(conn, cur, engine, homes.days, load, parent, constants,
                   f"{prefix[:40]}_{partition_date:%Y%m%d}_{token}_pkey")
            rows = list(quarantine)  # read once: a swap that must wait for readers is tried again
            locks.tried(locks.SWAP_TRIES, conn, f"swapping partition {partition_date} of {table} in", lambda: _swap(
                cur, engine, homes, table, key, load, partition_date, job_id, rows, attempt, mark))
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
                cur.execute(sqlfiles.statement(engine, "store/common.sql", "drop_table", quoted={"table": q_load}))
                conn.commit()
            raise
    return written


def _homes(cur: Any, engine: Engine, schema: str | None) -> Homes:
    """The schemas of this persist; the connection's own holds the operational tables (the quarantine's)."""
    cur.execute(sqlfiles.plain("store/common.sql", "current_schema"))
    db_schema = cur.fetchone()[0]
    days_in = naming.storage_schema(engine, schema) or db_schema  # the day partitions' and load tables' schema
    return Homes(schema or db_schema, days_in, db_schema, schema)


def _ready(conn: Any, cur: Any, engine: Engine, home: str, load: str, parent: str, constants: dict[str, Any],
           pk_name: str) -> None:
    """The loaded table made ready to swap: the constants' defaults dropped, indexed, analysed (committed)."""
    q_load = naming.qualified(engine, home, load)
    if constants:
        for column in constants:
            _run(cur, engine, "drop_default", load=q_load, column=naming.quote(engine, column))
        conn.commit()  # before the index builds: the other connections' wait for this lock
    _index_load(engine, cur, home, load, parent, pk_name)
    _run(cur, engine, "analyze", load=q_load)
    conn.commit()


def _create_load(engine: Engine, cur: Any, q_load: str, parent: str, day: dt.date, mark: str,
                 constants: dict[str, Any]) -> None:
    """The load table: ``LIKE`` the parent, a ``CHECK`` on the day (checked row by row by the COPY, it lets
    ATTACH skip its scan), the attempt's mark as its COMMENT, the run's constants as column defaults."""
    _run(cur, engine, "create_load", load=q_load, parent=parent, day=naming.date_literal(engine, day))
    _run(cur, engine, "mark_load", load=q_load, mark=naming.literal(engine, mark))
    for column, value in constants.items():
        _run(cur, engine, "set_default", load=q_load, column=naming.quote(engine, column),
             value=_default_sql(engine, value))


def _default_sql(engine: Engine, value: Any) -> str:
    """A constant as a column default (DDL takes no bound parameters: a literal rendered by the dialect)."""
    if isinstance(value, bool) or not isinstance(value, int | str | dt.date):
        raise TypeError(f"no column default for {value!r}")
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        expr = sa.cast(sa.literal(aware.isoformat(), sa.String()), sa.TIMESTAMP(timezone=True))
    elif isinstance(value, dt.date):
        expr = sa.cast(sa.literal(value.isoformat(), sa.String()), sa.Date())
    elif isinstance(value, int):
        expr = sa.literal(int(value), sa.Integer())
    else:
        expr = sa.literal(value, sa.String())
    return str(expr.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))


def _index_load(engine: Engine, cur: Any, home: str, load: str, parent: str, pk_name: str) -> None:
    """The load table's indexes, as the predictions table has them (its primary key leads with the key;
    a table made before issue 15 leads with the date and has an index by key besides, and an analyst
    may have added more): every plain index built at the same time, one connection each (a build
    mostly waits on one core), then the unique one made the primary key (no second build). ATTACH
    then finds each of the parent's indexes ready; an expression or partial index it builds itself."""
    q_load = naming.qualified(engine, home, load)
    cur.execute(sqlfiles.plain("store/swap.sql", "parent_indexes"), parameters=(parent,))
    builds = []
    for primary, unique, indexed in cur.fetchall():
        cols = ", ".join(engine.dialect.identifier_preparer.quote_identifier(n) for n in indexed)
        kind = "primary_index" if primary else "unique_index" if unique else "index"
        builds.append((primary, sqlfiles.statement(engine, "store/swap.sql", kind, quoted={
            "name": naming.quote(engine, pk_name), "load": q_load, "columns": cols})))
    _build_together(engine, cur, load, [sql for _, sql in builds])
    if builds and builds[0][0]:
        _run(cur, engine, "primary_key", load=q_load, name=naming.quote(engine, pk_name))


def _build_together(engine: Engine, cur: Any, load: str, builds: list[str]) -> None:
    """The first index built on ``cur``, every other one at the same time on a connection of its own."""
    import psycopg

    failure: list[BaseException] = []
    patience = sqlfiles.plain("store/swap.sql", "index_lock_timeout")

    def build(sql: str) -> None:
        try:
            with psycopg.connect(engines.libpq_uri(engine), autocommit=True) as other:
                other.execute(patience)  # the load table is this persist's alone: never wait long
                other.execute(sql)
        except BaseException as exc:
            failure.append(exc)

    helpers = [threading.Thread(target=build, args=(sql,), name=f"index {load}") for sql in builds[1:]]
    for helper in helpers:
        helper.start()
    try:
        if builds:
            cur.execute(builds[0])
    finally:
        for helper in helpers:
            helper.join()
    if failure:
        raise failure[0]


@dataclasses.dataclass(frozen=True)
class Homes:
    """PostgreSQL: the schemas of a persist: the predictions table's, its days' (and load tables'), the ledger's,
    and the job's analysts' schema (None: the connection's own)."""

    table: str
    days: str
    ledger: str
    analyst: str | None


def _swap(cur: Any, engine: Engine, homes: Homes, table: str, key: str, load: str, day: dt.date, job_id: str,
          quarantine: list[list[dict[str, Any]]], attempt: tuple[str, int] | None, mark: str) -> None:
    """The swap transaction: the latest-row table kept in step, quarantine, publish check, then (holding
    the table's lock only for these catalogue changes) the old partition of ``day`` detached and dropped
    and ``load`` attached as it."""
    _publish_rows(cur, engine, homes, table, key, load, day)
    cur.execute(sqlfiles.plain("store/swap.sql", "delete_quarantine"), parameters=(job_id, day))
    for rows in quarantine:
        if rows:
            cur.adbc_ingest("scoring_quarantine", bulk.quarantine_table(rows), mode="append",
                            db_schema_name=homes.ledger)
    if attempt is not None:
        livecopy.publish_adbc(cur, job_id, *attempt, day)
    _exchange(cur, engine, homes, table, load, day, json.loads(mark[len(load_tables.LOAD_MARK):]))


def _publish_rows(cur: Any, engine: Engine, homes: Homes, table: str, key: str, load: str, day: dt.date) -> None:
    """The latest-row table kept in step with the day's new rows (sql/023), one publish of the table at a time."""
    q_load = naming.qualified(engine, homes.days, load)
    current = naming.qualified(engine, homes.days, naming.latest_table(table))
    _run(cur, engine, "lock_latest", current=current)
    locks.lock_timeout_adbc(cur, int(settings.swap_lock_timeout_s() * 1000))
    cur.execute(sqlfiles.plain("store/swap.sql", "columns_of"), parameters=(current,))
    columns = [r[0] for r in cur.fetchall()]
    for stmt in analyst.latest_statements(engine, table, key, columns, day, homes.analyst, q_load):
        cur.execute(stmt)


def _exchange(cur: Any, engine: Engine, homes: Homes, table: str, load: str, day: dt.date,
              info: dict[str, Any]) -> None:
    """The day's old partition detached and dropped, the load table renamed and attached as the day, noted."""
    parent, q_load = naming.qualified(engine, homes.table, table), naming.qualified(engine, homes.days, load)
    final = f"{naming.partition_prefix(table)}_{day:%Y%m%d}"
    cur.execute(sqlfiles.plain("store/swap.sql", "partitions_of_day"),
                parameters=(parent, f"FOR VALUES IN ('{day.isoformat()}')"))
    olds = [r[0] for r in cur.fetchall()]
    if olds:  # DETACH takes the table from its readers: in short tries, so they never queue behind it for long
        locks.take_from_readers(cur, engine, f"ONLY {parent}, {', '.join(olds)}", f"partition {day} of {table}")
    for old in olds:
        _run(cur, engine, "detach", parent=parent, old=old)
        _run(cur, engine, "drop", old=old)
    _run(cur, engine, "rename_load", load=q_load, final=naming.quote(engine, final))
    partition = naming.qualified(engine, homes.days, final)
    _run(cur, engine, "attach", parent=parent, partition=partition, day=naming.date_literal(engine, day))
    _run(cur, engine, "note_partition", partition=partition, note=naming.literal(
        engine, f"Partition {day} of {table}: the rows of run {info['run_id']} attempt {info['attempt']}."))


def _run(cur: Any, engine: Engine, which: str, /, **quoted: str) -> None:
    """Execute the statement ``which`` of sql/store/swap.sql, its placeholders filled with quoted fragments."""
    cur.execute(sqlfiles.statement(engine, "store/swap.sql", which, quoted=quoted))
