"""A sql source's shards read one state of the source; a source query waits for a lock, and runs, for a limited time.

The plan of a sharded run reads the query once (one statement: one snapshot) into the run's
staging, and every shard reads its rows from that copy. Tested against a PostgreSQL table that a
background thread rewrites in a loop (DELETE+INSERT and TRUNCATE+INSERT, each in one transaction),
and with a real lock (an open TRUNCATE) held by another connection.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import local, run, sharding, steps
from pipeline.config import load_job
from pipeline.errors import InputError, StoreError
from pipeline.sources import source_for
from pipeline.sources import sql as sqlsource
from pipeline.store import engines
from tests.conftest import DAY, clean_customers, write_job

QUERY = "SELECT * FROM feature_rows WHERE day = :partition_date"
ROWS = 3000  # every consistent state of the table holds this many distinct keys
STEP = 500  # state s holds the keys of window s % 4 of a larger frame: [s*STEP, s*STEP + ROWS)


def _job(home: Path, job_id: str, lock: float | None = None, statement: float | None = None,
         monkeypatch: pytest.MonkeyPatch | None = None, **source: Any) -> Any:
    """A sql source job, with the timeouts in its job file when given."""
    limits = {"lock_timeout_seconds": lock, "statement_timeout_seconds": statement}
    limits = {k: v for k, v in limits.items() if v is not None}
    doc = {"kind": "sql", "query": QUERY, "batch_rows": 400, "wait_timeout_minutes": 0.02,
           "poke_interval_seconds": 1, **limits, **source}
    return load_job(write_job(home, job_id=job_id, source=doc))


def _frame() -> Any:
    frame = clean_customers(ROWS + 3 * STEP + 300).head(ROWS + 3 * STEP).copy()
    frame["customer_id"] = range(500_000, 500_000 + len(frame))
    frame.insert(0, "day", DAY)
    return frame


def _states(frame: Any) -> list[list[tuple]]:
    rows = list(frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None))
    return [rows[s * STEP: s * STEP + ROWS] for s in range(4)]


def _keys(state: list[tuple]) -> set[int]:
    return {row[1] for row in state}


class Rewriter:
    """Rewrites feature_rows in a loop from another connection, each rewrite one transaction: DELETE+INSERT
    and TRUNCATE+INSERT in turn, each time the next state (another window of keys, as many of them)."""

    def __init__(self, url: str, states: list[list[tuple]], columns: list[str]) -> None:
        self.url, self.states, self.columns = url, states, columns
        self.stop = threading.Event()
        self.rewrites = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import psycopg

        names = ", ".join(self.columns)
        try:
            with psycopg.connect(self.url) as conn:
                while not self.stop.is_set():
                    state = self.states[(self.rewrites + 1) % len(self.states)]
                    with conn.transaction():
                        if self.rewrites % 2:
                            conn.execute("TRUNCATE feature_rows")
                        else:
                            conn.execute("DELETE FROM feature_rows WHERE day = %s", [DAY])
                        with conn.cursor().copy(f"COPY feature_rows ({names}) FROM STDIN") as copy:
                            for row in state:
                                copy.write_row(row)
                    self.rewrites += 1
        except BaseException as exc:  # the test fails on it
            self.error = exc

    def __enter__(self) -> Rewriter:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(30)
        assert self.error is None, self.error


@pytest.fixture
def source_table(pg_url: str) -> Iterator[tuple[str, list[list[tuple]]]]:
    frame = _frame()
    states = _states(frame)
    engine = engines.engine_for(pg_url)
    frame.head(0).to_sql("feature_rows", engine, index=False, dtype={"day": sa.Date()})
    import psycopg

    with psycopg.connect(pg_url) as conn, conn.cursor().copy(
            f"COPY feature_rows ({', '.join(frame.columns)}) FROM STDIN") as copy:
        for row in states[0]:
            copy.write_row(row)
    yield pg_url, states


def _published_keys(url: str, job_id: str) -> list[int]:
    with engines.engine_for(url).connect() as conn:
        return [k for (k,) in conn.execute(sa.text(f"SELECT customer_id FROM {job_id}_predictions "
                                                   "WHERE partition_date = :d"), {"d": DAY})]


def test_sharded_runs_against_a_table_rewritten_in_a_loop_read_one_state(home: Path, source_table: Any) -> None:
    url, states = source_table
    job = _job(home, "moving", shards=3)
    columns = ["day", *[c for c in _frame().columns if c != "day"]]
    windows = [_keys(s) for s in states]
    with Rewriter(url, states, columns) as rewriter:
        for round_ in range(3):
            before = rewriter.rewrites
            summary = local.run_partition(job, DAY, run_id=f"round-{round_}")
            assert summary["status"] == "success", summary
            assert rewriter.rewrites - before >= 3, "the table was rewritten while the run read it"
            for field in ("rows_in", "rows_valid", "rows_scored", "rows_written"):
                assert summary[field] == ROWS, (round_, field, summary)
            assert summary["rows_quarantined"] == 0, summary
            keys = _published_keys(url, "moving")
            assert len(keys) == len(set(keys)) == ROWS
            assert set(keys) in windows, "the published keys are those of one state of the source"


def test_shards_read_the_plans_copy_never_the_source(any_db: str, home: Path) -> None:
    """A shard (and a shard retried later) reads the rows the plan read, even once the source has changed or
    gone; the shards' shares are row ranges of equal size."""
    frame = _frame().head(1000)
    if not any_db.startswith("postgresql"):
        frame["day"] = DAY.isoformat()
    frame.to_sql("feature_rows", engines.engine_for(any_db), index=False)
    job = _job(home, "copied", shards=3)
    spec = run.start(job, run_id="copied", partition_date=DAY)
    root, shards = sharding.plan(run.context(job, spec))
    assert root.shards == 3 and len(shards) == 3
    plan = root.read_json(steps.PLAN_STATE)
    assert plan["source"]["rows"] == 1000 and plan["duplicate_keys"] == []
    with engines.engine_for(any_db).begin() as conn:
        conn.execute(sa.text("DROP TABLE feature_rows"))
    counts = [run.score_shard(run.context(job, shard)) for shard in shards]
    assert [c["rows_in"] for c in counts] == [333, 333, 334]
    again = run.score_shard(run.context(job, shards[1]))  # a retried shard: the same rows
    assert again["rows_in"] == 333
    ctx = run.context(job, root)
    run.run_step(ctx, steps.COMBINE)
    run.run_step(ctx, steps.PERSIST)
    summary = run.finalize(ctx)
    assert summary["status"] == "success" and summary["rows_written"] == 1000
    assert sorted(_published_keys(any_db, "copied")) == sorted(frame["customer_id"])
    assert not root.run_dir.exists(), "the plan's copy goes with the run's staging"


