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
from sqlalchemy.engine import Engine

from pipeline import livecopy, settings
from pipeline.store import analyst, bulk, engines, load_tables, locks, naming


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
        cur.execute("SELECT current_schema()")
        db_schema = cur.fetchone()[0]  # the operational tables' (the quarantine's)
        mark = load_tables.LOAD_MARK + json.dumps({"table": table, "job_id": job_id, "day": partition_date.isoformat(),
                                       "run_id": attempt and attempt[0], "attempt": attempt and attempt[1],
                                       "ledger": db_schema})
        home = schema or db_schema
        days_in = naming.storage_schema(engine, schema) or db_schema  # the day partitions' and load tables' schema
        parent, q_load = naming.qualified(engine, home, table), naming.qualified(engine, days_in, load)
        load_tables.drop_stale_loads(cur, engine, days_in, table, partition_date)
        constants = constants or {}
        _create_load(engine, cur, q_load, parent, partition_date, mark, constants)
        conn.commit()
        try:
            written = bulk.copy_rows(cur, load, days_in, [c for c in columns if c not in constants], batches)
            conn.commit()
            if constants:
                cur.execute(f"ALTER TABLE {q_load} " + ", ".join(
                    f"ALTER COLUMN {naming.quote(engine, c)} DROP DEFAULT" for c in constants))
                conn.commit()  # before the index builds: the other connections' wait for this lock
            _index_load(engine, cur, days_in, load, parent, f"{prefix[:40]}_{partition_date:%Y%m%d}_{token}_pkey")
            cur.execute(f"ANALYZE {q_load}")
            conn.commit()
            rows = list(quarantine)  # read once: a swap that must wait for readers is tried again
            locks.tried(locks.SWAP_TRIES, conn, f"swapping partition {partition_date} of {table} in", lambda: _swap(
                cur, engine, Homes(home, days_in, db_schema, schema), table, key, load, partition_date, job_id, rows,
                attempt, mark))
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
                cur.execute(f"DROP TABLE IF EXISTS {q_load}")
                conn.commit()
            raise
    return written


def _create_load(engine: Engine, cur: Any, q_load: str, parent: str, day: dt.date, mark: str,
                 constants: dict[str, Any]) -> None:
    """The load table: ``LIKE`` the parent, a ``CHECK`` on the day (checked row by row by the COPY, it lets
    ATTACH skip its scan), the attempt's mark as its COMMENT, the run's constants as column defaults."""
    cur.execute(f"CREATE TABLE {q_load} (LIKE {parent} INCLUDING DEFAULTS, CHECK (partition_date = DATE "
                f"'{day.isoformat()}'))")
    cur.execute(f"COMMENT ON TABLE {q_load} IS {naming.literal(engine, mark)}")
    if constants:
        cur.execute(f"ALTER TABLE {q_load} " + ", ".join(
            f"ALTER COLUMN {naming.quote(engine, c)} SET DEFAULT {_default_sql(engine, v)}" for c, v in constants.items()))


def _default_sql(engine: Engine, value: Any) -> str:
    """A constant as a column default (DDL takes no bound parameters: text is quoted by the dialect)."""
    if isinstance(value, bool) or not isinstance(value, int | str | dt.date):
        raise TypeError(f"no column default for {value!r}")
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return f"CAST({naming.literal(engine, aware.isoformat())} AS TIMESTAMPTZ)"
    if isinstance(value, dt.date):
        return f"CAST({naming.literal(engine, value.isoformat())} AS DATE)"
    return naming.literal(engine, value)


