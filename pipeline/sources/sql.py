"""A sql source (``source.kind: sql``): a partition read by a SQL query.

The job's query (``source.query``, or the file ``source.query_file`` names) returns one
partition's rows; ``:partition_date`` in it is bound to the partition's date, never pasted
into the text (a ``date`` on PostgreSQL, ``'YYYY-MM-DD'`` text on SQLite). The placeholder is
found by ``sqlparse``, so the same characters in a string, a comment or a ``::date`` cast are
left alone. Rows stream in Arrow record batches, never all at once: on PostgreSQL through
ADBC's binary COPY of the result (the values are settings of the transaction, see ``bind``),
on SQLite through ``fetchmany``. Memory stays that of a batch whatever the partition's size.

Readiness (``wait_for_partition``): ``source.ready_query``, bound the same way, is ready when
its first value is true; by default, whether the query returns a row at all
(``SELECT EXISTS (<query>)``, which stops at the first row).

Every query waits at most ``source.lock_timeout_seconds`` for a lock and runs at most
``source.statement_timeout_seconds`` (PostgreSQL's ``lock_timeout`` and ``statement_timeout`` for
its transaction; SQLite's busy timeout and a progress handler), so an upstream ``TRUNCATE`` held
open never makes a run wait forever. A sharded run's plan reads the query once into the run's
staging and its shards read row ranges of that copy (``plan``): one statement, one snapshot, for
every shard.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline import settings, steps
from pipeline.errors import (
    ConfigError,
    InputError,
    PartitionNotFoundError,
    ScoringError,
    StagingError,
    StoreError,
)
from pipeline.kernels.conform import (
    IngestResult,
    Reading,
    Wanted,
    check_contract_names,
    check_wanted,
    conform_all,
    ingested_schema,
    key_type_of,
    renamed_schema,
)
from pipeline.keys import KEY_TYPES, entity_key_type
from pipeline.keys import duplicates as _duplicates
from pipeline.redact import redact
from pipeline.sqltext import PARAMETER, _placeholders, check_query, clean
from pipeline.staging import IPC_OPTIONS
from pipeline.store import engines

if TYPE_CHECKING:
    from pipeline.config import JobConfig
    from pipeline.connections import Resolver
    from pipeline.staging import RunSpec

log = logging.getLogger(__name__)

BATCH_BYTES = 32 << 20  # ADBC's hint for the size of the batches it returns (re-cut to batch_rows after)


PG_TYPES = {dt.date: "date", int: "bigint", float: "double precision", str: "text"}


def bind(query: str, dialect: str, day: dt.date, extra: dict[str, Any] | None = None) -> tuple[str, list[Any]]:
    """The query with its placeholders in the driver's terms, and the values they take.

    ``:partition_date`` is the day; ``extra`` holds the values of the pipeline's own placeholders (a
    shard's key range), never of the job's query. SQLite: ``?`` and one value each. PostgreSQL: each
    placeholder reads a setting of the transaction, ``CAST(current_setting('scoring.partition_date') AS
    date)``, and the values are ``(setting, text)`` pairs that ``_apply`` binds with ``set_config``:
    ADBC then streams the query through COPY, which it does only for a query without parameters.
    """
    values = {PARAMETER: day, **{f":{k}": v for k, v in (extra or {}).items()}}
    out, last, params, seen = [], 0, [], set()
    for offset, name in _placeholders(query):
        out.append(query[last:offset])
        value = values[name]
        if dialect == "postgresql":
            setting = f"scoring.{name[1:]}"
            out.append(f"CAST(current_setting('{setting}') AS {PG_TYPES[type(value)]})")
            if name not in seen:
                params.append((setting, value.isoformat() if isinstance(value, dt.date) else str(value)))
                seen.add(name)
        else:
            out.append("?")
            params.append(value.isoformat() if isinstance(value, dt.date) else value)
        last = offset + len(name)
    out.append(query[last:])
    return "".join(out).strip().rstrip(";") + "\n", params  # a final -- comment must not swallow what follows


def _apply(cur: Any, params: list[tuple[str, str]]) -> None:
    """PostgreSQL: the placeholders' values as settings of the current transaction (bound, never in the SQL)."""
    for setting, value in params:
        cur.execute("SELECT set_config($1, $2, true)", [setting, value])
        cur.fetchall()


