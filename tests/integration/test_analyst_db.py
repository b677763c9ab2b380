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
    from pipeline.store import engines, naming

    ops = pg_url.rsplit("%3D", 1)[1]
    analytics, role, login = (f"{p}_{uuid.uuid4().hex[:10]}" for p in ("analytics", "reader", "alice"))
    parts = f"{analytics}_partitions"
    write_partition(home, n=800)
    job = load_job(write_job(home, output={"table": "churn_test_predictions", "connection": "scoring_db",
                                           "schema": analytics}))
    try:
        summary = local.run_partition(job, DAY, run_id="a1")
        assert summary["status"] == "success" and summary["rows_written"] == summary["rows_scored"] > 700
        with psycopg.connect(pg_server, autocommit=True) as admin:
            objects = {(r[0], r[1]): r for r in admin.execute(COMMENTS, ([analytics, ops, parts],)).fetchall()}
            assert {name for schema, name in objects if schema == analytics} == {
                "churn_test_predictions", "churn_test_predictions_latest", "churn_test_predictions_daily",
                "scoring_attempts", "scoring_drift_daily", "scoring_quarantine_daily",
                "scoring_promotion_audit"}
            assert {name for schema, name in objects if schema == parts} == {
                "churn_test_predictions_current", "scoring_latest_partitions", "scoring_jobs"}, \
                "the storage schema: latest rows, newest days and jobs"
            assert admin.execute("SELECT count(*) FROM pg_class WHERE relispartition AND relkind = 'r' AND relnamespace = "
                                 "CAST(%s AS regnamespace)", (f'"{parts}"',)).fetchone()[0] == 1, "the day, apart"
            assert {name for schema, name in objects if schema == ops} == {
                "scoring_runs", "scoring_quarantine", "scoring_deliveries", "scoring_drift",
                "scoring_schema_migrations", "scoring_model_registrations", "scoring_shadow_comparisons",
                "scoring_performance", "scoring_alembic_version", "scoring_ab_periods", "scoring_ab_results",
                "scoring_model_audit"}, \
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
            _reader_views_say_what_the_ledger_says(analyst, summary)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the days are read through the table only
                analyst.execute(f'SELECT count(*) FROM "{parts}".churn_test_predictions_{DAY:%Y%m%d}')
            for statement in ("INSERT INTO churn_test_predictions SELECT * FROM churn_test_predictions LIMIT 1",
                              "UPDATE churn_test_predictions SET score = 0",
                              "DELETE FROM churn_test_predictions",
                              f'SELECT * FROM "{ops}".scoring_runs',
                              f'SELECT * FROM "{ops}".scoring_quarantine'):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    analyst.execute(statement)
        listing = _psql(f"{base}/test?options=-csearch_path%3D{analytics}", r"\dt")
        assert "churn_test_predictions " in listing and f"_{DAY:%Y%m%d}" not in listing, listing
        assert naming.storage_schema(engines.for_connection("scoring_db"), analytics) == parts
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{analytics}" CASCADE')
            admin.execute(f'DROP SCHEMA IF EXISTS "{parts}" CASCADE')
            for name in (login, role):
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    admin.execute(f'DROP OWNED BY "{name}"')
                    admin.execute(f'DROP ROLE "{name}"')


def _psql(url: str, command: str) -> str:
    """What psql prints for a meta-command, as the analyst's login sees it (the listing they read)."""
    out = subprocess.run(["psql", url, "-X", "-c", command], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _reader_views_say_what_the_ledger_says(analyst: psycopg.Connection, summary: dict) -> None:
    """The reader views of the run's day: its attempts, its quarantine reasons, its drift; no raw value."""
    attempts = analyst.execute("SELECT status, live, rows_quarantined, rows_written FROM scoring_attempts "
                               "WHERE job_id = 'churn_test' AND partition_date = %s ORDER BY started_at", (DAY,)).fetchall()
    assert attempts and attempts[-1] == ("success", True, summary["rows_quarantined"], summary["rows_written"])
    columns = [c.name for c in analyst.execute("SELECT * FROM scoring_quarantine_daily LIMIT 0").description]
    assert columns == ["job_id", "partition_date", "reason", "row_count"], "counts and reason codes, no values"
    reasons = dict(analyst.execute("SELECT reason, row_count FROM scoring_quarantine_daily WHERE job_id = 'churn_test' "
                                   "AND partition_date = %s", (DAY,)).fetchall())
    assert summary["rows_quarantined"] > 0 and reasons, "the demo data has rows to quarantine"
    assert all(":" in r and ";" not in r for r in reasons), reasons  # one code a row
    assert summary["rows_quarantined"] <= sum(reasons.values())
    drift = analyst.execute("SELECT feature, value, row_count, p_value FROM scoring_drift_daily "
                            "WHERE job_id = 'churn_test' AND partition_date = %s", (DAY,)).fetchall()
    assert {"__score__"} <= {r[0] for r in drift} and all(r[2] > 0 for r in drift)


def test_the_data_dictionary_in_the_docs_is_current() -> None:
    from pipeline import dictionary

    assert (ROOT / "docs" / "data-dictionary.md").read_text() == dictionary.markdown(), \
        "run `make schema` (it regenerates docs/data-dictionary.md)"


def test_a_second_start_rewrites_no_comment(pg_url: str) -> None:
    import sqlalchemy as sa

    from pipeline.store import engines, operational

    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    written: list[str] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *_: written.append(statement) if "COMMENT ON" in statement else None)
    operational.ensure_ledger(engine)  # what every run's start does
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

    from pipeline.store import engines, operational

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
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:
        assert operational.upgrade_types(conn, "scoring_runs", ("started_at",), ("stage_seconds",)) == [], "idempotent"
        assert conn.execute(sa.text("SELECT count(*) FROM scoring_quarantine")).scalar() >= 1


