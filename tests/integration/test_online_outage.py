"""The online record survives a database outage (issue 27, point 4): a PRIVATE PostgreSQL (initdb + pg_ctl on a
free port, as a non-root user) is stopped while the recorder takes records and started again; every record put
is then in <output.table>_online exactly once, and the log said how many waited, without a value. The shared
server at 127.0.0.1:5432 is never touched."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.test_online_records import PLANTED, Row

PASSWORD = "S3cretOutagePW"  # in the connection's URL: never in a log line
pytestmark = pytest.mark.postgres


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL server of this test module: its URL, and stop/start."""

    data: Path
    port: int
    run_as: list[str]
    pg_ctl: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*self.run_as, self.pg_ctl, "-D", str(self.data), *args], check=True, capture_output=True,
                       timeout=60)

    def start(self) -> None:
        self._ctl("-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "-l",
                  str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    """initdb + pg_ctl in a temporary folder, as the ``postgres`` user when the tests run as root."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("initdb/pg_ctl not found: the outage test needs PostgreSQL's server binaries")
    data = Path(tempfile.mkdtemp(prefix="scoring-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(data)
            pytest.skip("running as root without a 'postgres' user to run a private server as")
        os.chown(data, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    server = PrivatePostgres(data, _free_port(), run_as, pg_ctl)
    server.start()
    try:
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def on_private(private_pg: PrivatePostgres, home: Path, monkeypatch: pytest.MonkeyPatch) -> PrivatePostgres:
    """The job's output connection points at the private server (running, its online table dropped)."""
    from pipeline.store import engines

    if not private_pg.running():
        private_pg.start()
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", private_pg.url)
    engines.engine_for.cache_clear()
    with sa.create_engine(private_pg.url.replace("postgresql://", "postgresql+psycopg://")).begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS online_out_predictions_online")
    return private_pg


def until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll until ``condition`` holds (not a timed assertion: the bound only ends a hung test)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {seconds}s")
        time.sleep(0.05)


def request(n: int, tag: str) -> list[Row]:
    return [Row(i, f"{tag}-{i}", "scored", 0.5, "no", inputs={"customer_id": f"{tag}-{i}", "note": PLANTED})
            for i in range(n)]


def stored(url: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT request_id, row_index FROM online_out_predictions_online"))]
    finally:
        engine.dispose()


def test_no_record_is_lost_while_the_database_is_down(on_private: PrivatePostgres, home: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.serve.recorder import Recorder

    recorder = Recorder(_job(home), queue_records=10_000,
                        batch_rows=50, flush_seconds=0.05)
    put: list[tuple[str, int]] = []

    def answer(n: int, tag: str) -> None:
        recorder.put(request(n, tag), tag, dt.datetime.now(dt.UTC))
        put.extend((tag, i) for i in range(n))

    with caplog.at_level(logging.INFO, logger="pipeline.serve.recorder"):
        recorder.start()
        for i in range(3):
            answer(30, f"before-{i}")
        until(lambda: recorder.written == 90, "the first 90 records to be written")

        on_private.stop()
        for i in range(5):
            answer(40, f"during-{i}")  # the door keeps answering: put never raises, the records wait
        assert recorder.depth == 200
        until(lambda: recorder.failures >= 2, "the writer to find the database down")
        answer(10, "during-5")
        assert recorder.depth == 210 and recorder.written == 90
        assert recorder.oldest_wait_seconds > 0

        on_private.start()
        until(lambda: recorder.depth == 0, "the waiting records to be written once the database is back")
        assert recorder.stop() == 0

    rows = stored(on_private.url)
    assert len(rows) == len(put) == 300  # every record once: none lost, none twice
    assert sorted(rows) == sorted(put)
    assert recorder.written == 300 and recorder.dead_lettered == 0

    messages = [r for r in caplog.records if r.name == "pipeline.serve.recorder"]
    waiting = [r.getMessage() for r in messages if r.levelno == logging.WARNING]
    assert waiting, "a WARNING when the outage started"
    assert waiting[0].startswith("job online_out: ")
    assert " online records wait for the database (oldest " in waiting[0]
    assert "OperationalError: " in waiting[0]
    assert len(waiting) <= 2  # one when it starts, then at most every 30 s
    back = [r.getMessage() for r in messages if "the database is back" in r.getMessage()]
    assert len(back) == 1 and back[0].startswith("job online_out: the database is back after ")
    assert " online records written since, " in back[0]
    assert PLANTED not in caplog.text and PASSWORD not in caplog.text and "during-" not in caplog.text


def test_records_left_at_stop_go_to_the_dead_letter_file(on_private: PrivatePostgres, home: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.serve.recorder import Recorder, RecorderFull, deadletter_records, replay

    recorder = Recorder(_job(home), queue_records=100, batch_rows=50, flush_seconds=0.05)
    recorder.start()
    recorder.put(request(5, "ok"), "ok", dt.datetime.now(dt.UTC))
    until(lambda: recorder.written == 5, "the first records to be written", 15)
    on_private.stop()
    recorder.put(request(7, "late"), "late", dt.datetime.now(dt.UTC))
    until(lambda: recorder.failures >= 1, "the writer to find the database down")
    with pytest.raises(RecorderFull, match="queue holds 100"):
        recorder.put(request(94, "over"), "over", dt.datetime.now(dt.UTC))
    with caplog.at_level(logging.INFO, logger="pipeline.serve.recorder"):
        assert recorder.stop(timeout=1.0) == 7
    dead = deadletter_records(recorder.deadletter)
    assert sorted((d["request_id"], d["row_index"]) for d in dead) == [("late", i) for i in range(7)]
    assert {d["dead_letter_reason"] for d in dead} == {"not written before the recorder stopped"}
    assert ("job online_out: 7 online record(s) were not written to online_out_predictions_online before the "
            "recorder stopped") in caplog.text
    assert str(recorder.deadletter) in caplog.text and PLANTED not in caplog.text
    assert "`scoring online replay online_out`" in caplog.text
    with pytest.raises(RecorderFull, match="the recorder is stopped"):
        recorder.put(request(1, "after"), "after", dt.datetime.now(dt.UTC))

    on_private.start()  # the database is back: the dead letters are loaded, the 5 written before kept once
    assert replay(_job(home)) == (7, 0)
    assert sorted(stored(on_private.url)) == sorted([("ok", i) for i in range(5)] + [("late", i) for i in range(7)])
    assert not recorder.deadletter.exists() and not list(recorder.deadletter.parent.glob("*.jsonl"))
    assert replay(_job(home)) == (0, 0)


def _job(home: Path) -> Any:
    from pipeline.config import load_job
    from tests.conftest import write_job

    return load_job(write_job(home, "online_out"))


def test_the_server_keeps_answering_through_the_outage_over_http(on_private: PrivatePostgres, home: Path) -> None:
    """The same outage seen by a client: a real uvicorn and httpx (the app's own test helpers), 200 while the
    database is down, the queue in /metrics, every answer recorded once it is back, 503 when the queue is full."""
    from pipeline.config import load_job
    from tests.conftest import write_job
    from tests.integration.test_serve_app import client, rows, running

    job = load_job(write_job(home, "online_out", online={"queue_records": 60}))
    path = "/v1/jobs/online_out:score"

    def queued(http: Any) -> float:
        line = next(x for x in http.get("/metrics").text.splitlines()
                    if x.startswith('scoring_online_queue_records{job="online_out"}'))
        return float(line.rsplit(" ", 1)[1])

    answered: list[str] = []
    with running(job) as service, client(service) as http:
        for _ in range(2):
            reply = http.post(path, json=rows(10))
            assert reply.status_code == 200
            answered.append(reply.headers["X-Request-ID"])
        until(lambda: service.recorder.written == 20, "the first answers to be recorded")

        on_private.stop()
        for _ in range(5):
            reply = http.post(path, json=rows(10))
            assert reply.status_code == 200, reply.text  # the door answers while the database is down
            answered.append(reply.headers["X-Request-ID"])
        assert queued(http) == 50
        assert http.get("/health/ready").status_code == 200
        full = http.post(path, json=rows(11))  # 50 waiting + 11 > online.queue_records 60: never an unrecorded answer
        assert (full.status_code, full.json()["error"], full.headers["Retry-After"]) == (503, "queue_full", "5")

        on_private.start()
        until(lambda: queued(http) == 0, "the waiting answers to be recorded once the database is back")
    recorded = stored(on_private.url)
    assert len(recorded) == 70 and sorted(recorded) == sorted((r, i) for r in answered for i in range(10))
    assert full.headers["X-Request-ID"] not in {r for r, _ in recorded}
