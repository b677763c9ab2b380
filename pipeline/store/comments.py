"""``COMMENT ON`` the tables, views and columns (texts: sql/dictionary.yaml), on PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipeline import dictionary
from pipeline.config import check_column_name
from pipeline.store import naming, sqlfiles


def comment(conn: Connection, objects: list[dictionary.DbObject], schema: str | None = None) -> None:
    """PostgreSQL: ``COMMENT ON`` every table or view and each of its columns (texts: sql/dictionary.yaml).

    The comments in place are read in one query and only those that differ are written, so a run's
    start does not rewrite some 80 comments every time.
    """
    if conn.dialect.name != "postgresql":
        return
    have = _comments(conn, naming.analyst_schema(conn, schema), [obj.name for obj in objects])
    for obj in objects:
        name = naming.table_name(conn, obj.name, schema)
        if have.get((obj.name, None)) != obj.description:
            kind = "comment_view" if obj.kind == "view" else "comment_table"
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/comments.sql", kind, literals={
                "text": obj.description}, quoted={"object": name}))
        for column, text in obj.columns.items():
            if have.get((obj.name, column)) == text:
                continue
            quoted = conn.dialect.identifier_preparer.quote_identifier(
                check_column_name(column, "column", reserved=frozenset()))
            conn.exec_driver_sql(sqlfiles.statement(conn, "store/comments.sql", "comment_column", literals={
                "text": text}, quoted={"object": name, "column": quoted}))


def _comments(conn: Connection, schema: str | None, names: list[str]) -> dict[tuple[str, str | None], str]:
    """The comments of the named tables and views (key ``(name, None)``) and of their columns."""
    query = sa.text(sqlfiles.plain("store/comments.sql", "comments_in_place"))
    rows = conn.execute(query, {"s": schema, "names": names}).all()
    return {(r[0], r[1]): r[2] for r in rows if r[2] is not None}
