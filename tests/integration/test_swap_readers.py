"""PostgreSQL: a swap never holds readers more than about 2 s (issue 25, point 5).

While a swap waits for the predictions table, every reader that comes after it queues behind it. The
swap waits ``store.SWAP_TRY_MS`` a try, steps out of the queue for a jittered pause and tries again:
readers running queries in a loop are measured while a long transaction holds the table and a re-run
waits to swap its day in; the swap goes through once the long transaction ends.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from pipeline import store
from pipeline.errors import StoreError
from tests.integration.test_partition_swap import TABLE, _engine, _replace

pytestmark = pytest.mark.postgres
DAY = dt.date(2026, 11, 20)
READERS = 4


def _measure(pg_server: str, schema: str, hold_s: float) -> tuple[list[float], float, float, int]:
    """Readers query the table in a loop while a long transaction holds it for ``hold_s`` and a re-run of
    the day waits to swap in: (every reader query's wait, when the long one ended, when the swap ended,
    the rows the re-run wrote), times from the re-run's start."""
    waits: list[float] = []
    done = threading.Event()
    outcome: dict[str, object] = {}

    def read() -> None:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            while not done.is_set():
                began = time.perf_counter()
                conn.execute(f"SELECT count(*) FROM {TABLE} WHERE partition_date = %s", (DAY,)).fetchone()
                waits.append(time.perf_counter() - began)
                time.sleep(0.02)

    def rerun() -> None:
        try:
            outcome["rows"] = _replace(store.engine_for(store.resolve_url("scoring_db")), 300, DAY, run_id="rerun")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc
        outcome["ended"] = time.perf_counter()

    readers = [threading.Thread(target=read, name=f"reader {i}") for i in range(READERS)]
    with psycopg.connect(pg_server) as long_one:  # a transaction that read the table and keeps it
        long_one.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()
        for reader in readers:
            reader.start()
        started = time.perf_counter()
        swapper = threading.Thread(target=rerun, name="re-run")
        swapper.start()
        time.sleep(hold_s)
        long_one.rollback()
        released = time.perf_counter()
    swapper.join(timeout=120)
    time.sleep(0.3)
    done.set()
    for reader in readers:
        reader.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return waits, released - started, float(outcome["ended"]) - started, int(outcome["rows"])  # type: ignore[arg-type]


def test_readers_wait_under_2s_while_a_swap_waits_for_a_long_reader_and_it_swaps_after(
        pg_url: str, pg_server: str) -> None:
    engine = _engine()
    _replace(engine, 500, DAY)
    schema = pg_url.rsplit("%3D", 1)[1]
    waits, released, swapped, rows = _measure(pg_server, schema, hold_s=6.0)
    print(f"{len(waits)} reader queries during a 6 s hold: longest wait {max(waits):.3f}s; "
          f"swap done {swapped - released:.2f}s after the long transaction ended")
    assert rows == 300 and store.count_partition(engine, TABLE, DAY) == 300, "the swap went through"
    assert swapped > released, "it waited for the long transaction"
    assert max(waits) < 3.0, f"a reader waited {max(waits):.2f}s behind the swap"
    assert swapped - released < 10, "and went through soon after it ended"


def test_the_measure_sees_the_queue_of_one_long_try(pg_url: str, pg_server: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: one long try (issue 25's finding) keeps the readers queued behind it."""
    engine = _engine()
    _replace(engine, 500, DAY)
    monkeypatch.setattr(store, "SWAP_TRY_MS", 20_000)
    waits, _, _, rows = _measure(pg_server, pg_url.rsplit("%3D", 1)[1], hold_s=4.0)
    assert rows == 300 and max(waits) > 2.0, f"longest wait {max(waits):.2f}s"


def test_a_swap_that_never_gets_the_table_says_a_retry_can_help(pg_url: str, pg_server: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine()
    _replace(engine, 500, DAY)
    monkeypatch.setenv("SCORING_SWAP_LOCK_TIMEOUT_S", "0.5")  # 1.5 s of tries in all
    schema = pg_url.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_server) as long_one:
        long_one.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()
        with pytest.raises(store.SwapWaitError) as caught:
            _replace(engine, 300, DAY, run_id="gave_up")
        long_one.rollback()
    error = caught.value
    assert isinstance(error, StoreError) and error.retryable
    message = str(error)
    assert f"partition {DAY} of {TABLE}" in message and "tries" in message
    assert "previous copy of the partition is unchanged" in message and "Retry the persist task once" in message
    assert store.count_partition(engine, TABLE, DAY) == 500