def query_text(job: JobConfig) -> str:
    """The job's query: ``source.query`` or the content of ``source.query_file``."""
    src = job.source
    if src.query is not None:
        return clean(src.query)
    path = Path(str(src.query_file))
    path = path if path.is_absolute() else settings.home() / path
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"job {job.job_id}: cannot read source.query_file {path}: {exc.strerror or exc}. "
                          "Fix the path (relative to SCORING_HOME) in the job file.") from None
    try:
        check_query(text, f"source.query_file {path}", need_date=True)
    except ValueError as exc:
        raise ConfigError(f"job {job.job_id}: {exc}") from None
    return clean(text)


def _inner(job: JobConfig) -> str:
    """The job's query as a subquery's text: no final semicolon, and a line end before the caller's ``)`` (the
    query may end with a ``--`` comment)."""
    return query_text(job) + "\n"


def describe(job: JobConfig) -> str:
    """How messages name the source: the query (its file, or its first words) and the connection."""
    src = job.source
    if src.query_file is not None:
        what = f"source.query_file {src.query_file}"
    else:
        words = " ".join(str(src.query).split())
        what = f"source.query '{words if len(words) <= 80 else words[:77] + '...'}'"
    return f"the query of {what} on connection {job.source_connection!r}"


def _engine(job: JobConfig, resolver: Resolver | None) -> Any:
    return engines.for_connection(job.source_connection, resolver)


TRANSIENT = ("locked", "busy", "unable to open", "connection", "timeout", "timed out", "terminat", "recovery",
             "could not connect", "server closed")

def limits(job: JobConfig) -> tuple[float, float]:
    """How long a source query may wait for a lock, and run, in seconds (``source.lock_timeout_seconds``,
    ``source.statement_timeout_seconds``)."""
    src = job.source
    return float(src.lock_timeout_seconds), float(src.statement_timeout_seconds)


def _failed(job: JobConfig, day: dt.date, exc: Exception, doing: str) -> ScoringError:
    """The query's error: a fault of the query (syntax, a missing table or column) fails at once; a database
    that is down, locked or restarting is a ``StoreError``, which the task's retries can outlast. A lock
    waited for longer than the job allows is retryable (the lock is another transaction's, and ends); a query
    that ran out of time is not (a retry runs the same query)."""
    detail = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    # DB-API classes: ADBC says OperationalError for a connection or server fault, ProgrammingError for the
    # query's; sqlite3 says OperationalError for both, so its message decides
    sqlite = type(exc).__module__.startswith("sqlite3")
    state, low = getattr(exc, "sqlstate", None), str(exc).lower()
    lock_s, statement_s = limits(job)
    if state == "55P03" or "due to lock timeout" in low or (sqlite and ("locked" in low or "busy" in low)):
        return StoreError(
            f"partition {day}: {doing} {describe(job)} failed: {detail}. It waited more than "
            f"source.lock_timeout_seconds ({lock_s:g} s) for a lock: another transaction holds a table the query reads (a TRUNCATE, an ALTER TABLE, a rewrite "
            "of the table in one transaction) and nothing was read. The task's retries try again; if the upstream "
            "load holds the table longer than that, make source.ready_query wait for the load to finish, or raise "
            "source.lock_timeout_seconds in the job file.")
    if "due to statement timeout" in low or (sqlite and "interrupted" in low):  # PostgreSQL's SQLSTATE 57014
        return InputError(
            f"partition {day}: {doing} {describe(job)} failed: {detail}. It ran longer than "
            f"source.statement_timeout_seconds ({statement_s:g} s, the whole read) and was cancelled; nothing was published. A retry would run the "
            "same query: make it faster (e.g. an index on the column compared with :partition_date) or raise "
            "source.statement_timeout_seconds in the job file, then re-run the partition.")
    server = type(exc).__name__ in ("OperationalError", "InterfaceError", "InternalError")
    if server and (not sqlite or any(word in detail.lower() for word in TRANSIENT)):
        return StoreError(f"partition {day}: {doing} {describe(job)} failed: {detail}. The database did not answer "
                          "as it should; the task's retries try again (clear the task once it is back).")
    return InputError(f"partition {day}: {doing} {describe(job)} failed: {detail}. Fix the query in the job file "
                      "(or its file) or the connection, then re-run the partition.")


