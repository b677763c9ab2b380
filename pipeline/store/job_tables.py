"""A job's own tables: the predictions table and the challengers' shadow table, made or brought up to date."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline import dictionary
from pipeline.errors import ConfigError
from pipeline.store import analyst, comments, grants, layout, locks, naming, operational, sqlfiles

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Output:
    """A job's predictions table: its name, entity key and key type, analysts' schema, the job publishing into it."""

    table: str
    key: str
    key_type: str
    schema: str | None
    job_id: str | None

    @property
    def ids(self) -> dict[str, str]:
        """The identifiers of sql/010, sql/015 and sql/020."""
        return {"predictions": self.table, "key": self.key, "latest": f"{self.table}_latest",
                "daily": f"{self.table}_daily"}

    @property
    def own_views(self) -> tuple[str, str]:
        """The table's own views (``_latest``, ``_daily``), made anew at every start."""
        return f"{self.table}_latest", f"{self.table}_daily"


ADDED_COLUMNS = (("flags", "TEXT"), ("route", "TEXT"), ("router_model", "TEXT"), ("router_version", "INTEGER"),
                 ("arm", "TEXT"))


def ensure_predictions(engine: Engine, table: str, key: str, key_type: str, schema: str | None = None,
                       job_id: str | None = None) -> None:
    """Create a job's predictions table, its index, its latest-row table and its analyst views if they
    are missing (in the analysts' ``schema`` on PostgreSQL, the days and the latest rows in its
    ``storage_schema``), with their comments; ``job_id``: the job publishing into it, whose ledger,
    drift and quarantine counts the reader views of the schema show (sql/050, sql/051)."""
    out = Output(table, key, key_type, schema, job_id)
    locks.short_locks(engine, f"preparing table {table}", lambda conn: _ensure(conn, out))


def _ensure(conn: Connection, out: Output) -> None:
    """The steps of ``ensure_predictions``, in the caller's transaction."""
    home, parts = naming.analyst_schema(conn, out.schema), naming.storage_schema(conn, out.schema)
    if out.schema and not home:
        log.info("%s has one schema: predictions table %s stays there (output.schema %r is for PostgreSQL)",
                 conn.dialect.name, out.table, out.schema)
    for name in (home, parts):
        if name:
            _create_schema(conn, name)
    _make_table(conn, out, home)
    readers = grants.view_readers(conn, home, [out.table, *out.own_views, *analyst.READER_VIEWS])
    _migrate_layout(conn, out, home, parts)
    current = analyst.ensure_latest_table(conn, out.table, out.key, out.schema)
    for stmt in sqlfiles.render_sql(conn, "020_views.sql", out.schema, literals={"table": out.table},
                                    quoted={"current": current, "newest": analyst.newest(conn, out.schema)},
                                    **out.ids):
        conn.exec_driver_sql(stmt)
    if out.job_id is not None:
        analyst.reader_views(conn, out.job_id, out.table, out.key, out.key_type, out.schema)
    grants.give_back(conn, readers, out.schema)  # views made anew, a table migrated: who could read them still can
    _comment(conn, out, parts)


def _create_schema(conn: Connection, name: str) -> None:
    conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "create_schema",
                                            quoted={"schema": naming.quote(conn, name)}))


def _make_table(conn: Connection, out: Output, home: str | None) -> None:
    """The predictions table made if missing (sql/010); one made before a column existed gets it."""
    for stmt in sqlfiles.render_sql(conn, "010_predictions.sql", out.schema, key_type=out.key_type, **out.ids):
        conn.exec_driver_sql(stmt)
    found = sa.inspect(conn).get_columns(out.table, schema=home)
    _check_key_type(out.table, out.key, out.key_type, found)
    have = {c["name"] for c in found}
    for column, typ in ADDED_COLUMNS:
        if column not in have:
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/common.sql", "add_column", out.schema, quoted={
                "column": column, "type": typ}, table=out.table))


def _migrate_layout(conn: Connection, out: Output, home: str | None, parts: str | None) -> None:
    """A table of an earlier release brought to today's layout: timestamptz, partitioned by day, its days in the
    storage schema, an index by key when its primary key does not lead with the key."""
    # the views depend on scored_at: dropped if it must change type, made anew by the caller in any case
    operational.upgrade_types(conn, out.table, ("scored_at",), schema=home, views=out.own_views)
    if layout.is_plain_table(conn, out.table, home):
        locks.patient(conn)
        layout.partition_by_day(conn, out.table, out.key, home, views=out.own_views)
    if parts:  # this table's days, and those of any other predictions table left beside it (a retired job's)
        for name in {out.table, *layout.tables_with_days_beside(conn, home)}:
            layout.move_partitions(conn, name, home, parts)
    pk = sa.inspect(conn).get_pk_constraint(out.table, schema=home)["constrained_columns"]
    if pk[:1] != [out.key]:  # the primary key does not serve an entity's history: an index by key
        for stmt in sqlfiles.render_sql(conn, "015_predictions_index.sql", out.schema, by_key=f"{out.table}_by_key",
                                        **out.ids):
            conn.exec_driver_sql(stmt)


def _comment(conn: Connection, out: Output, parts: str | None) -> None:
    """The comments of the table, its views and its storage (sql/dictionary.yaml)."""
    comments.comment(conn, dictionary.objects("analyst", out.table, out.key), out.schema)
    if out.job_id is not None:
        comments.comment(conn, dictionary.objects("reader"), out.schema)
    comments.comment(conn, dictionary.objects("storage", naming.partition_prefix(out.table), out.key), parts)
    if out.job_id is not None:
        comments.comment(conn, dictionary.objects("jobs"), parts)


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
            _create_schema(conn, home)
        readers = grants.view_readers(conn, home, [f"{table}_compare"])
        if sa.inspect(conn).has_table(f"{table}_shadow", schema=home):
            _check_key_type(f"{table}_shadow", key, key_type,
                            sa.inspect(conn).get_columns(f"{table}_shadow", schema=home))
        # {comparisons} unqualified: the view binds to the operational table the session's search path finds
        for stmt in sqlfiles.render_sql(conn, "040_shadow.sql", schema, literals={"job": job_id}, key=key,
                                        key_type=key_type, shadow=f"{table}_shadow", compare=f"{table}_compare",
                                        comparisons="scoring_shadow_comparisons"):
            conn.exec_driver_sql(stmt)
        grants.give_back(conn, readers, schema)
        comments.comment(conn, dictionary.objects("shadow", table, key), schema)

    locks.short_locks(engine, f"preparing table {table}_shadow", ensure)
