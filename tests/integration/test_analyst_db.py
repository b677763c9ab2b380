"""The analysts' home on PostgreSQL: their own schema, a comment on every object, a read-only role."""

from __future__ import annotations

import datetime as dt
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
WHERE n.nspname = ANY(%s) AND c.relkind IN ('p', 'r', 'v') AND NOT c.relispartition
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
                "scoring_schema_migrations", "scoring_model_registrations", "scoring_shadow_comparisons",
                "scoring_performance"}, \
                "operational tables apart from the predictions"
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


OLD_LEDGER = """
CREATE TABLE scoring_runs (job_id TEXT NOT NULL, run_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    partition_date DATE NOT NULL, mode TEXT NOT NULL, dry_run BOOLEAN NOT NULL, model_name TEXT, model_version INTEGER,
    status TEXT NOT NULL, failed_stage TEXT, rows_in BIGINT, rows_valid BIGINT, rows_quarantined BIGINT,
    rows_scored BIGINT, rows_written BIGINT, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
    duration_s DOUBLE PRECISION, stage_seconds TEXT, error TEXT, PRIMARY KEY (job_id, run_id, attempt));
CREATE TABLE scoring_quarantine (job_id TEXT NOT NULL, partition_date DATE NOT NULL, run_id TEXT NOT NULL,
    entity_key TEXT, reasons TEXT NOT NULL, row_values TEXT NOT NULL, quarantined_at TIMESTAMP NOT NULL);
CREATE TABLE churn_test_predictions (partition_date DATE NOT NULL, customer_id BIGINT NOT NULL,
    prediction TEXT NOT NULL, score DOUBLE PRECISION, model_name TEXT NOT NULL, model_version INTEGER NOT NULL,
    run_id TEXT NOT NULL, scored_at TIMESTAMP NOT NULL, flags TEXT, PRIMARY KEY (partition_date, customer_id));
INSERT INTO churn_test_predictions VALUES ('2026-11-01', 1, '1', 0.9, 'churn', 1, 'old_run', '2026-11-02 02:00:02', NULL);
CREATE VIEW churn_test_predictions_daily AS SELECT partition_date, max(scored_at) AS scored_at
    FROM churn_test_predictions GROUP BY partition_date;
INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, mode, dry_run, status, started_at, stage_seconds)
    VALUES ('old_job', 'old_run', 1, '2026-11-01', 'persist', false, 'success', '2026-11-02 02:00:00', '{"ingest": 1.5}');
INSERT INTO scoring_quarantine VALUES ('old_job', '2026-11-01', 'old_run', '7', 'missing:age', '{"age": null}',
    '2026-11-02 02:00:01');
"""


def test_a_database_made_before_is_migrated_to_timestamptz_and_jsonb_keeping_every_instant(
        home: Path, pg_url: str, pg_server: str) -> None:
    """Old ledgers held naive UTC timestamps and JSON as text: the next start converts them in place,
    the instants are the same whatever the analyst's session zone, and every column we create is typed."""
    import sqlalchemy as sa

    from pipeline import store

    schema = pg_url.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'SET search_path TO "{schema}"')
        admin.execute(OLD_LEDGER)
    write_partition(home, n=300)
    job = load_job(write_job(home))
    assert local.run_partition(job, DAY, run_id="new")["status"] == "success"  # starts migrate, then it runs
    with psycopg.connect(pg_server, autocommit=True) as analyst:
        analyst.execute("SET TimeZone TO 'America/New_York'")  # an analyst's own zone must not shift a value
        analyst.execute(f'SET search_path TO "{schema}"')
        types = dict(((t, c), d) for t, c, d in analyst.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s",
            (schema,)).fetchall())
        started, seconds = analyst.execute(
            "SELECT started_at, stage_seconds FROM scoring_runs WHERE run_id = 'old_run'").fetchone()
        (values,) = analyst.execute("SELECT row_values FROM scoring_quarantine WHERE run_id = 'old_run'").fetchone()
        new_started = analyst.execute("SELECT started_at FROM scoring_runs WHERE run_id = 'new'").fetchone()[0]
        (scored_at,) = analyst.execute("SELECT max(scored_at) FROM churn_test_predictions").fetchone()
        (old_scored,) = analyst.execute("SELECT scored_at FROM churn_test_predictions WHERE run_id = 'old_run'"
                                        ).fetchone()
    assert started == dt.datetime(2026, 11, 2, 2, tzinfo=dt.UTC), "the old naive value was UTC and stays that instant"
    assert old_scored == dt.datetime(2026, 11, 2, 2, 0, 2, tzinfo=dt.UTC), "a view on scored_at did not stop it"
    assert seconds == {"ingest": 1.5} and values == {"age": None}
    assert abs(new_started - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)
    assert abs(scored_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)
    timestamps = {k for k, d in types.items() if d.startswith("timestamp")}
    assert timestamps and all(types[k] == "timestamp with time zone" for k in timestamps), types
    assert types[("scoring_runs", "stage_seconds")] == types[("scoring_quarantine", "row_values")] == "jsonb"
    assert ("churn_test_predictions", "scored_at") in timestamps
    engine = store.engine_for(store.resolve_url("scoring_db"))
    with engine.begin() as conn:
        assert store.upgrade_types(conn, "scoring_runs", ("started_at",), ("stage_seconds",)) == [], "idempotent"
        assert conn.execute(sa.text("SELECT count(*) FROM scoring_quarantine")).scalar() >= 1
