"""PostgreSQL: a swap never holds readers more than about 2 s (issue 25, point 5).

While a swap waits for the predictions table, every reader that comes after it queues behind it. The
swap waits ``locks.SWAP_TRY_MS`` a try, steps out of the queue for a jittered pause and tries again:
readers running queries in a loop are measured while a long transaction holds the table and a re-run
waits to swap its day in; the swap goes through once the long transaction ends.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from pipeline.errors import StoreError
from pipeline.store import analyst, engines, job_tables, locks
from tests.integration.test_partition_swap import TABLE, _engine, _replace

pytestmark = pytest.mark.postgres
DAY = dt.date(2026, 11, 20)
READERS = 4


def _rerun() -> int:
    return _replace(engines.for_connection("scoring_db"), 300, DAY, run_id="rerun")


def _measure(pg_server: str, schema: str, hold_s: float, action=_rerun,
             read: str = TABLE) -> tuple[list[float], float, float, int]:
    """Readers query ``read`` in a loop while a long transaction holds it for ``hold_s`` and ``action`` (a
    re-run of the day) waits for it: (every reader query's wait, when the long one ended, when the action
    ended, what it returned), times from the action's start."""
    waits: list[float] = []
    done = threading.Event()
    outcome: dict[str, object] = {}

    def reader() -> None:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            while not done.is_set():
                began = time.perf_counter()
                conn.execute(f"SELECT count(*) FROM {read} WHERE partition_date = %s", (DAY,)).fetchone()
                waits.append(time.perf_counter() - began)
                time.sleep(0.02)

    def rerun() -> None:
        try:
            outcome["rows"] = action()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            outcome["error"] = exc
        outcome["ended"] = time.perf_counter()

    readers = [threading.Thread(target=reader, name=f"reader {i}") for i in range(READERS)]
    with psycopg.connect(pg_server) as long_one:  # a transaction that read the table and keeps it
        long_one.execute(f'SELECT count(*) FROM "{schema}".{read}').fetchone()
        for thread in readers:
            thread.start()
        started = time.perf_counter()
        swapper = threading.Thread(target=rerun, name="re-run")
        swapper.start()
        time.sleep(hold_s)
        long_one.rollback()
        released = time.perf_counter()
    swapper.join(timeout=120)
    time.sleep(0.3)
    done.set()
    for thread in readers:
        thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return waits, released - started, float(outcome["ended"]) - started, int(outcome.get("rows") or 0)  # type: ignore[arg-type]


def test_readers_wait_under_2s_while_a_swap_waits_for_a_long_reader_and_it_swaps_after(
        pg_url: str, pg_server: str) -> None:
    engine = _engine()
    _replace(engine, 500, DAY)
    schema = pg_url.rsplit("%3D", 1)[1]
    waits, released, swapped, rows = _measure(pg_server, schema, hold_s=6.0)
    print(f"{len(waits)} reader queries during a 6 s hold: longest wait {max(waits):.3f}s; "
          f"swap done {swapped - released:.2f}s after the long transaction ended")
    assert rows == 300 and analyst.count_partition(engine, TABLE, DAY) == 300, "the swap went through"
    assert swapped > released, "it waited for the long transaction"
    assert max(waits) < 3.0, f"a reader waited {max(waits):.2f}s behind the swap"
    assert swapped - released < 10, "and went through soon after it ended"


def test_a_run_start_making_the_views_anew_holds_their_readers_under_2s_too(pg_url: str, pg_server: str) -> None:
    """A run's start makes the views anew (DROP VIEW needs the view to itself): the same short tries."""
    engine = _engine()
    _replace(engine, 500, DAY)

    def start() -> int:
        job_tables.ensure_predictions(engine, TABLE, "customer_id", "int")
        return 1

    waits, released, ended, _ = _measure(pg_server, pg_url.rsplit("%3D", 1)[1], hold_s=4.0, action=start,
                                         read=f"{TABLE}_latest")
    print(f"{len(waits)} reader queries of {TABLE}_latest during a 4 s hold: longest wait {max(waits):.3f}s")
    assert ended > released, "the start waited for the long transaction"
    assert max(waits) < 3.0, f"a reader waited {max(waits):.2f}s behind the run's start"


def test_the_measure_sees_the_queue_of_one_long_try(pg_url: str, pg_server: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: one long try (issue 25's finding) keeps the readers queued behind it."""
    engine = _engine()
    _replace(engine, 500, DAY)
    monkeypatch.setattr(locks, "SWAP_TRY_MS", 20_000)
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
        with pytest.raises(locks.SwapWaitError) as caught:
            _replace(engine, 300, DAY, run_id="gave_up")
        long_one.rollback()
    error = caught.value
    assert isinstance(error, StoreError) and error.retryable
    message = str(error)
    assert f"partition {DAY} of {TABLE}" in message and "tries" in message
    assert "previous copy of the partition is unchanged" in message and "Retry the persist task once" in message
    assert analyst.count_partition(engine, TABLE, DAY) == 500
