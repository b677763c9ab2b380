"""source.kind: sql: a partition read by a query scores and quarantines as the same rows read from files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import local
from pipeline.config import load_job
from pipeline.errors import InputError, PartitionNotFoundError
from pipeline.sources import source_for
from pipeline.sources import sql as sqlsource
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition

QUERY = "SELECT * FROM feature_rows WHERE day = :partition_date -- not :other_param\n"


def _load_rows(home: Path, url: str, days: list[dt.date]) -> None:
    """The demo partition's files of each day (written for the files job too) as the rows of ``feature_rows``."""
    engine = engines.engine_for(url)
    frames = []
    for day in days:
        folder = write_partition(home, day=day, n=900)
        frame = pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)
        again = frame.iloc[[3, 70, 500]]  # three keys twice: in a file of their own, and in the table's rows
        again.to_parquet(folder / "part-9999.parquet", index=False)
        frame = pd.concat([frame, again], ignore_index=True)
        frame.insert(0, "day", day if engine.dialect.name == "postgresql" else day.isoformat())
        frames.append(frame)
    pd.concat(frames, ignore_index=True).to_sql("feature_rows", engine, if_exists="replace", index=False)


def _table(url: str, sql: str) -> pd.DataFrame:
    with engines.engine_for(url).connect() as conn:
        return pd.read_sql(sa.text(sql), conn)