def test_an_empty_day_and_fewer_rows_than_shards(any_db: str, home: Path) -> None:
    frame = _frame().head(2)
    if not any_db.startswith("postgresql"):
        frame["day"] = DAY.isoformat()
    frame.to_sql("feature_rows", engines.engine_for(any_db), index=False)
    job = _job(home, "tiny", shards=3, ready_query="SELECT :partition_date IS NOT NULL")
    summary = local.run_partition(job, DAY)
    assert summary["status"] == "success" and summary["rows_written"] == 2
    spec = run.start(job, run_id="empty", partition_date=DAY + dt.timedelta(days=1))
    root, shards = sharding.plan(run.context(job, spec))
    assert root.shards == 1 and len(shards) == 1
    [empty] = list(sqlsource.read(run.context(job, shards[0])))
    assert empty.num_rows == 0 and "customer_id" in empty.schema.names  # the query's columns, no rows


def _truncate_held(url: str) -> Any:
    """Another connection's transaction that truncated the table and has not committed: its lock is held."""
    import psycopg

    holder = psycopg.connect(url)
    holder.execute("TRUNCATE feature_rows")
    return holder


def test_a_truncate_holding_its_lock_does_not_make_a_run_wait_forever(home: Path, source_table: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = source_table
    ready_said = _job(home, "locked", lock=1.5, monkeypatch=monkeypatch,
                      ready_query="SELECT :partition_date IS NOT NULL")
    sharded = _job(home, "locked_shards", lock=1.5, monkeypatch=monkeypatch, shards=3,
                   ready_query="SELECT :partition_date IS NOT NULL")
    holder = _truncate_held(url)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as error:
            source_for(_job(home, "asks", lock=1.5, monkeypatch=monkeypatch)).ready(DAY)
        assert time.monotonic() - started < 10
        message = str(error.value)
        assert "partition 2026-11-20: asking whether the partition is ready with the query of source.query " \
               "'SELECT * FROM feature_rows WHERE day = :partition_date' on connection 'scoring_db' failed: " in message
        assert "canceling statement due to lock timeout" in message
        assert "waited more than source.lock_timeout_seconds (1.5 s) for a lock" in message
        assert "TRUNCATE" in message and "retries try again" in message and error.value.retryable
        for job in (ready_said, sharded):
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"waited more than source.lock_timeout_seconds \(1.5 s\)"):
                local.run_partition(job, DAY)
            assert time.monotonic() - started < 15, job.job_id
        with engines.engine_for(url).connect() as conn:
            rows = conn.execute(sa.text("SELECT job_id, status, error FROM scoring_runs WHERE job_id LIKE 'locked%' "
                                        "ORDER BY job_id")).all()
        assert [(j, s) for j, s, _ in rows] == [("locked", "failed"), ("locked_shards", "failed")]  # at plan
        assert all("source.lock_timeout_seconds" in e for _, _, e in rows)
    finally:
        holder.rollback()  # the TRUNCATE undone: the rows are back
        holder.close()
    assert local.run_partition(sharded, DAY)["rows_written"] == ROWS  # the lock gone, the same job runs


