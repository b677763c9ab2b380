"""Every ```sql block of README.md and docs/ runs against a database after the demo's nights.

The database (tests/docs/conftest.py ``docs_db``) holds two nights of the shipped ``churn_daily``
(with its challenger's shadow rows) and one of ``promotions_daily`` (push, to the demo receiver),
run by ``pipeline.local.run_partition`` as ``scoring run`` does; ``churn_cascade`` too when a block
mentions a cascade.

- **PostgreSQL** is the analysts' database: a fresh database with the shipped set-up, predictions and
  their views in ``analytics`` (the jobs' ``output.schema``), the ledger, quarantine, deliveries and
  drift in the owner's schema, a role made by ``scoring db grant-reader`` and a login granted it.
  A block runs as that login (``search_path=analytics``, what grant-reader prints), so a query that
  reads an operational table fails there; ``<!-- docs-test: as=owner -->`` runs it as the owner.
- **SQLite** is the demo's database (``make demo`` writes ``.data/scoring.db``) and the README tells
  demo users to paste the same queries into ``sqlite3``: every block also runs there, opened
  read-only, unless it is PostgreSQL's own SQL on purpose (``<!-- docs-test: db=postgresql -->``).

Statements are split with sqlparse after ``--`` comments are dropped, and run through the driver an
analyst's client uses (psycopg, sqlite3) with no parameter substitution, inside a transaction
rolled back at the end, so blocks do not see each other's writes. Each block must return at
least one row from one of its statements: a query against the demo that finds nothing has a
wrong name, job or date in it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.docs.blocks import Block, sql_blocks, statements
from tests.docs.conftest import DocsDatabase

pytestmark = pytest.mark.slow
BLOCKS = sql_blocks()


def _connect(db: DocsDatabase, role: str) -> Any:
    if db.dialect == "sqlite":
        if role == "owner":
            return sqlite3.connect(db.owner)
        return sqlite3.connect(f"file:{db.reader}?mode=ro", uri=True)
    import psycopg

    return psycopg.connect(db.owner if role == "owner" else db.reader)


def _hint(block: Block, error: str) -> str:
    if "permission denied" in error and block.role == "reader":
        return ("\nThe analysts' role reads the analytics schema only: if this query is for operators, put "
                "<!-- docs-test: as=owner --> on the line above the fence.")
    if "does not exist" in error and block.role == "reader":
        return ("\nThe analysts' login has search_path=analytics: operational tables (scoring_*) are not "
                "there; put <!-- docs-test: as=owner --> above the fence if this query is for operators.")
    return ""


class BlockFailed(Exception):
    """A statement of a block failed: the message names the block, the database, the role and the statement."""


def run_block(block: Block, db: DocsDatabase) -> list[str]:
    """Run a block's statements in one transaction, rolled back; one line per statement: its row count."""
    queries = statements(block.code)
    assert queries, f"{block.where}: a sql block with no statement"
    counts: list[str] = []
    conn = _connect(db, block.role)
    try:
        for query in queries:
            try:
                cur = conn.execute(query)
                rows = cur.fetchall() if cur.description is not None else []
            except Exception as exc:  # the driver's own error, whatever the driver
                raise BlockFailed(f"{block.where} ({db.dialect}, as {block.role}): {type(exc).__name__}: {exc}\n"
                                  f"in:\n{query}{_hint(block, str(exc))}") from exc
            counts.append(f"{len(rows)} rows from: {' '.join(query.split())[:120]}")
    finally:
        conn.rollback()
        conn.close()
    return counts


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_the_sql_block_runs(block: Block, docs_db: DocsDatabase) -> None:
    if docs_db.dialect == "sqlite" and block.postgres_only:
        pytest.skip(f"{block.where}: PostgreSQL only (docs-test: db=postgresql)")
    try:
        counts = run_block(block, docs_db)
    except BlockFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    assert any(not c.startswith("0 rows") for c in counts), \
        f"{block.where} ({docs_db.dialect}, as {block.role}): no statement returned a row on the demo's data:\n" + \
        "\n".join(counts)


@pytest.mark.parametrize(("sql", "error"), [
    ("SELECT COUNT(*) FROM scoring_runs", "does not exist"),  # not on the analysts' search_path
    ("SELECT COUNT(*) FROM public.scoring_runs", "permission denied"),
    ("SELECT COUNT(*) FROM public.scoring_quarantine", "permission denied"),
    ("DELETE FROM churn_predictions", "permission denied"),
    ("UPDATE churn_predictions SET score = 0", "permission denied"),
    ("SELECT COUNT(*) FROM analytics_partitions.churn_predictions_current", "permission denied"),  # the storage
    ("SELECT COUNT(*) FROM analytics_partitions.scoring_jobs", "permission denied"),  # schema is not the reader's
])
def test_a_reader_block_runs_with_the_analysts_rights_only(docs_db: DocsDatabase, sql: str, error: str) -> None:
    """What makes ``as=reader`` mean something: the operational tables and every write are refused."""
    if docs_db.dialect == "sqlite":  # no roles, one schema: its reader is the file opened read-only
        if not sql.startswith(("DELETE", "UPDATE")):
            pytest.skip("SQLite has one schema and no roles: a demo user reads the ledger too")
        error = "readonly"
    reader = Block(Path("made-up.md"), 1, "sql", f"SELECT COUNT(*) FROM churn_predictions_latest;\n{sql};\n")
    with pytest.raises(BlockFailed, match=error):
        run_block(reader, docs_db)
    owner = Block(Path("made-up.md"), 1, "sql", "SELECT COUNT(*) FROM scoring_runs;\n", role="owner")
    assert run_block(owner, docs_db)[0].startswith("1 rows")
