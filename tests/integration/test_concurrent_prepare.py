"""Two runs prepare a job's tables at once (a backfill's first days, on a database the job never wrote): the
latest-row table is made and filled from the history once, on SQLite as on PostgreSQL.

Found by the backfill e2e test: on SQLite both runs looked for ``<prefix>_current`` before either had made it,
and the second filled it again from the history the first had just published: ``UNIQUE constraint failed``,
and that day's run failed for good. Each preparation now takes the database's write lock first (``BEGIN
IMMEDIATE``, as PostgreSQL takes its DDL lock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from pipeline.store import analyst, engines, job_tables, operational, writes
from tests.conftest import DAY

pytestmark = pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
TABLE = "twin_predictions"


def _rows(keys: list[int], day: dt.date) -> pa.Table:
    n = len(keys)
    return pa.table({"customer_id": pa.array(keys, pa.int64()), "partition_date": pa.array([day] * n, pa.date32()),
                     "prediction": ["1"] * n, "score": [0.5] * n, "model_name": ["m"] * n,
                     "model_version": pa.array([1] * n, pa.int32()), "run_id": ["r"] * n,
                     "scored_at": pa.array([dt.datetime(2026, 11, 21, 3)] * n, pa.timestamp("us")),
                     "flags": pa.nulls(n, pa.string())})


def test_two_runs_preparing_the_tables_at_once_fill_the_latest_rows_once(
        any_db: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")
    writes.replace_partition(engine, table=TABLE, key="customer_id", job_id="twin", partition_date=DAY,
                             batches=[_rows([1, 2, 3], DAY)])
    # a history without its latest-row table (a database made before it): the next preparation makes it from the
    # history, and here two preparations come at once
    with engines.begin(engine) as conn:
        conn.exec_driver_sql(f"DROP TABLE {TABLE}_current CASCADE" if conn.dialect.name == "postgresql"
                             else f"DROP TABLE {TABLE}_current")
    both = threading.Barrier(2, timeout=3)
    real = analyst.ensure_latest_table

    def side_by_side(conn: Any, *args: Any, **kwargs: Any) -> str:
        # unlocked, both runs look for the table before either has made it; locked, the first one's wait is
        # broken off and the second run waits for its commit
        with contextlib.suppress(threading.BrokenBarrierError):
            both.wait()
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(analyst, "ensure_latest_table", side_by_side)
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")
        except BaseException as exc:  # noqa: BLE001 - the thread's failure is the test's
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with engine.connect() as conn:
        latest = conn.execute(sa.text(f"SELECT customer_id, partition_date FROM {TABLE}_current "
                                      "ORDER BY customer_id")).tuples().all()
    assert [(k, str(d)) for k, d in latest] == [(k, str(DAY)) for k in (1, 2, 3)]