def batches(job: JobConfig, day: dt.date, batch_rows: int, resolver: Resolver | None = None,
            query: str | None = None, extra: dict[str, Any] | None = None,
            doing: str = "reading the rows of") -> Iterator[pa.Table]:
    """The query's rows for ``day`` (or those of ``query``, the pipeline's own wrapping of it, with ``extra``'s
    values bound), at most ``batch_rows`` at a time, in the order the database returns them."""
    engine = _engine(job, resolver)
    sql, params = bind(query or query_text(job), engine.dialect.name, day, extra)
    lock_s, statement_s = limits(job)
    if engine.dialect.name == "postgresql":  # a date compared with a timestamptz: midnight in the job's zone
        # at least 1 ms each: 0 would be PostgreSQL's "no limit"
        params = [("TimeZone", job.timezone), ("lock_timeout", f"{max(1, round(lock_s * 1000))}ms"),
                  ("statement_timeout", f"{max(1, round(statement_s * 1000))}ms"), *params]
        tables = _postgres(engine, sql, params, batch_rows)
    else:
        tables = _sqlite(engine, sql, params, batch_rows, lock_s, statement_s)
    try:
        for table in tables:
            for start in range(0, max(table.num_rows, 1), batch_rows):  # an empty result: its columns
                yield table.slice(start, batch_rows)
    except ScoringError:
        raise
    except Exception as exc:  # the driver's error (a missing table, a syntax error, a refused connection)
        raise _failed(job, day, exc, doing) from None


def _postgres(engine: Any, sql: str, params: list[Any], batch_rows: int) -> Iterator[pa.Table]:
    """The query's rows through ADBC's binary COPY, as Arrow batches of about ``BATCH_BYTES``.

    The values are settings of the transaction (``bind``): ADBC streams a query without parameters
    through COPY but returns one with bound parameters whole (measured: 970 MB for 3M rows of six
    columns, against 250 MB streamed). 1M rows of the bench's 16 columns: 2.2 s, against 3.3 s
    through a server-side cursor fetched in batches.
    """
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(engines.libpq_uri(engine)) as conn, conn.cursor() as cur:
        _apply(cur, params)
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        empty = True
        for batch in reader:
            empty = False
            yield pa.Table.from_batches([batch])
        if empty:
            yield reader.schema.empty_table()
        conn.rollback()  # read only: nothing to keep


def _sqlite(engine: Any, sql: str, params: list[Any], batch_rows: int, lock_s: float,
            statement_s: float) -> Iterator[pa.Table]:
    """The query's rows through ``fetchmany``; a lock waited for at most ``lock_s`` (the busy timeout), the
    whole read at most ``statement_s`` (a progress handler interrupts it: "interrupted")."""
    raw = engine.raw_connection()
    conn = raw.driver_connection
    cur = raw.cursor()
    (busy,) = cur.execute("PRAGMA busy_timeout").fetchone()
    deadline = time.monotonic() + statement_s
    try:
        cur.execute(f"PRAGMA busy_timeout = {round(lock_s * 1000)}")
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        cur.execute(sql, params)
        names = [d[0] for d in cur.description or []]
        empty = True
        while rows := cur.fetchmany(batch_rows):
            empty = False
            yield pa.table({name: _column(values) for name, values in zip(names, zip(*rows, strict=True),
                                                                           strict=True)})
        if empty:
            yield pa.table({name: pa.nulls(0) for name in names})
    finally:
        try:  # the pool's connection as it was
            conn.set_progress_handler(None, 0)
            cur.close()
            raw.cursor().execute(f"PRAGMA busy_timeout = {int(busy)}")
        except Exception:  # noqa: BLE001 - a broken connection: the pool drops it instead, the first error stands
            raw.invalidate()
        raw.close()


def _column(values: tuple[Any, ...]) -> pa.Array:
    """One column of SQLite rows: its values' type, or their text when a column mixes types (SQLite allows it)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def ready(job: JobConfig, day: dt.date, resolver: Resolver | None = None) -> bool:
    """Whether the partition is there: ``source.ready_query``'s first value, else whether the query has a row."""
    query = clean(job.source.ready_query) if job.source.ready_query else f"SELECT EXISTS ({_inner(job)})"
    rows = batches(job, day, 1, resolver, query, doing="asking whether the partition is ready with")
    try:  # the first row alone; closing the reader ends the query
        first = next(rows)
    finally:
        rows.close()
    return bool(first.num_rows and first.num_columns and first.column(0)[0].as_py())


