"""The online door's record (pipeline.serve.recorder, pipeline.store.online): every answered row in
<output.table>_online exactly once, written off the request path, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import write_job

PLANTED = "Planted-Value-7731"  # a row value: never in a log line


@dataclass(frozen=True)
class Row:
    """A door's answer for one row (the fields of pipeline.serve.door.RowResult the recorder reads)."""

    index: int
    key: str | int | None
    status: str | None
    score: float | None
    prediction: str | None
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    model_name: str = "churn"
    model_version: int = 1
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs_sha256(self) -> str:
        text = json.dumps(self.inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def job_of(home: Path, **overrides: Any) -> Any:
    from pipeline.config import load_job

    return load_job(write_job(home, "online_rec", **overrides))


def rows_of(engine: sa.Engine, table: str = "online_rec_predictions_online") -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            f"SELECT * FROM {table} ORDER BY request_id, row_index")).mappings()]  # noqa: S608


def wait_written(recorder: Any, n: int) -> None:
    deadline = time.monotonic() + 30
    while recorder.written < n and time.monotonic() < deadline:
        time.sleep(0.02)


def answers(n: int, start: int = 0) -> list[Row]:
    return [Row(i, f"c{start + i:04d}", "scored", 0.25 + i / 100, "yes" if i % 2 else "no",
                ["out_of_training_range:tenure"] if i == 1 else [],
                inputs={"customer_id": f"c{start + i:04d}", "tenure": i, "plan": "été ✓", "note": PLANTED})
            for i in range(n)]


