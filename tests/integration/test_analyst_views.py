"""What an analyst reads: the latest score of every entity says how old it is, and lookups by key have an index."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from pipeline import local, store
from pipeline.config import load_job
from tests.conftest import DAY, write_job, write_partition


def test_latest_says_which_scores_are_stale_and_the_key_is_indexed(any_db: str, home: Path) -> None:
    before = DAY - dt.timedelta(days=1)
    write_partition(home, before, n=1200)
    write_partition(home, DAY, n=900)  # fewer active customers: some keep only yesterday's score
    job = load_job(write_job(home))
    local.run_partition(job, before, run_id="d1")
    local.run_partition(job, DAY, run_id="d2")
    engine = store.engine_for(store.resolve_url("scoring_db"))
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
