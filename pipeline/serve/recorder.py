"""Every answer on record: the door's results go to ``<output.table>_online``, written off the request path.

``put`` queues a request's rows in memory (never blocking; ``RecorderFull`` when the bounded queue cannot
take them all, so a request is never answered without its record); a writer thread writes them in batches,
one transaction each. When the database is down the records wait at the head of the queue and the thread
tries again (0.2 s doubling to 5 s), saying in the log how many wait; none is lost while the queue holds. A
record the database refuses (a data error) is split from its batch and written to a dead-letter JSONL file,
as is whatever is left when the recorder stops, so nothing is lost silently.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import settings
from pipeline.errors import ConfigError
from pipeline.redact import redact
from pipeline.store import engines, online

if TYPE_CHECKING:
    from pipeline.config import JobConfig

log = logging.getLogger(__name__)

BACKOFF_S = (0.2, 5.0)  # first pause after a failed write, doubling up to the second
REPORT_EVERY_S = 30.0  # during an outage, a WARNING at most this often
KEY_TYPES = {"string": "str", "integer": "int"}  # the job file's entity_key_type -> online.KEY_TYPES


class RecorderFull(Exception):
    """The queue cannot take all of a request's rows (or the recorder is stopped): nothing of it was queued."""


class Row(Protocol):
    """What the recorder reads of a door's result (``pipeline.serve.door.RowResult``)."""

    index: int
    key: Any
    status: str
    score: float | None
    prediction: str | None
    flags: list[str]
    reasons: list[str]
    model_name: str | None
    model_version: int | None
    inputs: dict[str, Any]
    inputs_sha256: str
    arm: str | None  # model.split's arm of the row's entity (None: no split, or no key)


class Unavailable(Exception):
    """The database cannot be reached (down, refused, timed out): the records wait."""