def test_a_query_running_past_its_statement_timeout_is_cancelled_and_not_retried(
        home: Path, source_table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = _job(home, "slow", statement=1, monkeypatch=monkeypatch,
                query="SELECT f.* FROM feature_rows f, (SELECT pg_sleep(30)) s WHERE f.day = :partition_date")
    started = time.monotonic()
    with pytest.raises(InputError) as error:
        list(sqlsource.batches(slow, DAY, 100))
    assert time.monotonic() - started < 10
    message = str(error.value)
    assert "partition 2026-11-20: reading the rows of the query of source.query 'SELECT f.* FROM feature_rows f" in \
        message
    assert "ran longer than source.statement_timeout_seconds (1 s, the whole read) and was cancelled" in message
    assert "raise source.statement_timeout_seconds" in message and not error.value.retryable


def test_sqlite_sources_have_the_same_limits(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    url = os.environ["AIRFLOW_CONN_SCORING_DB"]
    frame = _frame().head(50)
    frame["day"] = DAY.isoformat()
    frame.to_sql("feature_rows", engines.engine_for(url), index=False)
    slow = _job(home, "slow", statement=0.5, monkeypatch=monkeypatch,
                query="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
                      "SELECT count(*) AS customer_id, :partition_date AS d FROM c")
    started = time.monotonic()
    with pytest.raises(InputError, match=r"failed: interrupted. It ran longer than source.statement_timeout_seconds "
                                         r"\(0.5 s, the whole read\)"):
        list(sqlsource.batches(slow, DAY, 100))
    assert time.monotonic() - started < 10
    # a lock: WAL readers (the pipeline opens every SQLite database in WAL mode) do not wait for writers; the
    # busy timeout is source.lock_timeout_seconds during the read, and the pool's connection gets its own back
    job = _job(home, "plain", lock=1, monkeypatch=monkeypatch)
    assert sum(t.num_rows for t in sqlsource.batches(job, DAY, 100)) == 50  # the pool's connection reads on
    with engines.engine_for(url).connect() as conn:  # and has its usual busy timeout back
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_a_sharded_query_without_the_key_fails_naming_it(home: Path) -> None:
    import os

    url = os.environ["AIRFLOW_CONN_SCORING_DB"]
    frame = _frame().head(30)
    frame["day"] = DAY.isoformat()
    frame.to_sql("feature_rows", engines.engine_for(url), index=False)
    job = _job(home, "keyless", shards=3,
               query="SELECT age, tenure_months FROM feature_rows WHERE day = :partition_date")
    with pytest.raises(InputError, match=r"partition 2026-11-20: the query of source.query 'SELECT age, tenure_months "
                                         r".*' on connection 'scoring_db' has no column 'customer_id'"):
        local.run_partition(job, DAY)
