"""The store's SQL text: named statements in sql/store/*.sql, none assembled from values in Python."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from pipeline.errors import ConfigError
from pipeline.store import engines, sqlfiles, swap

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^-- name: (\w+)[ \t]*$", re.M)
SQL_WORDS = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|ALTER|CREATE|DROP|COMMENT|GRANT|REVOKE|LOCK|SET|ANALYZE|"
                       r"PRAGMA)\s", re.I)


def _files() -> list[Path]:
    return sorted((ROOT / "sql" / "store").glob("*.sql"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_named_statement_is_there_once_and_not_empty(path: Path) -> None:
    names = NAME.findall(path.read_text())
    assert names, f"{path.name} has no -- name: block"
    assert len(names) == len(set(names)), f"{path.name} names a statement twice"
    for name in names:
        assert sqlfiles.statements(sqlfiles._block(f"store/{path.name}", name)), f"{path.name}: {name} is empty"


def test_a_statement_is_filled_with_quoted_names_and_binds_its_values() -> None:
    engine = engines.engine_for("sqlite://")
    sql = sqlfiles.statement(engine, "store/analyst.sql", "count_partition", predictions="scores")
    assert sql == "SELECT COUNT(*) FROM scores WHERE partition_date = :d"
    with pytest.raises(ConfigError):
        sqlfiles.statement(engine, "store/analyst.sql", "count_partition", predictions="x; DROP TABLE y")
    with pytest.raises(KeyError, match="no statement named 'nope'"):
        sqlfiles.plain("store/analyst.sql", "nope")
    assert len(sqlfiles.named(engine, "store/grants.sql", "grant_schema", quoted={"schema": "s", "role": "r"})) == 3


def test_the_store_writes_no_sql_in_python_strings() -> None:
    """Only docstrings and messages may start with a SQL word in pipeline/store/ (migrate and alembic aside)."""
    found = []
    for path in sorted((ROOT / "pipeline" / "store").glob("*.py")):
        if path.name == "migrate.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(
            n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                    "ConfigError", "SwapWaitError", "StoreError", "warning", "info"):
                docs |= {id(n) for a in node.args for n in ast.walk(a)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs \
                    and SQL_WORDS.match(node.value):
                found.append(f"{path.name}:{node.lineno}: {node.value[:40]}")
    assert found == []


@pytest.mark.parametrize(("value", "sql"), [
    (dt.datetime(2026, 1, 2, 3, 4, 5), "CAST('2026-01-02T03:04:05+00:00' AS TIMESTAMP WITH TIME ZONE)"),
    (dt.date(2026, 1, 2), "CAST('2026-01-02' AS DATE)"),
    (7, "7"),
    ("it's", "'it''s'"),
])
def test_a_constant_column_default_is_a_literal_the_dialect_renders(value: object, sql: str) -> None:
    engine = sa.create_engine("postgresql+psycopg://u@h/db")
    assert swap._default_sql(engine, value) == sql
    with pytest.raises(TypeError):
        swap._default_sql(engine, True)