class Recorder:
    """A job's online records: a bounded queue in memory and a thread writing it to ``<output.table>_online``."""

    def __init__(self, job: JobConfig, *, engine_factory: Callable[[], Engine] | None = None, queue_records: int,
                 batch_rows: int = 500, flush_seconds: float = 0.2, key_type: str | None = None) -> None:
        if job.output.table is None:
            raise ValueError(f"job {job.job_id}: the online door records to <output.table>_online and the job "
                             "file has no output.table: set one")
        self.job = job
        self.table = job.output.table
        self.engine_factory = engine_factory or (lambda: engines.for_connection(job.output.connection))
        self.capacity, self.batch_rows, self.flush_seconds = int(queue_records), max(1, int(batch_rows)), flush_seconds
        self.key_type = KEY_TYPES.get(key_type or "", key_type) or KEY_TYPES.get(job.entity_key_type or "")
        self.record_inputs = job.online.record_inputs
        self.deadletter = settings.deadletter_dir() / "online" / f"{settings.safe_name(job.job_id)}.jsonl"
        self.written = self.failures = self.dead_lettered = 0
        self._queue: collections.deque[tuple[float, dict[str, Any]]] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()  # stop() called: write without waiting for flush_seconds
        self._gone = threading.Event()  # stop() is done waiting: the writer gives up
        self._closed = False
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._insert: sa.TextClause | None = None
        self._table_key = "str"
        self._outage: _Outage | None = None

    # -- the request path ------------------------------------------------------------------------------------
    def put(self, rows: Sequence[Row], request_id: str, received_at: dt.datetime) -> None:
        """Queue a request's rows; never blocks. RecorderFull when the queue cannot take all of them."""
        records = [self._record(row, request_id, received_at) for row in rows]
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise RecorderFull(f"job {self.job.job_id}: the recorder is stopped; no record can be taken")
            if len(self._queue) + len(records) > self.capacity:
                raise RecorderFull(
                    f"job {self.job.job_id}: {len(self._queue)} online records wait for the database and the queue "
                    f"holds {self.capacity} (online.queue_records): the {len(records)} row(s) of this request cannot "
                    "be recorded, so they are not answered. Retry later; see the recorder's log for the database.")
            was_empty = not self._queue
            self._queue.extend((now, r) for r in records)
            if was_empty or len(self._queue) >= self.batch_rows:  # the writer's flush_seconds start, or a batch is full
                self._cond.notify()

    def _record(self, row: Row, request_id: str, received_at: dt.datetime) -> dict[str, Any]:
        """One row of ``<output.table>_online`` (values, bound when written)."""
        at = received_at if received_at.tzinfo else received_at.replace(tzinfo=dt.UTC)
        return {"request_id": request_id, "row_index": int(row.index), "entity_key": row.key,
                "received_at": at.astimezone(dt.UTC).replace(tzinfo=None), "day": at.astimezone(self.job.tz).date(),
                "model_name": row.model_name, "model_version": row.model_version, "status": row.status,
                "prediction": row.prediction, "score": row.score, "flags": "; ".join(row.flags) or None,
                "reasons": "; ".join(row.reasons) or None,
                "inputs": _json(row.inputs) if self.record_inputs else None, "inputs_sha256": row.inputs_sha256,
                "arm": getattr(row, "arm", None)}

    @property
    def depth(self) -> int:
        """Records waiting."""
        return len(self._queue)

    @property
    def oldest_wait_seconds(self) -> float:
        """How long the oldest waiting record has waited (0.0 when none waits)."""
        try:
            return max(0.0, time.monotonic() - self._queue[0][0])
        except IndexError:
            return 0.0

    # -- the lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Make ``<output.table>_online`` if missing (a database down now: the writer does it when it is back),
        and start the writer thread."""
        try:
            self._ready()
        except Unavailable as exc:
            log.warning("job %s: the online table %s cannot be prepared now (%s); the door answers and the "
                        "records wait until the database is back", self.job.job_id, online.table_of(self.table), exc)
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.job.job_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> int:
        """Write what can be written within ``timeout`` seconds; what is left goes to the dead-letter file.
        Returns the number of records left unwritten."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._gone.set()
        with self._cond:
            self._closed = True
            left = [r for _, r in self._queue]
            self._queue.clear()
        if left:
            self._dead_letter(left, "not written before the recorder stopped")
            log.error("job %s: %d online record(s) were not written to %s before the recorder stopped (the "
                      "database was unreachable or slow); they are in %s, one JSON object per line: load them "
                      "into the table once it is back with `scoring online replay %s`", self.job.job_id, len(left),
                      online.table_of(self.table), self.deadletter, self.job.job_id)
        else:
            log.info("job %s: recorder stopped, every online record written (%d in all)", self.job.job_id,
                     self.written)
        return len(left)

    # -- the writer ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        """Take up to batch_rows records (or whatever waited flush_seconds) and write them, until stopped."""
        pause = BACKOFF_S[0]
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._ready()
                self._write(batch)
            except Exception as exc:  # Unavailable; or the dead-letter file cannot be written: tried again
                self.failures += 1
                self._outage_note(exc if isinstance(exc, Unavailable) else Unavailable(_error_text(exc)))
                if self._gone.wait(pause):  # stop() waited long enough: what is left is dead-lettered
                    return
                pause = min(pause * 2, BACKOFF_S[1])
                continue
            pause = BACKOFF_S[0]
            self._recovered()

    def _next_batch(self) -> list[dict[str, Any]] | None:
        """The records at the head of the queue (left there until written); None when stopped and empty."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._queue and (self._stopping.is_set() or len(self._queue) >= self.batch_rows
                                    or time.monotonic() - self._queue[0][0] >= self.flush_seconds):
                    return [r for _, r in itertools.islice(self._queue, self.batch_rows)]
                if self._stopping.is_set():
                    return None
                wait = self.flush_seconds - (time.monotonic() - self._queue[0][0]) if self._queue else None
                self._cond.wait(wait)

    def _done(self, n: int) -> None:
        """The first ``n`` records of the queue are written (or dead-lettered): off the queue."""
        with self._cond:
            for _ in range(min(n, len(self._queue))):
                self._queue.popleft()

    def _ready(self) -> None:
        """The engine, the online table and its insert, once (again after a refused batch)."""
        if self._insert is not None:
            return
        try:
            self._engine = self._engine or self.engine_factory()
            self._table_key = online.ensure_online(self._engine, self.table, self._key_type(self._engine),
                                                   self.job.output.schema_)
            self._insert = online.insert_statement(self._engine, self.table, self.job.output.schema_)
        except Exception as exc:  # down, refused, or a table it may not make: the records wait, the log says why
            self._engine = None if isinstance(exc, ConfigError) else self._engine
            raise Unavailable(_error_text(exc)) from exc

    def _key_type(self, engine: Engine) -> str:
        """A new table's key type: the caller's, the job file's, the predictions table's key, else text."""
        if self.key_type:
            return self.key_type
        with engine.connect() as conn:
            return online.key_type_of(conn, self.table, self.job.entity_key, self.job.output.schema_) or "str"

    def _write(self, batch: list[dict[str, Any]], fresh: bool = True) -> None:
        """Write the batch in one transaction; a batch the database refuses is tried once more with the table made
        again (it may have been dropped), then split down to the refused records, which go to the dead-letter
        file. Unavailable: the records not yet written stay at the head of the queue."""
        try:
            self._insert_all(batch)
        except Unavailable:
            raise
        except Exception as exc:  # a data error: the database refused a value (or the table changed under us)
            self.failures += 1
            if fresh:
                self._insert = None
                self._ready()
                self._write(batch, fresh=False)
            elif len(batch) == 1:
                self._refused(batch[0], exc)
                self._done(1)
            else:
                self._write(batch[:len(batch) // 2], fresh=False)
                self._write(batch[len(batch) // 2:], fresh=False)
            return
        self.written += len(batch)
        self._done(len(batch))

    def _insert_all(self, batch: list[dict[str, Any]]) -> None:
        """One transaction; a connection that fails is Unavailable."""
        assert self._engine is not None and self._insert is not None
        params = [dict(r, entity_key=_key(r["entity_key"], self._table_key)) for r in batch]
        connected = False
        try:
            with self._engine.begin() as conn:
                connected = True
                online.insert(conn, params, self._insert)
        except sa.exc.TimeoutError as exc:  # no connection free in the pool in time
            raise Unavailable(_error_text(exc)) from exc
        except sa.exc.DBAPIError as exc:
            if not (isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or exc.connection_invalidated):
                raise  # a data error: the caller splits the batch
            if connected:  # the database answered: the table may be gone (SQLite: "no such table"), made again
                self._insert = None
            raise Unavailable(_error_text(exc)) from exc

    def _refused(self, record: dict[str, Any], exc: Exception) -> None:
        """A record the database refuses: to the dead-letter file, logged without its values."""
        self._dead_letter([record], type(exc).__name__)
        log.error("job %s: the database refused online record %d of request %s (%s); it is in %s, not in %s",
                  self.job.job_id, record["row_index"], record["request_id"], type(exc).__name__, self.deadletter,
                  online.table_of(self.table))  # no value: the reason is the error's class

    def _dead_letter(self, records: list[dict[str, Any]], why: str) -> None:
        """Append records to the job's dead-letter JSONL file (one object a line, with why)."""
        self.deadletter.parent.mkdir(parents=True, exist_ok=True)
        with self.deadletter.open("a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps({**r, "dead_letter_reason": why}, default=str, ensure_ascii=True) + "\n")
        self.dead_lettered += len(records)

    # -- the outage's log lines ----------------------------------------------------------------------------
    def _outage_note(self, exc: Unavailable) -> None:
        """One WARNING when an outage starts, then at most every REPORT_EVERY_S."""
        now = time.monotonic()
        if self._outage is None:
            self._outage = _Outage(started=now, written_before=self.written, reported=now)
        elif now - self._outage.reported < REPORT_EVERY_S:
            return
        self._outage.reported = now
        log.warning("job %s: %d online records wait for the database (oldest %.1fs): %s", self.job.job_id,
                    self.depth, self.oldest_wait_seconds, exc)

    def _recovered(self) -> None:
        """An INFO when the first write after an outage succeeds."""
        if self._outage is None:
            return
        outage, self._outage = self._outage, None
        log.info("job %s: the database is back after %.1fs; %d online records written since, %d waiting",
                 self.job.job_id, time.monotonic() - outage.started, self.written - outage.written_before, self.depth)


class _Outage:
    """When the database went away, how many records were written then, when it was last reported."""

    def __init__(self, started: float, written_before: int, reported: float) -> None:
        self.started, self.written_before, self.reported = started, written_before, reported


def _json(inputs: dict[str, Any]) -> str:
    """A row's inputs as JSON text: non-ASCII escaped (a lone surrogate or NUL is stored, never refused)."""
    return json.dumps(inputs, ensure_ascii=True, separators=(",", ":"), default=str)


def _key(value: Any, kind: str) -> Any:
    """The key in the table's type (an integer key of a text table as its digits; text digits of a BIGINT one)."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value)
    if kind == "str":
        return value if isinstance(value, str) else str(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    return value


def _error_text(exc: BaseException) -> str:
    """The error's class and first line, URLs and credentials redacted (no value of a row is in it)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(f"{type(getattr(exc, 'orig', None) or exc).__name__}: {text[0] if text else ''}")


def deadletter_records(path: Path) -> list[dict[str, Any]]:
    """The records of a dead-letter file (for loading them back, and for tests)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def replay(job: JobConfig, *, engine_factory: Callable[[], Engine] | None = None,
           timeout: float = 60.0) -> tuple[int, int]:
    """Load a job's dead-letter records back into ``<output.table>_online`` (``scoring online replay``): a record
    there already is skipped; one the database refuses again, or all of them when it cannot be reached within
    ``timeout`` seconds, goes back to the dead-letter file. Returns (records written, records dead-lettered again)."""
    recorder = Recorder(job, engine_factory=engine_factory, queue_records=1, flush_seconds=0.0)
    if not recorder.deadletter.exists():
        log.info("job %s: no dead-letter file of online records (%s)", job.job_id, recorder.deadletter)
        return 0, 0
    taken = recorder.deadletter.with_name(f"{recorder.deadletter.stem}.replaying-{time.time_ns()}.jsonl")
    recorder.deadletter.rename(taken)  # what the recorder dead-letters from now on goes to a new file
    records = [_restored(r) for r in deadletter_records(taken)]
    recorder.capacity = max(1, len(records))
    with recorder._cond:
        recorder._queue.extend((time.monotonic(), r) for r in records)
    recorder.start()
    recorder.stop(timeout)
    taken.unlink()  # every record is in the table, or in the dead-letter file again
    log.info("job %s: %d dead-lettered online record(s) loaded into %s, %d dead-lettered again", job.job_id,
             recorder.written, online.table_of(recorder.table), recorder.dead_lettered)
    return recorder.written, recorder.dead_lettered


def _restored(line: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter line as the record it was (its times and day parsed back)."""
    record = {k: line.get(k) for k in online.COLUMNS}
    record["received_at"] = dt.datetime.fromisoformat(str(record["received_at"]))
    record["day"] = dt.date.fromisoformat(str(record["day"]))
    return record