def ready_description(job: JobConfig) -> str:
    """What wait_for_partition asks, for its log lines and its timeout message."""
    if job.source.ready_query:
        words = " ".join(job.source.ready_query.split())
        return f"source.ready_query '{words if len(words) <= 120 else words[:117] + '...'}' on connection " \
               f"{job.source_connection!r}"
    return f"whether {describe(job)} returns a row"


# -- shards: one read of the source, staged by the plan -------------------------------------
SOURCE_PREFIX = "source"  # the plan's copy of the partition: <run dir>/source-NNN.arrow


def _key_column(job: JobConfig) -> str:
    """The entity key's name in the query's rows (the export's name when source.rename maps it)."""
    return next((old for old, new in job.source.rename.items() if new == job.entity_key), job.entity_key)


class _Segments:
    """The query's batches into Arrow IPC files of the run's folder, a new file whenever the batches' schema
    changes (SQLite returns a batch's own types), each file's batch sizes recorded for the shards' slices."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.segments: list[dict[str, Any]] = []
        self._writer: Any = None
        self._sink: Any = None
        self._schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        if not table.num_rows and self._schema is not None:  # only an empty result's columns are kept
            return
        if self._schema is None or not table.schema.equals(self._schema, check_metadata=True):
            self.close()
            name = f"{SOURCE_PREFIX}-{len(self.segments):03d}.arrow"
            self._sink = pa.OSFile(str(self.folder / f".{name}.tmp"), "wb")
            self._writer = ipc.new_file(self._sink, table.schema, options=IPC_OPTIONS)
            self._schema = table.schema
            self.segments.append({"file": name, "batches": []})
        for batch in table.to_batches():
            if batch.num_rows:
                self._writer.write_batch(batch)
                self.segments[-1]["batches"].append(batch.num_rows)

    def abort(self) -> None:
        """A read that failed: close the file being written, and keep none of it."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._sink.close()
            (self.folder / f".{self.segments[-1]['file']}.tmp").unlink(missing_ok=True)
            self._writer = self._sink = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            name = self.segments[-1]["file"]
            (self.folder / f".{name}.tmp").replace(self.folder / name)
            self._writer = self._sink = None