def _index_load(engine: Engine, cur: Any, home: str, load: str, parent: str, pk_name: str) -> None:
    """The load table's indexes, as the predictions table has them (its primary key leads with the key;
    a table made before issue 15 leads with the date and has an index by key besides, and an analyst
    may have added more): every plain index built at the same time, one connection each (a build
    mostly waits on one core), then the unique one made the primary key (no second build). ATTACH
    then finds each of the parent's indexes ready; an expression or partial index it builds itself."""
    import psycopg

    q_load = naming.qualified(engine, home, load)
    cur.execute("SELECT i.indisprimary, i.indisunique, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY "
                "AS k(num, pos) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos) "
                "FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indexprs IS NULL AND i.indpred IS NULL "
                "ORDER BY i.indisprimary DESC", parameters=(parent,))
    builds = []
    for primary, unique, indexed in cur.fetchall():
        cols = ", ".join(engine.dialect.identifier_preparer.quote_identifier(n) for n in indexed)
        name = f" {naming.quote(engine, pk_name)}" if primary else ""
        builds.append((primary, f"CREATE {'UNIQUE ' if unique else ''}INDEX{name} ON {q_load} ({cols})"))
    failure: list[BaseException] = []

    def build(sql: str) -> None:
        try:
            with psycopg.connect(engines.libpq_uri(engine), autocommit=True) as other:
                other.execute("SET lock_timeout = '60s'")  # the load table is this persist's alone: never wait long
                other.execute(sql)
        except BaseException as exc:
            failure.append(exc)

    helpers = [threading.Thread(target=build, args=(sql,), name=f"index {load}") for _, sql in builds[1:]]
    for helper in helpers:
        helper.start()
    try:
        if builds:
            cur.execute(builds[0][1])
    finally:
        for helper in helpers:
            helper.join()
    if failure:
        raise failure[0]
    if builds and builds[0][0]:
        cur.execute(f"ALTER TABLE {q_load} ADD PRIMARY KEY USING INDEX {naming.quote(engine, pk_name)}")


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
    parent, q_load = naming.qualified(engine, homes.table, table), naming.qualified(engine, homes.days, load)
    current = naming.qualified(engine, homes.days, naming.latest_table(table))
    # one publish of the table at a time keeps its latest rows (readers are not held: they take ACCESS SHARE)
    cur.execute(f"LOCK TABLE {current} IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(f"SET LOCAL lock_timeout = '{int(settings.swap_lock_timeout_s() * 1000)}ms'")
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", parameters=(current,))
    columns = [r[0] for r in cur.fetchall()]
    for stmt in analyst.latest_statements(engine, table, key, columns, day, homes.analyst, q_load):
        cur.execute(stmt)
    cur.execute("DELETE FROM scoring_quarantine WHERE job_id = $1 AND partition_date = $2", parameters=(job_id, day))
    for rows in quarantine:
        if rows:
            cur.adbc_ingest("scoring_quarantine", bulk.quarantine_table(rows), mode="append", db_schema_name=homes.ledger)
    if attempt is not None:
        livecopy.publish_adbc(cur, job_id, *attempt, day)
    final = f"{naming.partition_prefix(table)}_{day:%Y%m%d}"
    cur.execute(
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = $1::regclass AND pg_get_expr(c.relpartbound, c.oid) = $2",
        parameters=(parent, f"FOR VALUES IN ('{day.isoformat()}')"))
    olds = [r[0] for r in cur.fetchall()]
    if olds:  # DETACH takes the table from its readers: in short tries, so they never queue behind it for long
        locks.take_from_readers(cur, engine, f"ONLY {parent}, {', '.join(olds)}", f"partition {day} of {table}")
    for old in olds:
        cur.execute(f"ALTER TABLE {parent} DETACH PARTITION {old}")
        cur.execute(f"DROP TABLE {old}")
    cur.execute(f"ALTER TABLE {q_load} RENAME TO {naming.quote(engine, final)}")
    cur.execute(f"ALTER TABLE {parent} ATTACH PARTITION {naming.qualified(engine, homes.days, final)} "
                f"FOR VALUES IN (DATE '{day.isoformat()}')")
    info = json.loads(mark[len(load_tables.LOAD_MARK):])
    cur.execute(f"COMMENT ON TABLE {naming.qualified(engine, homes.days, final)} IS " + naming.literal(
        engine, f"Partition {day} of {table}: the rows of run {info['run_id']} attempt {info['attempt']}."))
