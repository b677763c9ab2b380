"""What analysts read: the reader views, the latest-row table kept in step, counts and the daily summary."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.config import check_column_name
from pipeline.store import locks, naming, sqlfiles

log = logging.getLogger(__name__)


READER_VIEWS = ("scoring_attempts", "scoring_drift_daily", "scoring_quarantine_daily", "scoring_promotion_audit")


JOBS_TABLE = "scoring_jobs"


def _record_job(conn: Connection, jobs: str, job_id: str, table: str, key: str, key_type: str) -> None:
    """The job's row of ``scoring_jobs`` (``jobs``: its qualified name): inserted, or updated if it changed."""
    params = {"j": job_id, "t": table, "k": key, "kt": {"int": "BIGINT", "str": "TEXT"}[key_type],
              "u": dt.datetime.now(dt.UTC).replace(tzinfo=None)}

    def sql(name: str) -> sa.TextClause:
        return sa.text(sqlfiles.statement(conn, "store/analyst.sql", name, quoted={"jobs": jobs}))

    row = conn.execute(sql("job_row"), params).first()
    if row is None:
        conn.execute(sql("insert_job"), params)
    elif tuple(row) != (table, key, params["kt"]):
        conn.execute(sql("update_job"), params)


def reader_views(conn: Connection, job_id: str, table: str, key: str, key_type: str, schema: str | None) -> None:
    """The analysts' views of the ledger, the drift, the model audit and the quarantine (``sql/050``, ``sql/051``), limited
    to the jobs recorded in the storage schema's ``scoring_jobs`` as publishing into this schema."""
    parts = naming.storage_schema(conn, schema)
    jobs = naming.table_name(conn, JOBS_TABLE, parts)
    views = {"attempts": READER_VIEWS[0], "drift_daily": READER_VIEWS[1], "quarantine_daily": READER_VIEWS[2],
             "promotion_audit": READER_VIEWS[3]}
    for stmt in sqlfiles.render_sql(conn, "050_reader_views.sql", schema, quoted={"jobs": jobs}, **views):
        conn.exec_driver_sql(stmt)
    _record_job(conn, jobs, job_id, table, key, key_type)
    for stmt in sqlfiles.render_sql(conn, f"051_quarantine_daily.{conn.dialect.name}.sql", schema,
                                    quoted={"jobs": jobs}, quarantine_daily=views["quarantine_daily"]):
        conn.exec_driver_sql(stmt)


NEWEST_TABLE = "scoring_latest_partitions"  # per storage schema: the newest day of each predictions table


def newest(conn: Connection | Engine, schema: str | None) -> str:
    """The qualified, quoted table of the predictions tables' newest days (sql/021) of an analysts' schema."""
    return naming.table_name(conn, NEWEST_TABLE, naming.storage_schema(conn, schema))


def ensure_latest_table(conn: Connection, table: str, key: str, schema: str | None) -> str:
    """The latest-row table of a predictions table (``sql/021_latest_table.sql``): made if missing, from the
    table's history (``sql/022``), in the caller's transaction; columns the table gained are added.
    Returns its qualified, quoted name."""
    parts = naming.storage_schema(conn, schema)
    name = naming.latest_table(table)
    current = naming.table_name(conn, name, parts)
    inspector = sa.inspect(conn)
    existed = inspector.has_table(name, schema=parts)
    prefix = naming.partition_prefix(table)
    ids = {"predictions": table, "key": key, "current_key": f"{prefix}_current_key"}
    columns = [c["name"] for c in inspector.get_columns(table, schema=naming.analyst_schema(conn, schema))]
    if existed:  # (021 not run again: its CREATE INDEX IF NOT EXISTS would wait for a publish's lock on the table)
        have = {c["name"] for c in sa.inspect(conn).get_columns(name, schema=parts)}
        for column in (c for c in inspector.get_columns(table, schema=naming.analyst_schema(conn, schema))
                       if c["name"] not in have):
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "add_column", quoted={
                "table": current, "column": _quoted(conn, column["name"]),
                "type": column["type"].compile(dialect=conn.dialect)}))
        return current
    locks.patient(conn)  # filled from the whole history
    quoted = {"current": current, "newest": newest(conn, schema), **column_lists(conn, columns)}
    for stmt in [*sqlfiles.render_sql(conn, "021_latest_table.sql", schema, quoted=quoted, **ids),
                 *sqlfiles.render_sql(conn, "022_latest_fill.sql", schema, literals={"table": table}, quoted=quoted,
                                      **ids)]:
        conn.exec_driver_sql(stmt)
    log.info("made the latest-row table %s of %s from its history", current, table)
    return current


def _quoted(conn: Connection | Engine, column: str) -> str:
    """A column of a predictions table, quoted: the pipeline's own (``arm``, ``route``...) among them, so no name is
    reserved here (an entity key's name was checked against them when the job loaded)."""
    return conn.dialect.identifier_preparer.quote_identifier(check_column_name(column, "column", reserved=frozenset()))


def column_lists(conn: Connection | Engine, columns: list[str]) -> dict[str, str]:
    """``{columns}``, ``{p_columns}``, ``{o_columns}``, ``{n_columns}`` and ``{updates}`` of sql/022 and sql/023."""
    quoted = [_quoted(conn, c) for c in columns]
    return {"columns": ", ".join(quoted), **{f"{a}_columns": ", ".join(f"{a}.{c}" for c in quoted) for a in "pon"},
            "updates": ", ".join(f"{c} = excluded.{c}" for c in quoted)}


def latest_statements(engine: Engine | Connection, table: str, key: str, columns: list[str], day: dt.date,
                      schema: str | None, new: str) -> list[str]:
    """The statements of a publish of ``day`` that keep the latest-row table in step (``sql/023``), for the
    transaction of the publish; ``new``: the qualified table holding the day's new rows."""
    current = naming.table_name(engine, naming.latest_table(table), naming.storage_schema(engine, schema))
    quoted = {"current": current, "new": new, "day": naming.date_literal(engine, day), "newest": newest(engine, schema),
              **column_lists(engine, columns)}
    return sqlfiles.render_sql(engine, "023_latest_publish.sql", schema, literals={"table": table}, quoted=quoted,
                               predictions=table, key=key, cur=naming.latest_table(table))


def count_partition(engine: Engine, table: str, partition_date: dt.date, schema: str | None = None) -> int:
    """Rows of one partition in a predictions table."""
    query = sqlfiles.statement(engine, "store/analyst.sql", "count_partition", schema, predictions=table)
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query), {"d": partition_date}).scalar_one())


def daily_summary(engine: Engine, table: str, partition_date: dt.date,
                  schema: str | None = None) -> list[dict[str, Any]]:
    """The ``<table>_daily`` view's rows of one partition (one per model version): rows, mean score, scored at."""
    query = sqlfiles.statement(engine, "store/analyst.sql", "daily_summary", schema, daily=f"{table}_daily")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(query), {"d": partition_date})
        return [{k: v if isinstance(v, int | float | None) else str(v) for k, v in r.items()} for r in rows.mappings()]