def plan(ctx: Any) -> tuple[Any, list[Any]]:
    """Read a sql source's partition once, into the run's staging; split its rows into shards; find the
    duplicate keys.

    Every shard of the run reads its share of that one copy, never the source: the query ran once, as one
    statement (one snapshot of the database), so the shards see one state of a table that is being
    rewritten, and a retried shard reads the rows it read the first time. The shards' shares are
    consecutive row ranges of equal size (the plan records each staged batch's size, so a shard reads its
    batches alone). The keys are held while reading (the key column only): the duplicates go to the plan,
    so each shard's validation sees those that span shards.
    """
    job, spec = ctx.job, ctx.spec
    day = dt.date.fromisoformat(spec.partition_date)
    root = replace(spec, shard=None)
    root.run_dir.mkdir(parents=True, exist_ok=True)
    for old in root.run_dir.glob(f"{SOURCE_PREFIX}-*.arrow"):  # a plan run again reads the source again
        old.unlink()
    name, keys = _key_column(job), []
    started = time.perf_counter()
    staged = _Segments(root.run_dir)
    try:
        for table in batches(job, day, ctx.batch_rows, ctx.resolver,
                             doing="reading (once, for every shard) the rows of"):
            staged.write(table)
            index = table.schema.get_all_field_indices(name)
            if len(index) == 1:  # a missing or repeated key column: each shard's ingest says so
                keys.append(table.column(index[0]))
        staged.close()
    except OSError as exc:  # the staging area is full or not writable
        raise StagingError(f"partition {day}: the plan could not write its copy of {describe(job)} to "
                           f"{root.run_dir}: {exc.strerror or exc}. The copy needs about the partition's size in "
                           "Arrow (LZ4) in the staging area (SCORING_STAGING_DIR): free space there, then clear the "
                           "run from its plan.") from None
    finally:
        staged.abort()
    rows = sum(sum(s["batches"]) for s in staged.segments)
    keys = _same_type(keys, job, day)
    declared = entity_key_type(job, ctx.card)
    if declared and keys:  # the duplicates in the type the shards' ingest gives the key
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):  # else each shard's ingest names it
            keys = [k.cast(KEY_TYPES[declared]) for k in keys]
    shards = max(1, min(job.source.shards, rows))
    root = replace(root, shards=shards)
    size = sum((root.run_dir / s["file"]).stat().st_size for s in staged.segments)
    root.write_json(steps.PLAN_STATE, {"duplicate_keys": _duplicates(keys), "files": [],
                                       "source": {"rows": rows, "segments": staged.segments}})
    ctx.log.info("read %d row(s) of %s once, into the run's staging (%.1f MB, %.1f s): %d shard(s) of about %d "
                 "row(s) each read this one copy", rows, describe(job), size / 1e6, time.perf_counter() - started,
                 shards, -(-rows // shards))
    return root, [root.for_shard(i) for i in range(shards)]


def _same_type(keys: list[pa.ChunkedArray], job: JobConfig, day: dt.date) -> list[pa.ChunkedArray]:
    """The key column's batches in one type (a batch of null keys takes the others'); integers and text mixed
    (SQLite's columns may hold both) fail, naming the query."""
    types = {k.type for k in keys} - {pa.null()}
    if len(types) > 1:
        raise InputError(f"partition {day}: {describe(job)} returns entity keys of more than one type "
                         f"({', '.join(sorted(map(str, types)))}): cast the key to one type in the query.")
    target = types.pop() if types else pa.int64()
    return [k.cast(target) for k in keys]


def read(ctx: Any) -> Iterator[pa.Table]:
    """The rows a run's ingest reads: the query's (an unsharded run), or a shard's share of the plan's copy."""
    job, spec = ctx.job, ctx.spec
    day = dt.date.fromisoformat(spec.partition_date)
    if not spec.reads_plan:
        return batches(job, day, ctx.batch_rows, ctx.resolver)
    return _staged(ctx, day)


def _staged(ctx: Any, day: dt.date) -> Iterator[pa.Table]:
    """Shard ``i`` of ``n``: rows ``[rows*i//n, rows*(i+1)//n)`` of the plan's copy, batch by batch (at least one
    table: an empty share still has the query's columns)."""
    spec = ctx.spec
    state = spec.read_json(steps.PLAN_STATE, run_level=True).get("source")
    if state is None:
        raise StagingError(f"partition {day}: shard {spec.shard_index} of run {spec.run_id} has no copy of the source "
                          f"in its plan ({spec.json_path(steps.PLAN_STATE, run_level=True)}): the run was planned by "
                          "an older version of the pipeline. Clear the run from its plan (it reads the source again).")
    shard, shards, rows = spec.shard_index, spec.shards, int(state["rows"])
    low, high = rows * shard // shards, rows * (shard + 1) // shards
    offset, schema, sent = 0, None, False
    for segment in state["segments"]:
        path = spec.run_dir / segment["file"]
        try:
            source = pa.OSFile(str(path), "rb")
        except OSError as exc:
            raise StagingError(
                f"partition {day}: shard {shard} cannot read the plan's copy of {describe(ctx.job)} at {path}: "
                f"{exc.strerror or exc}. Every worker must see the run's staging (SCORING_STAGING_DIR on a shared "
                "volume); clear the run from its plan (it reads the source again).") from None
        with source:
            reader = ipc.open_file(source)
            schema = schema or reader.schema
            for index, size in enumerate(segment["batches"]):
                start, end = offset, offset + size
                offset = end
                if end <= low or start >= high:
                    continue
                first = max(low, start)
                sent = True
                yield pa.Table.from_batches([reader.get_batch(index).slice(first - start, min(high, end) - first)])
    if not sent:
        yield (schema or pa.schema([])).empty_table()


def ingest_query(
    tables: Iterator[pa.Table],
    where: str,
    *,
    inputs: list[dict[str, Any]],
    key: str,
    partition_date: dt.date,
    write: Any,
    rename: Mapping[str, str] | None = None,
    blank_is_missing: Collection[str] = (),
    key_type: str | None = None,
) -> IngestResult:
    """A query's rows (``tables``, see ``batches``) into ``write`` in the contract schema.

    The same checks and conversions as a file's, naming the query (``where``) where a file's name
    would be; the key column's type is ``key_type`` (``entity_key_type``), else the first batch's.
    """
    check_contract_names(inputs)
    rename = dict(rename or {})
    wanted = [key] + [c["name"] for c in inputs]
    first = next(tables)
    repeated = sorted({n for n in first.schema.names if first.schema.names.count(n) > 1})
    if repeated:
        raise InputError(f"partition {partition_date}: {where} returns column(s) {', '.join(repeated)} more than "
                         "once; give every column of the query a name of its own (AS ...).")
    renamed = renamed_schema(first.schema, rename, where, partition_date)
    check_wanted(renamed, first.schema.names, rename, key, wanted, where, partition_date)
    target = ingested_schema("sql", inputs, key, key_type_of([renamed], key, partition_date, key_type), blank_is_missing)
    reading = Reading(target, set(blank_is_missing), {}, key_type)
    ignored = sorted(set(renamed.names) - set(wanted))
    if ignored:
        log.info("partition %s: ignoring columns not in the contract: %s", partition_date, ignored)

    def renamed_tables() -> Iterator[pa.Table]:
        for table in itertools.chain([first], tables):
            yield table.rename_columns(renamed.names).select(wanted)

    keys: list[pa.ChunkedArray] = []
    try:
        rows = conform_all(renamed_tables(), reading, where, partition_date, write, keys)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:  # a batch of other types
        raise InputError(f"partition {partition_date}: {where} returned a batch that does not convert to the "
                         f"contract's types ({str(exc).splitlines()[0]}): cast its columns to one type in the "
                         "query, then re-run the partition.") from None
    log.info("partition %s: ingested %d rows from %s", partition_date, rows, where)
    return IngestResult(rows, [], _duplicates(keys), ignored, target)


class SqlSource:
    """A job's partitions as the rows of a query (``source.query`` or ``source.query_file``) on a connection."""

    def __init__(self, job: JobConfig) -> None:
        self.job = job

    def ready(self, day: dt.date, resolver: Resolver | None = None) -> bool:
        """Whether the partition is there: ``source.ready_query``'s first value, else whether the query has a row."""
        return ready(self.job, day, resolver)

    def require(self, day: dt.date, resolver: Resolver | None = None) -> None:
        """The sensor's question, asked once: a partition that is not ready raises PartitionNotFoundError."""
        if not self.ready(day, resolver):
            raise PartitionNotFoundError(f"partition {day} of job {self.job.job_id} is not ready: "
                                         f"{ready_description(self.job)} says no. Run it once the rows are loaded.")

    def describe(self) -> str:
        """How messages name the source: the query and its connection."""
        return describe(self.job)

    def where(self, day: dt.date, ready: bool) -> str:
        """What wait_for_partition asked and what it heard, for its log lines."""
        return f"{'ready' if ready else 'not ready yet'} ({ready_description(self.job)})"

    def missing(self, day: dt.date) -> tuple[str, str]:
        """A partition that never came: what was not seen, and what to check."""
        return (f"{ready_description(self.job)} never said so",
                "Check the upstream load (or the readiness query in the job file)")

    def timeout_message(self, day: dt.date) -> str:
        """wait_for_partition's message when it gives up: what it asked, for how long."""
        return (f"partition {day} of job {self.job.job_id} was not ready within "
                f"{self.job.source.wait_timeout_minutes:g} minutes: {ready_description(self.job)} never said so. "
                "Check the upstream load (or the readiness query in the job file); once the rows are there, clear "
                "this task to retry.")

    def empty(self, day: dt.date, files: int) -> str:
        """What held no rows, for an empty partition's message."""
        return f"{describe(self.job)} returned no rows"

    def plan(self, ctx: Any) -> tuple[RunSpec, list[RunSpec]]:
        """Read the partition once into the run's staging and split its rows into shards (``plan``)."""
        return plan(ctx)

    def read(self, ctx: Any, wanted: Wanted, write: Any) -> IngestResult:
        """The query's rows (a shard's share of the plan's copy) into ``write`` in the contract's schema."""
        job = self.job
        return ingest_query(read(ctx), describe(job), inputs=wanted.inputs, key=wanted.key,
                            partition_date=wanted.partition_date, write=write, rename=job.source.rename,
                            blank_is_missing=wanted.blank_is_missing, key_type=wanted.key_type)
