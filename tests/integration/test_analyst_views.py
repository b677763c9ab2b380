"""What an analyst reads: the latest score of every entity says how old it is, and lookups by key have an index."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.store import analyst, engines, job_tables, naming, operational, writes
from tests.conftest import DAY, write_job, write_partition


def test_latest_says_which_scores_are_stale_and_the_key_is_indexed(any_db: str, home: Path) -> None:
    before = DAY - dt.timedelta(days=1)
    write_partition(home, before, n=1200)
    write_partition(home, DAY, n=900)  # fewer active customers: some keep only yesterday's score
    job = load_job(write_job(home))
    local.run_partition(job, before, run_id="d1")
    local.run_partition(job, DAY, run_id="d2")
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, partition_date, latest_partition, is_stale "
                                    "FROM churn_test_predictions_latest")).all()
        today = set(conn.execute(sa.text("SELECT customer_id FROM churn_test_predictions WHERE partition_date = :d"),
                                 {"d": DAY}).scalars())
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("churn_test_predictions")}
        pk = sa.inspect(conn).get_pk_constraint("churn_test_predictions")["constrained_columns"]
    assert len(rows) == len({r[0] for r in rows}), "one row per entity"
    stale = {r[0] for r in rows if r[3]}
    assert stale and not stale & today, "exactly the entities missing from the newest partition are stale"
    assert {r[0] for r in rows if not r[3]} == today
    assert {str(r[2]) for r in rows} == {str(DAY)}
    assert all(str(r[1]) == str(before) for r in rows if r[3])
    if any_db.startswith("sqlite"):  # the date leads the primary key (a re-run deletes its day): an index by key besides
        assert pk == ["partition_date", "customer_id"] and indexes["churn_test_predictions_by_key"] == ["customer_id"]
    else:  # one day per partition: the primary key leads with the key and serves lookups by key alone
        assert pk == ["customer_id", "partition_date"] and "churn_test_predictions_by_key" not in indexes


def _rows(keys: range, day: dt.date, run_id: str, score: float = 0.5) -> pa.Table:
    n = len(keys)
    return pa.table({
        "customer_id": pa.array(keys, pa.int64()), "partition_date": pa.repeat(pa.scalar(day, pa.date32()), n),
        "prediction": pa.repeat(pa.scalar("1"), n), "score": pa.repeat(pa.scalar(score), n),
        "model_name": pa.repeat(pa.scalar("m"), n), "model_version": pa.repeat(pa.scalar(1, pa.int32()), n),
        "run_id": pa.repeat(pa.scalar(run_id), n),
        "scored_at": pa.repeat(pa.scalar(dt.datetime(2026, 11, 21, 3), pa.timestamp("us")), n),
        "flags": pa.nulls(n, pa.string())})


def _latest_by_history(conn: sa.Connection, table: str) -> dict[int, tuple[str, str]]:
    """Every entity's latest row found the slow way, over the whole history: key -> (day, run id)."""
    return {r[0]: (str(r[1]), r[2]) for r in conn.execute(sa.text(
        f"SELECT p.customer_id, p.partition_date, p.run_id FROM {table} p JOIN (SELECT customer_id AS k, "
        f"MAX(partition_date) AS d FROM {table} GROUP BY customer_id) m ON p.customer_id = m.k "
        "AND p.partition_date = m.d"))}


def test_the_latest_rows_follow_every_publish_rerun_backfill_and_failure(any_db: str, home: Path) -> None:
    """The latest-row table behind ``_latest`` says what the whole history says after a new day, a re-run
    that drops entities (back to their earlier day, or gone), a backfill of an older day, and a failed
    publish (unchanged)."""
    from pipeline.errors import StoreError
    from pipeline.lease import SupersededError

    table, d0, d1, d2 = "lt_predictions", DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1), DAY
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, table, "customer_id", "int")

    def publish(keys: range, day: dt.date, run_id: str) -> None:
        writes.replace_partition(engine, table=table, key="customer_id", job_id="lt", partition_date=day,
                                batches=[_rows(keys, day, run_id)])

    def check() -> dict[int, tuple[str, str]]:
        with engine.connect() as conn:
            view = {r[0]: (str(r[1]), r[2]) for r in conn.execute(sa.text(
                f"SELECT customer_id, partition_date, run_id FROM {table}_latest"))}
            assert view == _latest_by_history(conn, table)
            newest = conn.execute(sa.text(f"SELECT MAX(partition_date) FROM {table}")).scalar_one()
            stale = {r[0] for r in conn.execute(sa.text(f"SELECT customer_id FROM {table}_latest WHERE is_stale"))}
            assert stale == {k for k, (day, _) in view.items() if day != str(newest)}
        return view

    publish(range(0, 100), d1, "a")
    publish(range(50, 150), d2, "b")
    assert check()[120] == (str(d2), "b")
    publish(range(60, 130), d2, "b2")  # a re-run that lost 50..59 (back to d1) and 130..149 (gone)
    view = check()
    assert view[55] == (str(d1), "a") and 140 not in view and view[100] == (str(d2), "b2")
    publish(range(0, 200), d0, "old")  # a backfill of an older day: only entities without a later row take it
    view = check()
    assert view[10] == (str(d1), "a") and view[170] == (str(d0), "old") and view[100] == (str(d2), "b2")
    duplicate = pa.concat_tables([_rows(range(0, 5), d2, "bad"), _rows(range(0, 5), d2, "bad")])
    with pytest.raises(StoreError):
        writes.replace_partition(engine, table=table, key="customer_id", job_id="lt", partition_date=d2,
                                batches=[duplicate])
    assert check() == view, "a failed publish leaves the latest rows as they were"
    with pytest.raises(SupersededError):  # refused in the publish's transaction, after the latest rows' upkeep
        writes.replace_partition(engine, table=table, key="customer_id", job_id="lt", partition_date=d2,
                                batches=[_rows(range(0, 300), d2, "ghost")], attempt=("ghost", 1))
    assert check() == view, "a publish refused at its end leaves the latest rows as they were"
    publish(range(0, 0), d2, "empty")  # the newest day replaced by nothing: the newest is d1 again
    view = check()
    assert view[90] == (str(d1), "a") and view[120] == (str(d0), "old") and 250 not in view