PREVIOUS_LAYOUT = """
ALTER TABLE "{parts}".{table}_{day} SET SCHEMA "{home}";
DROP VIEW "{home}".scoring_attempts, "{home}".scoring_drift_daily, "{home}".scoring_quarantine_daily;
DROP SCHEMA "{parts}" CASCADE;
CREATE VIEW "{home}".{table}_latest AS SELECT p.*, t.latest_partition, (p.partition_date < t.latest_partition) AS is_stale
FROM "{home}".{table} p JOIN (SELECT customer_id AS k, MAX(partition_date) AS d FROM "{home}".{table} GROUP BY 1) m
  ON p.customer_id = m.k AND p.partition_date = m.d
CROSS JOIN (SELECT MAX(partition_date) AS latest_partition FROM "{home}".{table}) t;
GRANT SELECT ON "{home}".{table}_latest TO "{role}";
CREATE TABLE "{home}".retired_predictions (LIKE "{home}".{table}) PARTITION BY LIST (partition_date);
CREATE TABLE "{home}".retired_predictions_20261101 PARTITION OF "{home}".retired_predictions
    FOR VALUES IN ('2026-11-01');
INSERT INTO "{home}".retired_predictions SELECT DATE '2026-11-01', customer_id, prediction, score, model_name,
    model_version, run_id, scored_at, flags, route, router_model, router_version FROM "{home}".{table} LIMIT 3;
GRANT SELECT ON "{home}".retired_predictions TO "{role}";
ALTER TABLE "{ops}".scoring_quarantine DROP COLUMN entity_key_int;
DELETE FROM "{ops}".scoring_schema_migrations WHERE name = '008_quarantine_typed_key.sql';
DROP TABLE "{ops}".scoring_alembic_version;
INSERT INTO "{ops}".scoring_quarantine (job_id, partition_date, run_id, entity_key, reasons, row_values, quarantined_at)
VALUES ('old_job', '2026-11-01', 'old', '42', 'not_null:age', '{{}}', now()),
       ('old_job', '2026-11-01', 'old', '007', 'not_null:age', '{{}}', now()),
       ('old_job', '2026-11-01', 'old', 'abc', 'not_null:age', '{{}}', now());
"""
CHECKSUM = "SELECT md5(string_agg(customer_id::text || partition_date::text || score::text, ',' ORDER BY 1)) FROM {t}"


