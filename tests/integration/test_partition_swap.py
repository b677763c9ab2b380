"""PostgreSQL: the predictions table is partitioned by day and a run swaps its day in (issue 13, point 7).

A run loads its rows into a table of their own, indexes it and swaps it in with DETACH/ATTACH in
one short transaction: readers see the old partition or the new one, a re-run costs a first load,
a failure or a kill leaves the old copy and nothing behind, and old plain tables are migrated.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline.errors import StoreError
from pipeline.store import analyst, engines, job_tables, naming, operational, writes
from tests.conftest import DAY

pytestmark = pytest.mark.postgres
TABLE = "swap_predictions"
NOW = dt.datetime(2026, 11, 21, 3, 0)


def _engine() -> sa.Engine:
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")
    return engine


def _rows(n: int, day: dt.date = DAY, run_id: str = "r", start: int = 0, batch: int = 250_000):
    """``n`` prediction rows of ``day`` in Arrow batches, keys ``start .. start+n``."""
    for lo in range(start, start + n, batch):
        size = min(batch, start + n - lo)
        yield pa.table({
            "customer_id": pa.array(range(lo, lo + size), pa.int64()),
            "partition_date": pa.repeat(pa.scalar(day, pa.date32()), size),
            "prediction": pa.repeat(pa.scalar("1"), size), "score": pa.repeat(pa.scalar(0.5), size),
            "model_name": pa.repeat(pa.scalar("m"), size), "model_version": pa.repeat(pa.scalar(1, pa.int32()), size),
            "run_id": pa.repeat(pa.scalar(run_id), size),
            "scored_at": pa.repeat(pa.scalar(NOW, pa.timestamp("us")), size), "flags": pa.nulls(size, pa.string())})


def _replace(engine: sa.Engine, n: int, day: dt.date = DAY, run_id: str = "r", **kw) -> int:
    return writes.replace_partition(engine, table=TABLE, key="customer_id", job_id="swap", partition_date=day,
                                   batches=_rows(n, day, run_id), **kw)


def _tables(conn: sa.Connection) -> dict[str, tuple[str, bool]]:
    """The predictions table and every table named after it but its latest-row table: name -> (relkind, is a
    partition)."""
    return {r[0]: (r[1], r[2]) for r in conn.execute(sa.text(
        "SELECT c.relname, c.relkind, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND starts_with(c.relname, :t) "
        "AND c.relname <> :current"), {"t": TABLE, "current": naming.latest_table(TABLE)}).all()}


def _partitions(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c "
        "ON c.oid = i.inhrelid WHERE i.inhparent = CAST(:t AS regclass)"), {"t": TABLE}).tuples().all())


def test_a_rerun_swaps_the_day_in_and_leaves_the_other_days_and_nothing_else(pg_url: str) -> None:
    engine = _engine()
    later = DAY + dt.timedelta(days=1)
    assert _replace(engine, 500) == 500
    assert _replace(engine, 300, later) == 300
    assert _replace(engine, 200, run_id="again") == 200  # the re-run of DAY: 200 rows replace 500
    with engine.connect() as conn:
        assert _tables(conn)[TABLE] == ("p", False), "partitioned by day"
        assert _partitions(conn) == {f"{TABLE}_{DAY:%Y%m%d}": f"FOR VALUES IN ('{DAY}')",
                                     f"{TABLE}_{later:%Y%m%d}": f"FOR VALUES IN ('{later}')"}
        assert {n for n, (_, part) in _tables(conn).items() if not part} == {TABLE}, "no load table left"
        counts = dict(conn.execute(sa.text(f"SELECT partition_date, count(*) FROM {TABLE} GROUP BY 1")).tuples().all())
        assert counts == {DAY: 200, later: 300}
        assert conn.execute(sa.text(f"SELECT DISTINCT run_id FROM {TABLE} WHERE partition_date = :d"),
                            {"d": DAY}).scalars().all() == ["again"]
        indexes = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t AND schemaname = current_schema()"),
                               {"t": f"{TABLE}_{DAY:%Y%m%d}"}).scalars().all()
        assert len(indexes) == 1 and "UNIQUE" in indexes[0] and "(customer_id, partition_date)" in indexes[0], (
                "one index: the primary key, leading with the key")
        assert conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}_latest")).scalar_one() == 300, "views read through"
    assert _replace(engine, 0) == 0, "an empty re-run replaces the day with nothing"
    assert analyst.count_partition(engine, TABLE, DAY) == 0


def test_a_failed_load_keeps_the_old_copy_and_drops_its_load_table(pg_url: str) -> None:
    engine = _engine()
    _replace(engine, 400)

    def broken():
        yield from _rows(100)
        raise ValueError("the staged file ended early")

    with pytest.raises(ValueError, match="ended early"):
        writes.replace_partition(engine, table=TABLE, key="customer_id", job_id="swap", partition_date=DAY,
                                batches=broken())
    duplicate = pa.concat_tables([next(_rows(10)), next(_rows(10))])
    with pytest.raises(StoreError, match="previous copy of the partition is unchanged"):
        writes.replace_partition(engine, table=TABLE, key="customer_id", job_id="swap", partition_date=DAY,
                                batches=[duplicate])
    assert analyst.count_partition(engine, TABLE, DAY) == 400
    with engine.connect() as conn:
        assert {n for n, (_, part) in _tables(conn).items() if not part} == {TABLE}


def test_a_load_table_left_by_a_killed_attempt_goes_at_the_next_persist(pg_url: str) -> None:
    """A kill between the load's commits leaves its table (with rows): the next persist into the table
    drops it, whatever day it was for, unless its attempt is still running."""
    engine = _engine()
    with engine.begin() as conn:
        for name, run, status in (("dead", "killed_run", "failed"), ("busy", "live_run", "running")):
            table = f"{TABLE}_20261101_load_{name}"
            conn.execute(sa.text(f"CREATE TABLE {table} (LIKE {TABLE})"))
            conn.execute(sa.text(
                f"COMMENT ON TABLE {table} IS 'scoring load table {{\"table\": \"{TABLE}\", \"job_id\": \"swap\", "
                f"\"day\": \"2026-11-01\", \"run_id\": \"{run}\", \"attempt\": 1}}'"))
            conn.execute(sa.text(
                "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, status, started_at, mode, "
                "dry_run) VALUES ('swap', :r, 1, '2026-11-01', :s, now(), 'persist', false)"), {"r": run, "s": status})
    _replace(engine, 50)
    with engine.connect() as conn:
        left = {n for n, (_, part) in _tables(conn).items() if not part}
    assert left == {TABLE, f"{TABLE}_20261101_load_busy"}, "the running attempt keeps its load table"


def test_a_swap_waits_for_readers_a_while_then_fails_leaving_the_old_copy(
        pg_url: str, pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine()
    _replace(engine, 100)
    monkeypatch.setenv("SCORING_SWAP_LOCK_TIMEOUT_S", "1")
    schema = pg_url.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_server) as reader:  # a transaction that keeps reading the table
        reader.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()
        releaser = threading.Timer(1.5, reader.rollback)  # the reader finishes during the second try
        releaser.start()
        assert _replace(engine, 70, run_id="waited") == 70
        releaser.join()
        reader.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()  # and now a reader that never finishes
        with pytest.raises(StoreError, match="lock timeout.*previous copy of the partition is unchanged"):
            _replace(engine, 30, run_id="gave_up")
        reader.rollback()
    assert analyst.count_partition(engine, TABLE, DAY) == 70
    with engine.connect() as conn:
        assert {n for n, (_, part) in _tables(conn).items() if not part} == {TABLE}
        latest = conn.execute(sa.text(f"SELECT run_id, count(*) FROM {TABLE}_latest GROUP BY 1")).tuples().all()
        assert latest == [("waited", 70)], "the swap that gave up took its latest rows' upkeep back with it"


def test_a_reader_sees_the_old_full_count_or_the_new_one_throughout_a_rerun_of_1m_rows(
        pg_url: str, pg_server: str) -> None:
    engine = _engine()
    old, new = 1_000_000, 999_000
    _replace(engine, old)
    schema = pg_url.rsplit("%3D", 1)[1]
    seen: list[int] = []
    done = threading.Event()

    def count() -> None:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            while not done.is_set():
                seen.append(conn.execute(f"SELECT count(*) FROM {TABLE} WHERE partition_date = %s",
                                         (DAY,)).fetchone()[0])
                time.sleep(0.05)

    reader = threading.Thread(target=count)
    reader.start()
    try:
        started = time.perf_counter()
        assert _replace(engine, new, run_id="rerun") == new
        seconds = time.perf_counter() - started
        time.sleep(0.3)
    finally:
        done.set()
        reader.join()
    assert set(seen) <= {old, new} and seen[0] == old and seen[-1] == new, sorted(set(seen))
    print(f"re-run of {new} rows: {seconds:.1f}s; the reader counted {len(seen)} times: {sorted(set(seen))}")


OLD_TABLE = f"""
CREATE TABLE {TABLE} (partition_date DATE NOT NULL, customer_id BIGINT NOT NULL, prediction TEXT NOT NULL,
    score DOUBLE PRECISION, model_name TEXT NOT NULL, model_version INTEGER NOT NULL, run_id TEXT NOT NULL,
    scored_at TIMESTAMPTZ NOT NULL, flags TEXT, PRIMARY KEY (partition_date, customer_id));