def test_every_answered_row_is_in_the_table_once(any_db: str, home: Path) -> None:
    from pipeline.serve.recorder import Recorder
    from pipeline.store import engines

    job = job_of(home)
    recorder = Recorder(job, queue_records=1000, batch_rows=4, flush_seconds=0.05)
    recorder.start()
    at = dt.datetime(2026, 11, 20, 23, 30, 5, 123000, tzinfo=dt.UTC)
    first = answers(5)
    quarantined = Row(0, None, "quarantined", None, None, reasons=["not_null:customer_id", "be_between:tenure"],
                      inputs={"tenure": -3, "note": PLANTED})
    recorder.put(first, "req-1", at)
    recorder.put([quarantined], "req-2", at + dt.timedelta(seconds=1))
    wait_written(recorder, 6)
    recorder.put(first, "req-1", at)  # the same request written again (a retry): no second copy
    assert recorder.stop() == 0
    assert recorder.depth == 0 and recorder.dead_lettered == 0

    rows = rows_of(engines.for_connection("scoring_db"))
    assert [(r["request_id"], r["row_index"]) for r in rows] == [("req-1", i) for i in range(5)] + [("req-2", 0)]
    one = rows[1]
    assert (one["entity_key"], one["status"], one["prediction"], one["score"], one["flags"], one["reasons"]) == (
        "c0001", "scored", "yes", 0.26, "out_of_training_range:tenure", None)
    assert (one["model_name"], one["model_version"]) == ("churn", 1)
    assert json.loads(one["inputs"]) == first[1].inputs
    assert one["inputs_sha256"] == first[1].inputs_sha256 == hashlib.sha256(json.dumps(
        json.loads(one["inputs"]), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()
    received = one["received_at"]
    received = dt.datetime.fromisoformat(received) if isinstance(received, str) else received
    assert received.replace(tzinfo=None) == at.replace(tzinfo=None)
    assert str(one["day"]) == "2026-11-20"  # UTC: the job has no timezone
    last = rows[-1]
    assert (last["entity_key"], last["status"], last["score"], last["prediction"], last["reasons"]) == (
        None, "quarantined", None, None, "not_null:customer_id; be_between:tenure")
    assert recorder.written >= 6


def test_day_is_the_jobs_calendar_day_and_inputs_may_be_left_out(home: Path) -> None:
    from pipeline.serve.recorder import Recorder
    from pipeline.store import engines

    job = job_of(home, timezone="America/New_York", online={"record_inputs": False})
    recorder = Recorder(job, queue_records=100, flush_seconds=0.01)
    recorder.start()
    recorder.put(answers(2), "req-ny", dt.datetime(2026, 11, 21, 3, 0, tzinfo=dt.UTC))  # 22:00 on the 20th in NY
    assert recorder.stop() == 0
    rows = rows_of(engines.for_connection("scoring_db"))
    assert [str(r["day"]) for r in rows] == ["2026-11-20", "2026-11-20"]
    assert [r["inputs"] for r in rows] == [None, None]
    assert [r["inputs_sha256"] for r in rows] == [a.inputs_sha256 for a in answers(2)]


def test_a_full_queue_refuses_the_whole_request(home: Path) -> None:
    from pipeline.serve.recorder import Recorder, RecorderFull

    recorder = Recorder(job_of(home), queue_records=5)  # not started: nothing is written
    now = dt.datetime.now(dt.UTC)
    recorder.put(answers(3), "a", now)
    with pytest.raises(RecorderFull, match=r"3 online records wait for the database and the queue holds 5 "
                                           r"\(online.queue_records\): the 3 row\(s\) of this request"):
        recorder.put(answers(3), "b", now)
    assert recorder.depth == 3  # nothing of the refused request was queued
    recorder.put(answers(2), "c", now)
    assert recorder.depth == 5
    assert recorder.oldest_wait_seconds >= 0.0


def test_a_refused_record_is_dead_lettered_and_the_others_written(any_db: str, home: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.serve.recorder import Recorder, deadletter_records, replay
    from pipeline.store import engines

    recorder = Recorder(job_of(home), queue_records=100, batch_rows=8, flush_seconds=0.05)
    recorder.start()
    batch = answers(7)
    batch[4] = Row(4, "c0004", None, 0.5, "no", inputs={"note": PLANTED})  # status is NOT NULL: refused
    with caplog.at_level(logging.INFO, logger="pipeline.serve.recorder"):
        recorder.put(batch, "req-bad", dt.datetime.now(dt.UTC))
        assert recorder.stop() == 0
    rows = rows_of(engines.for_connection("scoring_db"))
    assert [r["row_index"] for r in rows] == [0, 1, 2, 3, 5, 6]
    assert recorder.dead_lettered == 1 and recorder.written == 6
    [dead] = deadletter_records(recorder.deadletter)
    assert (dead["request_id"], dead["row_index"], dead["status"]) == ("req-bad", 4, None)
    assert json.loads(dead["inputs"]) == {"note": PLANTED}
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [f"job online_rec: the database refused online record 4 of request req-bad (IntegrityError); "
                       f"it is in {recorder.deadletter}, not in online_rec_predictions_online"]
    assert PLANTED not in caplog.text

    assert replay(job_of(home)) == (0, 1)  # refused again: back in the dead-letter file, nothing else changed
    assert [(d["request_id"], d["row_index"]) for d in deadletter_records(recorder.deadletter)] == [("req-bad", 4)]
    assert len(rows_of(engines.for_connection("scoring_db"))) == 6


def test_an_integer_key_job_gets_a_bigint_key_and_500_rows_go_in_one_write(home: Path, pg_url: str) -> None:
    from pipeline.serve.recorder import Recorder
    from pipeline.store import engines

    job = job_of(home, entity_key_type="integer")
    recorder = Recorder(job, queue_records=10_000, batch_rows=500, flush_seconds=60)
    recorder.start()
    rows = [Row(i, 1000 + i, "scored", 0.5, "no", inputs={"customer_id": 1000 + i, "tenure": i}) for i in range(500)]
    started = time.perf_counter()
    recorder.put(rows, "bulk", dt.datetime.now(dt.UTC))  # 500 waiting: the writer takes them at once
    wait_written(recorder, 500)
    print(f"500 online records written to PostgreSQL in {time.perf_counter() - started:.3f}s")  # measured, not asserted
    assert recorder.stop() == 0
    engine = engines.for_connection("scoring_db")
    key = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("online_rec_predictions_online")}["entity_key"]
    assert isinstance(key, sa.BigInteger)
    assert [r["entity_key"] for r in rows_of(engine)][:3] == [1000, 1001, 1002]
    with engine.connect() as conn:
        comment = conn.execute(sa.text("SELECT obj_description('online_rec_predictions_online'::regclass)")).scalar()
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("online_rec_predictions_online")}
    assert comment.startswith("The online door's record")
    assert indexes == {"online_rec_predictions_online_by_day": ["day"]}


def test_the_table_goes_to_the_analysts_schema(home: Path, pg_url: str) -> None:
    from pipeline.serve.recorder import Recorder
    from pipeline.store import engines

    schema = f"a_{uuid.uuid4().hex[:10]}"
    job = job_of(home, output={"table": "online_rec_predictions", "connection": "scoring_db", "schema": schema})
    recorder = Recorder(job, queue_records=10, flush_seconds=0.01)
    recorder.start()
    recorder.put(answers(1), "req-s", dt.datetime.now(dt.UTC))
    assert recorder.stop() == 0
    engine = engines.for_connection("scoring_db")
    try:
        assert len(rows_of(engine, f"{schema}.online_rec_predictions_online")) == 1
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def test_a_table_dropped_under_the_recorder_is_made_again(home: Path) -> None:
    from pipeline.serve.recorder import Recorder
    from pipeline.store import engines

    recorder = Recorder(job_of(home), queue_records=100, flush_seconds=0.01)
    recorder.start()
    recorder.put(answers(2), "first", dt.datetime.now(dt.UTC))
    wait_written(recorder, 2)
    engine = engines.for_connection("scoring_db")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE online_rec_predictions_online")
    recorder.put(answers(3), "second", dt.datetime.now(dt.UTC))
    assert recorder.stop() == 0
    assert recorder.dead_lettered == 0 and recorder.written == 5
    assert [(r["request_id"], r["row_index"]) for r in rows_of(engine)] == [("second", i) for i in range(3)]