def _outputs(url: str, job_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    predictions = _table(url, f"SELECT customer_id, prediction, score, flags FROM {job_id}_predictions "
                              "ORDER BY customer_id")
    quarantine = _table(url, f"SELECT entity_key, reasons, row_values FROM scoring_quarantine WHERE job_id = "
                             f"'{job_id}' ORDER BY entity_key")
    return predictions, quarantine


def _job(home: Path, job_id: str, source: dict[str, Any]) -> Any:
    return load_job(write_job(home, job_id=job_id, source={"batch_rows": 300, "wait_timeout_minutes": 0.02,
                                                           "poke_interval_seconds": 1, **source}))


def test_a_query_scores_and_quarantines_as_the_files_do_sharded_or_not(any_db: str, home: Path) -> None:
    _load_rows(home, any_db, [DAY - dt.timedelta(days=1), DAY])  # two days in one table: the query picks one
    files = load_job(write_job(home, job_id="from_files"))
    query = _job(home, "from_query", {"kind": "sql", "query": QUERY})
    (home / "sql").mkdir()
    (home / "sql" / "rows.sql").write_text(QUERY)
    sharded = _job(home, "from_shards", {"kind": "sql", "query_file": str(home / "sql" / "rows.sql"), "shards": 3})
    done = {job.job_id: local.run_partition(job, DAY) for job in (files, query, sharded)}
    assert all(s["status"] == "success" for s in done.values()), done
    expected = _outputs(any_db, "from_files")
    assert done["from_files"]["rows_quarantined"] > 0 and len(expected[0]) > 800
    assert (expected[1]["reasons"].str.contains("duplicate_key:customer_id")).sum() == 6  # both copies of each
    for job_id in ("from_query", "from_shards"):
        got = _outputs(any_db, job_id)
        pd.testing.assert_frame_equal(got[0], expected[0])
        pd.testing.assert_frame_equal(got[1], expected[1])  # the same reasons and original values
        for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored", "rows_written"):
            assert done[job_id][field] == done["from_files"][field], (job_id, field)


def test_readiness_a_bad_query_and_an_empty_day_name_the_query(any_db: str, home: Path) -> None:
    engine = engines.engine_for(any_db)
    _load_rows(home, any_db, [DAY])
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE load_audit (day TEXT, status TEXT)"))
    plain = _job(home, "plain", {"kind": "sql", "query": QUERY})
    audited = _job(home, "audited", {"kind": "sql", "query": QUERY, "ready_query":
                                     "SELECT count(*) > 0 FROM load_audit WHERE day = CAST(:partition_date AS TEXT) "
                                     "AND status = 'done'"})
    assert source_for(plain).ready(DAY) and not source_for(plain).ready(DAY + dt.timedelta(days=1))
    assert not source_for(audited).ready(DAY)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO load_audit VALUES (:d, 'running')"), {"d": DAY.isoformat()})
    assert not source_for(audited).ready(DAY)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE load_audit SET status = 'done'"))
    assert source_for(audited).ready(DAY)
    assert "source.ready_query 'SELECT count(*) > 0 FROM load_audit" in sqlsource.ready_description(audited)
    assert "on connection 'scoring_db'" in sqlsource.ready_description(audited)

    with pytest.raises(PartitionNotFoundError, match=r"partition 2026-11-21 of job plain is not ready: whether "
                                                      r"the query of source.query .* returns a row says no"):
        local.run_partition(plain, DAY + dt.timedelta(days=1))  # no attempt, as the DAG's sensor would wait
    with engine.begin() as conn:  # the load says the day is done, and it holds no rows
        conn.execute(sa.text("INSERT INTO load_audit VALUES (:d, 'done')"),
                     {"d": (DAY + dt.timedelta(days=1)).isoformat()})
    with pytest.raises(InputError, match=r"partition 2026-11-21: the query of source.query 'SELECT \* FROM "
                                         r"feature_rows WHERE day = :partition_date.*' on connection 'scoring_db' "
                                         r"returned no rows. Nothing was published"):
        local.run_partition(audited, DAY + dt.timedelta(days=1))

    broken = _job(home, "broken", {"kind": "sql", "query": "SELECT * FROM no_such_table WHERE d = :partition_date"})
    with pytest.raises(InputError, match=r"asking whether the partition is ready with the query of source.query "
                                         r"'SELECT \* FROM no_such_table .*' on connection 'scoring_db' failed: .*"
                                         r"no_such_table.*Fix the query"):
        source_for(broken).ready(DAY)
    with pytest.raises(InputError, match="asking whether the partition is ready"):
        local.run_partition(broken, DAY)  # the readiness question fails first: no attempt
    said_ready = _job(home, "broken", {"kind": "sql", "query": "SELECT * FROM no_such_table WHERE d = :partition_date",
                                       "ready_query": "SELECT :partition_date IS NOT NULL"})
    with pytest.raises(InputError, match="reading the rows of the query of source.query"):
        local.run_partition(said_ready, DAY)
    with engines.engine_for(any_db).connect() as conn:  # the ledger holds the attempts, and only those
        errors = conn.execute(sa.text("SELECT job_id, status, error FROM scoring_runs WHERE job_id IN ('plain', "
                                      "'broken') ORDER BY job_id")).all()
        [(empty,)] = conn.execute(sa.text("SELECT error FROM scoring_runs WHERE job_id = 'audited'")).all()
    assert "returned no rows" in empty
    assert [(j, s) for j, s, _ in errors] == [("broken", "failed")]
    assert "no_such_table" in errors[0][2]


def test_the_query_must_bind_the_partition_date_and_nothing_else(home: Path) -> None:
    from pipeline.errors import ConfigError

    for query, message in [("SELECT * FROM t", "must filter on :partition_date"),
                           ("SELECT * FROM t WHERE d = :partition_date AND x = :x", "only :partition_date is bound"),
                           ("SELECT 1 WHERE :partition_date IS NOT NULL; DROP TABLE t", "one SQL statement")]:
        with pytest.raises(ConfigError, match=message):
            _job(home, "bad", {"kind": "sql", "query": query})
    with pytest.raises(ConfigError, match="source.path is required"):
        _job(home, "bad", {"path": None})
    sql, params = sqlsource.bind("SELECT ':partition_date', d::date FROM t WHERE d = :partition_date::date "
                                 "OR e = :partition_date", "postgresql", DAY)
    setting = "CAST(current_setting('scoring.partition_date') AS date)"
    assert sql == f"SELECT ':partition_date', d::date FROM t WHERE d = {setting}::date OR e = {setting}\n"
    assert params == [("scoring.partition_date", DAY.isoformat())]
    sql, params = sqlsource.bind("SELECT 1 FROM t WHERE d = :partition_date OR e = :partition_date;", "sqlite", DAY)
    assert sql == "SELECT 1 FROM t WHERE d = ? OR e = ?\n" and params == [DAY.isoformat()] * 2


def test_a_database_that_is_down_is_retried_and_a_broken_query_is_not(home: Path) -> None:
    import sqlite3

    import adbc_driver_manager as adbc

    from pipeline.errors import StoreError

    job = _job(home, "q", {"kind": "sql", "query": QUERY})
    errors = {sqlite3.OperationalError("no such table: feature_rows"): InputError,
              sqlite3.OperationalError("database is locked"): StoreError,
              adbc.OperationalError("IO: could not connect to server", status_code=adbc.AdbcStatusCode.IO): StoreError,
              adbc.ProgrammingError("INVALID_ARGUMENT: syntax error", status_code=adbc.AdbcStatusCode.INVALID_ARGUMENT):
                  InputError}
    for exc, kind in errors.items():
        error = sqlsource._failed(job, DAY, exc, "reading the rows of")
        assert type(error) is kind and error.retryable == (kind is StoreError), exc
        assert "on connection 'scoring_db' failed:" in str(error)