def test_a_database_of_the_previous_layout_moves_its_days_out_of_the_analysts_schema_keeping_every_row(
        home: Path, pg_url: str, pg_server: str) -> None:
    """The layout before issue 24: day partitions beside the table in the analysts' schema, ``_latest`` a view
    over the whole history, the quarantine's key text only. (Made by a run, then put back as it was.) The next
    run moves the days to ``<schema>_partitions`` (catalogue only: every row kept), makes the latest-row table
    from the history, the reader views, and the quarantine's typed key; the reader reads all as before."""
    ops = pg_url.rsplit("%3D", 1)[1]
    analytics, role = (f"{p}_{uuid.uuid4().hex[:10]}" for p in ("analytics", "reader"))
    parts, table = f"{analytics}_partitions", "churn_test_predictions"
    before = DAY - dt.timedelta(days=1)
    write_partition(home, before, n=600)
    write_partition(home, DAY, n=500)
    job = load_job(write_job(home, output={"table": table, "connection": "scoring_db", "schema": analytics}))
    try:
        assert local.run_partition(job, before, run_id="old")["status"] == "success"
        assert subprocess.run([sys.executable, "-m", "pipeline.cli", "db", "grant-reader", "--schema", analytics,
                               "--role", role], env=dict(os.environ), cwd=ROOT, capture_output=True,
                              timeout=120).returncode == 0
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(PREVIOUS_LAYOUT.format(parts=parts, home=analytics, table=table, day=f"{before:%Y%m%d}",
                                                 role=role, ops=ops))
            old_rows = admin.execute(CHECKSUM.format(t=f'"{analytics}".{table}')).fetchone()[0]
            assert admin.execute("SELECT count(*) FROM pg_class WHERE relnamespace = CAST(%s AS regnamespace) "
                                 "AND relispartition AND relkind = 'r'", (f'"{analytics}"',)).fetchone()[0] == 2
        assert local.run_partition(job, DAY, run_id="new")["status"] == "success"
        with psycopg.connect(pg_server, autocommit=True) as admin:
            where = dict(admin.execute(
                "SELECT c.relname, n.nspname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN "
                "pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = CAST(%s AS regclass)",
                (f'"{analytics}".{table}',)).fetchall())
            assert where == {f"{table}_{before:%Y%m%d}": parts, f"{table}_{DAY:%Y%m%d}": parts}
            assert admin.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE c.relname = 'retired_predictions_20261101' AND n.nspname IN (%s, %s)",
                                 (analytics, parts)).fetchall() == [(parts,)], "a retired job's days beside it move too"
            assert admin.execute(CHECKSUM.format(t=f'"{analytics}".{table}') + " WHERE partition_date = %s",
                                 (before,)).fetchone()[0] == old_rows, "the old day's rows, every one"
            assert admin.execute(f'SELECT name FROM "{ops}".scoring_schema_migrations WHERE name LIKE '
                                 "'day_partitions%' OR name LIKE '008%' ORDER BY 1").fetchall() == [
                ("008_quarantine_typed_key.sql",), (f"day_partitions_schema:{analytics}.{table}",),
                (f"day_partitions_schema:{analytics}.retired_predictions",)]
            typed = dict(admin.execute(f'SELECT entity_key, entity_key_int FROM "{ops}".scoring_quarantine '
                                       "WHERE job_id = 'old_job'").fetchall())
            assert typed == {"42": 42, "007": None, "abc": None}
            new_keys = admin.execute(
                "SELECT count(*), count(*) FILTER (WHERE CASE WHEN entity_key ~ '^[0-9]{1,18}$' THEN entity_key_int IS "
                f'DISTINCT FROM CAST(entity_key AS BIGINT) END) FROM "{ops}".scoring_quarantine WHERE run_id = %s',
                ("new",)).fetchone()
            assert new_keys[0] > 0 and new_keys[1] == 0, "new rows of an integer-keyed job: the key typed as it parsed"
            (joined,) = admin.execute(  # no cast: bigint = bigint
                f'SELECT count(*) FROM "{ops}".scoring_quarantine q JOIN "{analytics}".{table} p '
                "ON p.customer_id = q.entity_key_int").fetchone()
            assert joined >= 0
            admin.execute(f'CREATE ROLE "{role}_login" LOGIN IN ROLE "{role}"')
        base = pg_server.rsplit("/", 1)[0].replace("postgres@", f"{role}_login@")
        with psycopg.connect(f"{base}/test?options=-csearch_path%3D{analytics}", autocommit=True) as analyst:
            latest = analyst.execute(f"SELECT count(*), count(*) FILTER (WHERE is_stale) FROM {table}_latest").fetchone()
            history = analyst.execute(f"SELECT count(DISTINCT customer_id) FROM {table}").fetchone()[0]
            assert latest[0] == history and latest[1] > 0, "the latest rows made from the history the day before"
            assert analyst.execute("SELECT count(*) FROM scoring_attempts").fetchone()[0] >= 2
            assert analyst.execute("SELECT count(*) FROM retired_predictions").fetchone()[0] == 3
        listing = _psql(f"{base}/test?options=-csearch_path%3D{analytics}", r"\dt")
        assert f"{before:%Y%m%d}" not in listing and f"{DAY:%Y%m%d}" not in listing, listing
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{analytics}" CASCADE')
            admin.execute(f'DROP SCHEMA IF EXISTS "{parts}" CASCADE')
            for name in (f"{role}_login", role):
                if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                    admin.execute(f'DROP OWNED BY "{name}"')
                    admin.execute(f'DROP ROLE "{name}"')
