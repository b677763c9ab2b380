"""PostgreSQL: the reaper's sweep of load tables (issue 25, point 3): ``load_tables.drop_dead_loads``.

A killed attempt leaves its load table; once its ledger row is no longer ``running`` (abandoned by the
reaper, failed) the sweep drops it whatever its day, and leaves alone what is not its to judge: a
running attempt's, another job's, another ledger's, a direct call's, one still in use.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from pipeline.store import engines, job_tables, load_tables, naming, operational

pytestmark = pytest.mark.postgres
TABLE = "reap_predictions"


def _load(conn: sa.Connection, name: str, job: str, day: str, run: str | None, ledger: str | None,
          status: str | None) -> None:
    """A load table as a persist leaves it (``LIKE`` the predictions table, marked), with its attempt's row."""
    conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {TABLE})"))
    mark = {"table": TABLE, "job_id": job, "day": day, "run_id": run, "attempt": 1 if run else None}
    if ledger is not None:
        mark["ledger"] = ledger
    conn.execute(sa.text(f"COMMENT ON TABLE {name} IS {naming.literal(conn, load_tables.LOAD_MARK + json.dumps(mark))}"))
    if status is not None:
        conn.execute(sa.text(
            "INSERT INTO scoring_runs (job_id, run_id, attempt, partition_date, status, started_at, mode, dry_run) "
            "VALUES (:j, :r, 1, :d, :s, now(), 'persist', false)"), {"j": job, "r": run, "d": day, "s": status})


def test_the_sweep_drops_dead_attempts_load_tables_of_any_day_and_only_those(pg_url: str, pg_server: str) -> None:
    engine = engines.for_connection("scoring_db")
    operational.ensure_ledger(engine)
    job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")
    schema = pg_url.rsplit("%3D", 1)[1]
    job, other = f"reap_{uuid.uuid4().hex[:8]}", f"other_{uuid.uuid4().hex[:8]}"
    cases = {  # name -> (job, day, run, ledger, status), and whether the sweep drops it
        "failed": ((job, "2026-11-01", "run_failed", schema, "failed"), True),
        "abandoned": ((job, "2026-10-02", "run_abandoned", schema, "abandoned"), True),
        "old_mark": ((job, "2026-09-03", "run_old_mark", None, "abandoned"), True),  # a mark without its ledger
        "running": ((job, "2026-11-01", "run_running", schema, "running"), False),
        "other_job": ((other, "2026-11-01", "run_other", schema, "failed"), False),
        "other_ledger": ((job, "2026-11-01", "run_elsewhere", "someone_elses", "failed"), False),
        "unknown": ((job, "2026-11-01", "run_unknown", schema, None), True),  # its ledger row deleted
        "unknown_old_mark": ((job, "2026-11-01", "run_unknown_old", None, None), False),  # maybe another ledger's
        "direct": ((job, "2026-11-01", None, schema, None), False),
        "in_use": ((job, "2026-11-04", "run_in_use", schema, "abandoned"), True),
    }
    names = {case: f"{TABLE}_{spec[1].replace('-', '')}_load_{case}" for case, (spec, _) in cases.items()}
    with engine.begin() as conn:
        for case, (spec, _) in cases.items():
            _load(conn, names[case], *spec)
    with psycopg.connect(pg_server) as zombie:  # a zombie's transaction still holds its load table
        zombie.execute(f'SELECT count(*) FROM "{schema}".{names["in_use"]}').fetchone()
        started = time.perf_counter()
        first = load_tables.drop_dead_loads(engine, job)
        waited = time.perf_counter() - started
        zombie.rollback()
    assert sorted(first) == sorted(f"{schema}.{names[c]}" for c in ("failed", "abandoned", "old_mark", "unknown"))
    assert waited < load_tables.REAP_LOCK_TIMEOUT_MS / 1000 + 5, "a table in use is skipped after the lock timeout"
    assert load_tables.drop_dead_loads(engine, job) == [f"{schema}.{names['in_use']}"], "the next sweep takes it"
    assert load_tables.drop_dead_loads(engine, job) == []
    with engine.connect() as conn:
        left = set(conn.execute(sa.text("SELECT relname FROM pg_class WHERE relnamespace = "
                                        "CAST(current_schema() AS regnamespace) AND relname LIKE :p"),
                                {"p": f"{TABLE}\\_%\\_load\\_%"}).scalars())
    assert left == {names[c] for c, (_, dropped) in cases.items() if not dropped}


def test_the_sweep_on_sqlite_has_nothing_to_do(home) -> None:
    engine = engines.engine_for(f"sqlite:///{home}/reap.db")
    operational.ensure_ledger(engine)
    assert load_tables.drop_dead_loads(engine, "churn_test") == []