HISTORY = """
DO $$
DECLARE i integer;
BEGIN
  FOR i IN 0..{days} - 1 LOOP
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES IN (%L)', '{parts}',
                   '{table}_' || to_char(DATE '{first}' + i, 'YYYYMMDD'), '{home}', '{table}', DATE '{first}' + i);
  END LOOP;
END
$$;
INSERT INTO "{home}".{table} (partition_date, customer_id, prediction, score, model_name, model_version, run_id,
                               scored_at)
SELECT DATE '{first}' + i, i * 100 + g, '1', random(), 'm', 1, 'history', now()
FROM generate_series(0, {days} - 1) i, generate_series(0, {per_day} - 1) g;
ANALYZE "{home}".{table};
"""


def _relations(plan: dict) -> list[str]:
    """Every table or index an EXPLAIN (FORMAT JSON) plan reads."""
    found = [plan[k] for k in ("Relation Name", "Index Name") if k in plan]
    for child in plan.get("Plans", []):
        found += _relations(child)
    return found


@pytest.mark.postgres
def test_latest_at_365_days_reads_the_latest_rows_not_the_history(pg_url: str, pg_server: str) -> None:
    """A year of day partitions (365): ``_latest`` reads the latest-row table only, whatever the history;
    the plans and the measured times go to test-output/latest-365-days.txt (a record, never asserted on)."""
    import json
    import time
    import uuid

    import psycopg

    from tests.conftest import ROOT

    table, days, per_day = "year_predictions", 365, 2000
    home = f"analytics_{uuid.uuid4().hex[:10]}"
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    parts = naming.storage_schema(engine, home)
    first = DAY - dt.timedelta(days=days - 1)
    try:
        job_tables.ensure_predictions(engine, table, "customer_id", "int", home)
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(HISTORY.format(days=days - 1, parts=parts, table=table, home=home, first=first,
                                         per_day=per_day))
            admin.execute(f'DROP TABLE "{parts}".{naming.latest_table(table)} CASCADE')  # made anew from the history
        started = time.perf_counter()
        job_tables.ensure_predictions(engine, table, "customer_id", "int", home)
        fill_s = time.perf_counter() - started
        started = time.perf_counter()
        writes.replace_partition(engine, table=table, key="customer_id", job_id="year", partition_date=DAY,
                                batches=[_rows(range((days - 1) * 100, (days - 1) * 100 + per_day), DAY, "day365")],
                                schema=home)
        publish_s = time.perf_counter() - started
        queries = {
            "every entity's latest": f'SELECT * FROM "{home}".{table}_latest',
            "the top 20 latest scores": f'SELECT customer_id, score, is_stale FROM "{home}".{table}_latest '
                                        "ORDER BY score DESC LIMIT 20",
            "one entity's latest": f'SELECT * FROM "{home}".{table}_latest WHERE customer_id = 36450',
        }
        history = (f'SELECT p.* FROM "{home}".{table} p JOIN (SELECT customer_id AS k, MAX(partition_date) AS d '
                   f'FROM "{home}".{table} GROUP BY customer_id) m ON p.customer_id = m.k AND p.partition_date = m.d')
        lines = [f"_latest at {days} days of {per_day} rows ({days * per_day} rows of history), PostgreSQL",
                 f"latest-row table made from the history: {fill_s:.2f}s; publish of day {days}: {publish_s:.2f}s", ""]
        with engine.connect() as conn:
            partitions = conn.execute(sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)"),
                                      {"t": f'"{home}".{table}'}).scalar_one()
            assert partitions == days
            for what, sql in [*queries.items(), ("the same latest rows read from the history (before)", history)]:
                (plan,) = conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")).scalar_one()
                text = "\n".join(conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")).scalars())
                lines += [f"## {what}: {plan['Execution Time']:.1f} ms", sql, text, ""]
                if sql == history:
                    continue
                read = set(_relations(plan["Plan"]))
                assert naming.latest_table(table) in read and all(
                    r.startswith((naming.latest_table(table), analyst.NEWEST_TABLE)) for r in read), \
                    f"{what} reads {sorted(read)}: it must read the latest-row table only (and the newest day), " \
                    "no day partition"
            n = conn.execute(sa.text(f'SELECT count(*) FROM "{home}".{table}_latest')).scalar_one()
            assert n == conn.execute(sa.text(f"SELECT count(*) FROM ({history}) h")).scalar_one()
        out = ROOT / "test-output"
        out.mkdir(exist_ok=True)
        (out / "latest-365-days.txt").write_text("\n".join(lines))
        print(json.dumps({"fill_s": round(fill_s, 2), "publish_s": round(publish_s, 2)}))
    finally:
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{home}" CASCADE')
            admin.execute(f'DROP SCHEMA IF EXISTS "{parts}" CASCADE')
