"""A job's own tables: the predictions table and the challengers' shadow table, made or brought up to date."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary
from pipeline.errors import ConfigError
from pipeline.store import analyst, comments, grants, layout, locks, naming, operational, sqlfiles

log = logging.getLogger(__name__)


def ensure_predictions(engine: Engine, table: str, key: str, key_type: str, schema: str | None = None,
                       job_id: str | None = None) -> None:
    """Create a job's predictions table, its index, its latest-row table and its analyst views if they
    are missing (in the analysts' ``schema`` on PostgreSQL, the days and the latest rows in its
    ``storage_schema``), with their comments; ``job_id``: the job publishing into it, whose ledger,
    drift and quarantine counts the reader views of the schema show (sql/050, sql/051)."""
    ids = {"predictions": table, "key": key, "latest": f"{table}_latest", "daily": f"{table}_daily"}

    def ensure(conn: Connection) -> None:
        home = naming.analyst_schema(conn, schema)
        parts = naming.storage_schema(conn, schema)
        if schema and not home:
            log.info("%s has one schema: predictions table %s stays there (output.schema %r is for PostgreSQL)",
                     conn.dialect.name, table, schema)
        for name in (home, parts):
            if name:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {naming.quote(conn, name)}")
        for stmt in sqlfiles.render_sql(conn, "010_predictions.sql", schema, key_type=key_type, **ids):
            conn.exec_driver_sql(stmt)
        # tables created before a column existed get it (the column list is the DDL's)
        found = sa.inspect(conn).get_columns(table, schema=home)
        _check_key_type(table, key, key_type, found)
        have = {c["name"] for c in found}
        for column, typ in (("flags", "TEXT"), ("route", "TEXT"), ("router_model", "TEXT"),
                            ("router_version", "INTEGER")):
            if column not in have:
                conn.exec_driver_sql(f"ALTER TABLE {naming.table_name(conn, table, schema)} ADD COLUMN {column} {typ}")
        views = [ids["latest"], ids["daily"], *analyst.READER_VIEWS]
        readers = grants.view_readers(conn, home, [table, *views])
        # the views depend on scored_at: dropped if it must change type, made anew below in any case
        operational.upgrade_types(conn, table, ("scored_at",), schema=home, views=(ids["latest"], ids["daily"]))
        if layout.is_plain_table(conn, table, home):
            locks.patient(conn)
            layout.partition_by_day(conn, table, key, home, views=(ids["latest"], ids["daily"]))
        if parts:  # this table's days, and those of any other predictions table left beside it (a retired job's)
            for name in {table, *layout.tables_with_days_beside(conn, home)}:
                layout.move_partitions(conn, name, home, parts)
        pk = sa.inspect(conn).get_pk_constraint(table, schema=home)["constrained_columns"]
        if pk[:1] != [key]:  # the primary key does not serve an entity's history: an index by key
            for stmt in sqlfiles.render_sql(conn, "015_predictions_index.sql", schema, by_key=f"{table}_by_key", **ids):
                conn.exec_driver_sql(stmt)
        current = analyst.ensure_latest_table(conn, table, key, schema)
        for stmt in sqlfiles.render_sql(conn, "020_views.sql", schema, literals={"table": table},
                               quoted={"current": current, "newest": analyst.newest(conn, schema)}, **ids):
            conn.exec_driver_sql(stmt)
        if job_id is not None:
            analyst.reader_views(conn, job_id, table, key, key_type, schema)
        for view, grantee in readers:  # views made anew, a table migrated: who could read them still can
            conn.exec_driver_sql(f"GRANT SELECT ON {naming.table_name(conn, view, schema)} TO {naming.quote_role(conn, grantee)}")
        comments.comment(conn, dictionary.objects("analyst", table, key), schema)
        if job_id is not None:
            comments.comment(conn, dictionary.objects("reader"), schema)
        comments.comment(conn, dictionary.objects("storage", naming.partition_prefix(table), key), parts)
        if job_id is not None:
            comments.comment(conn, dictionary.objects("jobs"), parts)

    locks.short_locks(engine, f"preparing table {table}", ensure)


def _check_key_type(table: str, key: str, key_type: str, columns: list[dict[str, Any]]) -> None:
    """Refuse a run whose keys are of another kind than the existing table's key column (BIGINT vs TEXT):
    PostgreSQL would fail the COPY with an unhelpful error, SQLite would turn 00123 into 123."""
    found = next((c["type"] for c in columns if c["name"] == key), None)
    if found is None:
        return
    is_int = isinstance(found, sa.Integer)
    if is_int == (key_type == "int"):
        return
    if is_int:
        raise ConfigError(
            f"table {table}: its key column {key!r} is BIGINT (an earlier run read the keys as integers) but this run "
            "reads them as text (neither the job file nor the model card sets entity_key_type: integer, and CSV keys "
            "are text by default so that 00123 stays 00123). Set entity_key_type: integer in the job file to keep "
            "this table, or rename the table so that the next run makes a new one with text keys.")
    raise ConfigError(
        f"table {table}: its key column {key!r} is TEXT but this run reads the keys as integers (entity_key_type: "
        "integer in the job file or the model card, or an integer column of a Parquet or SQL source). Set "
        "entity_key_type: string in the job file to keep this table, or rename the table so that the next run "
        "makes a new one with BIGINT keys.")


SHADOW_COLUMNS = ["partition_date", "model_name", "model_version", "prediction", "score", "run_id", "scored_at"]


def ensure_shadow(engine: Engine, table: str, key: str, key_type: str, job_id: str, schema: str | None = None) -> None:
    """With model.challengers: ``<table>_shadow`` and the view ``<table>_compare`` (``sql/040_shadow.sql``)."""

    def ensure(conn: Connection) -> None:
        home = naming.analyst_schema(conn, schema)
        if home:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {naming.quote(conn, home)}")
        readers = grants.view_readers(conn, home, [f"{table}_compare"])
        if sa.inspect(conn).has_table(f"{table}_shadow", schema=home):
            _check_key_type(f"{table}_shadow", key, key_type,
                            sa.inspect(conn).get_columns(f"{table}_shadow", schema=home))
        # {comparisons} unqualified: the view binds to the operational table the session's search path finds
        for stmt in sqlfiles.render_sql(conn, "040_shadow.sql", schema, literals={"job": job_id}, key=key, key_type=key_type,
                               shadow=f"{table}_shadow", compare=f"{table}_compare",
                               comparisons="scoring_shadow_comparisons"):
            conn.exec_driver_sql(stmt)
        for view, grantee in readers:
            conn.exec_driver_sql(f"GRANT SELECT ON {naming.table_name(conn, view, schema)} TO {naming.quote_role(conn, grantee)}")
        comments.comment(conn, dictionary.objects("shadow", table, key), schema)

    locks.short_locks(engine, f"preparing table {table}_shadow", ensure)
