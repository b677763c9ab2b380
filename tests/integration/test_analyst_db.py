"""The analysts' home on PostgreSQL: their own schema, a comment on every object, a read-only role."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from pipeline import local
from pipeline.config import load_job
from tests.conftest import DAY, ROOT, write_job, write_partition

pytestmark = pytest.mark.postgres
COMMENTS = """
SELECT n.nspname, c.relname, c.relkind, obj_description(c.oid, 'pg_class') AS about,
       array_agg(a.attname ORDER BY a.attnum) FILTER (WHERE col_description(c.oid, a.attnum) IS NULL) AS bare
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'v')
GROUP BY n.nspname, c.relname, c.relkind, c.oid
"""


def test_predictions_live_in_the_analysts_schema_with_comments_and_a_read_only_role(
        home: Path, pg_url: str, pg_server: str) -> None:
    ops = pg_url.rsplit("%3D", 1)[1]
    analytics, role, login = (f"{p}_{uuid.uuid4().hex[:10]}" for p in ("analytics", "reader", "alice"))
    write_partition(home, n=800)
    job = load_job(write_job(home, output={"table": "churn_test_predictions", "connection": "scoring_db",
                                           "schema": analytics}))
    try:
        summary = local.run_partition(job, DAY, run_id="a1")
        assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 700
        with psycopg.connect(pg_server, autocommit=True) as admin:
            objects = {(r[0], r[1]): r for r in admin.execute(COMMENTS, ([analytics, ops],)).fetchall()}
            assert {name for schema, name in objects if schema == analytics} == {
                "churn_test_predictions", "churn_test_predictions_latest", "churn_test_predictions_daily"}
            assert {name for schema, name in objects if schema == ops} == {
                "scoring_runs", "scoring_quarantine", "scoring_deliveries", "scoring_drift",
                "scoring_schema_migrations"}, "operational tables apart from the predictions"
            for (schema, name), (_, _, _, about, bare) in objects.items():
                assert about, f"{schema}.{name} has no COMMENT"
                assert not bare, f"{schema}.{name}: columns without a COMMENT: {bare}"

            out = subprocess.run([sys.executable, "-m", "pipeline.cli", "db", "grant-reader", "--schema", analytics,
                                  "--role", role], env=dict(os.environ), cwd=ROOT, capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stderr
            assert f"options=-csearch_path%3D{analytics}" in out.stdout
            own = subprocess.run([sys.executable, "-m", "pipeline.cli", "db", "grant-reader", "--schema", ops,
                                  "--role", role], env=dict(os.environ), cwd=ROOT, capture_output=True, text=True,
                                 timeout=120)
            assert own.returncode == 2 and "where the ledger and the quarantine live" in own.stderr
            # as when the pipeline's user is not the one that ran grant-reader: no default privilege re-grants
            admin.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA "{analytics}" REVOKE SELECT ON TABLES FROM "{role}"')
            admin.execute(f'CREATE ROLE "{login}" LOGIN')
            admin.execute(f'GRANT "{role}" TO "{login}"')
        base = pg_server.rsplit("/", 1)[0].replace("postgres@", f"{login}@")
        with psycopg.connect(f"{base}/test?options=-csearch_path%3D{analytics}", autocommit=True) as analyst:
            count = analyst.execute("SELECT COUNT(*) FROM churn_test_predictions").fetchone()[0]
            assert count == summary["rows_written"]
            assert analyst.execute("SELECT COUNT(*) FROM churn_test_predictions_latest WHERE NOT is_stale"
                                   ).fetchone()[0] == count
        local.run_partition(job, DAY, run_id="a2")  # a re-run makes the views anew: the reader keeps them
        with psycopg.connect(f"{base}/test?options=-csearch_path%3D{analytics}", autocommit=True) as analyst:
            assert analyst.execute("SELECT COUNT(*) FROM churn_test_predictions_daily").fetchone()[0] == 1
            for statement in ("INSERT INTO churn_test_predictions SELECT * FROM churn_test_predictions LIMIT 1",
                              "UPDATE churn_test_predictions SET score = 0",
                              "DELETE FROM churn_test_predictions",
                              f'SELECT * FROM "{ops}".scoring_runs',
                              f'SELECT * FROM "{ops}".scoring_quarantine'):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    analyst.execute(statement)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{analytics}" CASCADE')
            for name in (login, role):
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    admin.execute(f'DROP OWNED BY "{name}"')
                    admin.execute(f'DROP ROLE "{name}"')


def test_the_data_dictionary_in_the_docs_is_current() -> None:
    from pipeline import dictionary

    assert (ROOT / "docs" / "data-dictionary.md").read_text() == dictionary.markdown(), \
        "run `make schema` (it regenerates docs/data-dictionary.md)"


def test_a_second_start_rewrites_no_comment(pg_url: str) -> None:
    import sqlalchemy as sa

    from pipeline import store

    engine = store.engine_for(store.resolve_url("scoring_db"))
    store.ensure_ledger(engine)
    written: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *_: written.append(statement) if "COMMENT ON" in statement else None)
    store.ensure_ledger(engine)  # what every run's start does
    assert written == []