CREATE INDEX {TABLE}_by_key ON {TABLE} (customer_id);
INSERT INTO {TABLE} SELECT DATE '2026-11-01' + (g % 3), g, '1', 0.5, 'm', 1, 'old', now(), NULL
FROM generate_series(1, 3000) g;
CREATE VIEW {TABLE}_latest AS SELECT * FROM {TABLE};
"""


def test_a_plain_table_made_before_is_migrated_to_day_partitions_keeping_every_row_and_grant(
        pg_url: str, pg_server: str) -> None:
    import uuid

    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"reader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'SET search_path TO "{schema}"')
        admin.execute(OLD_TABLE)
        admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
        admin.execute(f'GRANT SELECT ON {TABLE} TO "{role}"')
        before = admin.execute(f"SELECT md5(string_agg(customer_id::text || partition_date::text, ',' ORDER BY "
                               f"customer_id)) FROM {TABLE}").fetchone()[0]
    try:
        engine = _engine()  # the first start after the upgrade migrates
        job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")  # the next finds nothing to do
        with engine.connect() as conn:
            assert _tables(conn)[TABLE] == ("p", False)
            assert sorted(_partitions(conn)) == [f"{TABLE}_2026110{d}" for d in (1, 2, 3)]
            after = conn.execute(sa.text(f"SELECT md5(string_agg(customer_id::text || partition_date::text, ',' "
                                         f"ORDER BY customer_id)) FROM {TABLE}")).scalar_one()
            assert after == before, "every row kept"
            assert conn.execute(sa.text("SELECT name FROM scoring_schema_migrations WHERE name LIKE '030%'")
                                ).scalars().all() == [f"030_partition_by_day.sql:{schema}.{TABLE}"]
            assert conn.execute(sa.text("SELECT has_table_privilege(:r, :t, 'SELECT')"),
                                {"r": role, "t": TABLE}).scalar_one(), "the reader still reads the table"
            assert {n for n, (_, part) in _tables(conn).items() if not part} == {TABLE}
        _replace(engine, 10, dt.date(2026, 11, 2), run_id="new")  # a re-run of a migrated day swaps it
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.text(f"SELECT partition_date, count(*) FROM {TABLE} GROUP BY 1")
                                       ).tuples().all())
        assert counts == {dt.date(2026, 11, 1): 1000, dt.date(2026, 11, 2): 10, dt.date(2026, 11, 3): 1000}
        with engine.connect() as conn:  # the old layout's two indexes, built on the load table (not by ATTACH)
            names = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = :t AND schemaname = current_schema()"),
                                 {"t": f"{TABLE}_20261102"}).scalars().all()
        assert len(names) == 2 and all("_load_" in n or n.endswith("_pkey") for n in names), names
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'REVOKE ALL ON "{schema}".{TABLE} FROM "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')

